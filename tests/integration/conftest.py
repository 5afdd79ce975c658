"""pytest fixtures: real wsnode processes on free loopback ports.

Every process a test starts is registered here and stopped by its PID when
the test ends, also when it fails.

With WSNODE_BACKBONE=nats, make_node's nodes run on NATS: one nats-server
with JetStream for the whole session (natsd.SessionNats, started with the
first node, under the basetemp's nats0/), each node with its own subject
prefix; the server is stopped by PID when the session ends.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import SANITIZER_REPORTS, Node  # noqa: E402
from hook_backend import Backend  # noqa: E402
from natsd import SessionNats, single_node_sections  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def session_nats(tmp_path_factory):
    """The session's nats-server (WSNODE_BACKBONE=nats; started lazily, by
    the first node of make_node), stopped by PID at the end of the session
    (and at exit, should this teardown not run)."""
    session = SessionNats(lambda: tmp_path_factory.mktemp("nats"))
    yield session
    problems = session.finish()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def make_node(tmp_path, session_nats):
    nodes = []

    def factory(start=True, **sections):
        sections = single_node_sections(sections, session_nats)
        node = Node(tmp_path / f"node{len(nodes)}", sections)
        nodes.append(node)
        if start:
            node.start()
        return node

    yield factory
    problems = []
    for node in nodes:
        # Stop gracefully so that a sanitizer build reports leaks and errors,
        # then look for their reports in the node's log.
        try:
            rc = node.stop(timeout=20)
        except Exception as e:  # noqa: BLE001 - report, then kill below
            rc = f"did not stop: {e}"
        node.kill()
        if rc not in (0, None) and not node.expect_nonzero_exit:
            problems.append(f"{node.id} on port {node.port} exited with {rc}")
        for needle in SANITIZER_REPORTS:
            if needle in node.log_text():
                problems.append(f"{node.id}: '{needle}' in {node.log_path}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)



@pytest.fixture
def node(make_node):
    """One node with the default config (dev mode) on a free port."""
    return make_node()


@pytest.fixture
def backend(tmp_path):
    """The scripted backend on a free loopback port, stopped by PID at the end."""
    b = Backend(tmp_path)
    try:
        b.start()
        yield b
    finally:
        b.stop()

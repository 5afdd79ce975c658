"""pytest fixtures: real wsnode processes on free loopback ports.

Every process a test starts is registered here and stopped by its PID when
the test ends, also when it fails.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import SANITIZER_REPORTS, Node  # noqa: E402


@pytest.fixture
def make_node(tmp_path):
    nodes = []

    def factory(start=True, **sections):
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

"""pytest fixtures: real wsnode processes on free loopback ports.

Every process a test starts is registered here and stopped by its PID when
the test ends, also when it fails.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import Node  # noqa: E402


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
    for node in nodes:
        node.kill()


@pytest.fixture
def node(make_node):
    """One node with the default config (dev mode) on a free port."""
    return make_node()

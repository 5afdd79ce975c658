"""[history] state_dir: the terms a node promised survive its restart, and a
node whose state file is damaged refuses to start (it must not forget its
promises silently)."""
import json
import os
import subprocess

from harness import WSNODE

HISTORY = [{"name": "room", "history_size": 100}]


def ceiling(state_dir):
    with open(os.path.join(state_dir, "history-terms-0")) as f:
        return int(f.read().strip())


def publish_ok(node, ch):
    status, body, _ = node.publish(ch, {"n": 1})
    assert status == 200, body
    return json.loads(body)["off"]


def test_terms_survive_a_restart_and_a_bad_file_refuses_to_start(make_node, tmp_path):
    state = str(tmp_path / "state")
    n = make_node(namespace=HISTORY, history={"state_dir": state},
                  limits={"messages_per_second": 0})
    assert publish_ok(n, "room:a") == 1
    first = ceiling(state)  # written with fsync before the term was used
    assert first >= 1
    n.stop()
    n.start()
    # a new process: every term it takes lies above what the last one may
    # have promised, so the ceiling moves on rather than starting again
    assert publish_ok(n, "room:a") == 1  # a single node's history is memory: a new epoch
    second = ceiling(state)
    assert second > first, (first, second)
    n.stop()
    with open(os.path.join(state, "history-terms-0"), "w") as f:
        f.write("garbage\n")
    r = subprocess.run([WSNODE, "--config", n.config_path], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode != 0
    assert "does not hold a term" in (r.stdout + r.stderr), r.stdout + r.stderr
    os.remove(os.path.join(state, "history-terms-0"))
    n.start()  # a fresh state (an operator's decision) starts again
    assert publish_ok(n, "room:a") == 1

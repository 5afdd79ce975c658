"""A quiet node's fan-out to 256+ sockets is written by two threads: its io
thread and that thread's flush helper (docs/operations.md, io_threads). Every
subscriber still gets every message once and in order, and sessions that
close during those fan-outs end at once, not at close_timeout."""
import json
import socket
import struct
import time

from harness import wait_until
from rawws import opened

SUBSCRIBERS = 300
ROUNDS = 12
PAYLOAD = "x" * 2000


def subscribed(node, users):
    """Raw clients of `users`, each subscribed to news (its ack read)."""
    clients = [opened(node, u) for u in users]
    for i, c in enumerate(clients):
        c.send_text(json.dumps({"op": "sub", "ch": "news", "id": i}))
    for i, c in enumerate(clients):
        assert json.loads(c.recv_frame()[1]) == {"op": "ack", "id": i}
    return clients


def eof_within(c, seconds):
    """Reads (and drops) whatever is left; True when the server ends the
    connection within `seconds`."""
    c.sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if c.sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True  # reset: ended as well
    return False


def test_split_fanouts_lose_nothing_and_closes_during_them_complete(make_node):
    # a close_timeout far beyond the checks below: a close whose teardown was
    # skipped would be ended by it, and too late
    node = make_node(limits={"messages_per_second": 0}, ws={"close_timeout_ms": 20000})
    clients = subscribed(node, [f"u{i}" for i in range(SUBSCRIBERS)])

    # each round, two clients send their close and one drops its TCP
    # connection just before the publish, so the fan-out meets sessions in
    # every state of their end
    closing = [clients[3 * r:3 * r + 2] for r in range(ROUNDS)]
    dropping = [clients[3 * r + 2] for r in range(ROUNDS)]
    readers = clients[3 * ROUNDS:]
    before = node.metrics()
    late = []
    for r in range(ROUNDS):
        time.sleep(0.03)  # quiet: the last flush is > 4 x coalesce_us ago
        for c in closing[r]:
            c.send_frame(0x8, struct.pack("!H", 1000))
        dropping[r].close()
        assert node.publish("news", {"r": r, "p": PAYLOAD})[0] == 200
        for c in closing[r]:
            assert c.recv_until_close() == 1000  # its close echoed (a msg may come first)
            if not eof_within(c, 3):
                late.append(r)
            c.close()
        for i, c in enumerate(readers):
            op, payload = c.recv_frame()
            assert op == 0x1, (r, i, op)
            frame = json.loads(payload)
            assert frame["op"] == "msg" and frame["data"]["r"] == r, (r, i, frame)
    after = node.metrics()
    assert late == [], f"closes in rounds {late} were not ended within 3 s"

    splits = after["wsnode_split_flushes_total"] - before["wsnode_split_flushes_total"]
    by_helper = after["wsnode_split_sessions_total"] - before["wsnode_split_sessions_total"]
    print(f"{ROUNDS} fan-outs to {len(readers)}-{SUBSCRIBERS} sockets: {splits} split, "
          f"{by_helper} sockets written by the helper")
    assert ROUNDS - 1 <= splits <= ROUNDS  # every quiet fan-out, give or take the first
    assert by_helper >= splits * len(readers) // 3

    # nothing left behind: every ended session's actor exited as well
    def settled():
        m = node.metrics()
        return m["wsnode_connections"] == m["wsnode_session_actors"] == len(readers)
    assert wait_until(settled, timeout=10), node.metrics()
    assert "did not close" not in node.log_text()
    for c in readers:
        c.close()


def quiet_fanouts_over_websocket(node, rounds):
    """`rounds` quiet fan-outs to 300 sockets, each published by a client over
    WebSocket (its ack is a small flush just before or after the fan-out);
    returns the split flushes they made. Every reader gets every message."""
    pub = opened(node, "publisher")
    readers = subscribed(node, [f"r{i}" for i in range(SUBSCRIBERS)])
    before = node.metrics()["wsnode_split_flushes_total"]
    for r in range(rounds):
        time.sleep(0.03)
        pub.send_text(json.dumps({"op": "pub", "ch": "news", "data": {"r": r}, "id": r}))
        assert json.loads(pub.recv_frame()[1]) == {"op": "ack", "id": r}
        for i, c in enumerate(readers):
            frame = json.loads(c.recv_frame()[1])
            assert frame["op"] == "msg" and frame["data"] == {"r": r}, (r, i, frame)
    splits = node.metrics()["wsnode_split_flushes_total"] - before
    for c in [pub, *readers]:
        c.close()
    return splits


def test_websocket_publishes_split_too_and_flush_helper_min_0_turns_it_off(make_node):
    rounds = 6
    default = make_node(limits={"messages_per_second": 0})
    splits = quiet_fanouts_over_websocket(default, rounds)
    print(f"default: {splits} of {rounds} WebSocket-published fan-outs split")
    # the publisher's ack, written just before a fan-out, leaves the lane quiet
    assert rounds - 1 <= splits <= rounds
    off = make_node(limits={"messages_per_second": 0}, ws={"flush_helper_min": 0})
    assert quiet_fanouts_over_websocket(off, rounds) == 0

"""One session actor per connection (wsnode_session_actors), and none left
after a connection ends, whichever way it ends. Under the sanitizer build
the node's clean exit also checks that no actor, sink or socket leaked."""
import http.client
import json
import socket
import struct
import time

from harness import SANITIZED, wait_until
from rawws import opened

N = 20


def actors(node):
    return node.metrics()["wsnode_session_actors"]


def test_one_actor_per_connection_and_none_after_a_client_close(node):
    clients = [opened(node, f"u{i}") for i in range(N)]
    try:
        assert wait_until(lambda: actors(node) == N)
        assert node.metrics()["wsnode_connections"] == N
        for c in clients:
            c.send_frame(0x8, struct.pack("!H", 1000))
            assert c.recv_until_close() == 1000
    finally:
        for c in clients:
            c.close()
    assert wait_until(lambda: actors(node) == 0)
    assert node.metrics()["wsnode_connections"] == 0


def test_no_actor_is_left_by_resets_and_protocol_errors(make_node):
    node = make_node(ws={"max_message_bytes": 1024})
    resets = [opened(node, f"r{i}") for i in range(N)]
    too_big = [opened(node, f"b{i}") for i in range(N)]
    assert wait_until(lambda: actors(node) == 2 * N)
    for c in resets:  # RST, no closing handshake
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    for c in too_big:
        c.send_text("x" * 2000)
        assert c.recv_until_close() == 1009
        c.close()
    assert wait_until(lambda: actors(node) == 0)
    # resets during the upgrade: no session, no actor
    for _ in range(N):
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(b"GET /ws?user=gone HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert wait_until(lambda: node.metrics()["wsnode_connections"] == 0)
    assert actors(node) == 0


def test_no_actor_is_left_by_policy_closes(make_node):
    node = make_node(limits={"max_errors": 2, "error_window_ms": 60000})
    abusers = [opened(node, f"a{i}") for i in range(N)]
    assert wait_until(lambda: actors(node) == N)
    try:
        for c in abusers:
            for _ in range(3):
                c.send_text("{")
        for c in abusers:
            assert c.recv_until_close() == 1008
            c.send_frame(0x8, struct.pack("!H", 1008))
        assert wait_until(lambda: actors(node) == 0)
    finally:
        for c in abusers:
            c.close()


def test_no_actor_is_left_by_idle_drops(make_node):
    node = make_node(ws={"ping_interval_ms": 200})
    silent = [opened(node, f"s{i}") for i in range(N)]  # never answer pings
    try:
        assert wait_until(lambda: actors(node) == N)
        # pinged after 200 ms of silence, dropped after 400 ms
        assert wait_until(lambda: actors(node) == 0)
        assert node.metrics()["wsnode_connections"] == 0
    finally:
        for c in silent:
            c.close()


def test_no_actor_is_left_by_slow_consumer_closes(make_node):
    node = make_node(ws={"max_queue_bytes": 1 << 16, "close_timeout_ms": 300})
    slow = [opened(node, f"slow{i}", rcvbuf=4096) for i in range(5)]
    try:
        for c in slow:
            c.send_text('{"op":"sub","ch":"flood","id":1}')
            assert json.loads(c.recv_frame()[1]) == {"op": "ack", "id": 1}
        assert actors(node) == 5
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        body = json.dumps({"ch": "flood", "data": "z" * 16000})
        deadline = time.monotonic() + 30
        sent = 0
        while actors(node) > 0 and time.monotonic() < deadline and sent < 2000:
            conn.request("POST", "/api/publish", body, {"Content-Type": "application/json"})
            assert conn.getresponse().read() is not None
            sent += 1
        assert wait_until(lambda: actors(node) == 0, timeout=10), f"after {sent} publishes"
        assert node.metrics()['wsnode_dropped_total{reason="slow_consumer"}'] > 0
        conn.close()
    finally:
        for c in slow:
            c.close()


def test_drain_ends_every_actor(make_node):
    node = make_node(node={"id": "n1", "drain_timeout_ms": 5000})
    clients = [opened(node, f"d{i}") for i in range(N)]
    assert wait_until(lambda: actors(node) == N)
    t0 = time.monotonic()
    node.proc.send_signal(15)
    for c in clients:  # what a client library does with a 1001
        assert c.recv_until_close() == 1001
        c.send_frame(0x8, struct.pack("!H", 1001))
    # the node exits only once every actor has exited (it awaits them)
    rc = node.proc.wait(timeout=20 if SANITIZED else 10)
    for c in clients:
        c.close()
    assert rc == 0
    assert "0 connections were left" in node.log_text()
    assert time.monotonic() - t0 < 5  # not the drain bound: nothing was left over

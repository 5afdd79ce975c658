"""RFC 6455 framing end to end: the node's own frame parser and writer,
driven byte by byte by our raw client (tests/unit/test_websocket.cpp covers
the parser alone; these check what a real connection does with it)."""
import json
import socket
import struct

from harness import wait_until
from rawws import RawClient


def opened(node, user):
    c = RawClient(node.port, f"/ws?user={user}")
    assert c.status == 101
    op, hello = c.recv_frame()
    assert op == 0x1 and json.loads(hello)["op"] == "hello"
    return c


def test_fragments_and_interleaved_ping_are_reassembled(node):
    c = opened(node, "frag")
    try:
        c.send_frame(0x1, b'{"op":"pi', fin=False)
        c.send_frame(0x9, b"are you there")   # a control frame between fragments
        c.send_frame(0x0, b'ng","id"', fin=False)
        c.send_frame(0x0, b':7}')
        op, payload = c.recv_frame()
        assert op == 0xA and payload == b"are you there"  # pong echoes the payload
        op, payload = c.recv_frame()
        assert op == 0x1 and json.loads(payload) == {"op": "pong", "id": 7}
    finally:
        c.close()


def test_one_byte_at_a_time(node):
    c = opened(node, "slow")
    try:
        msg = b'{"op":"ping","id":"drip"}'
        mask = b"\x01\x02\x03\x04"
        frame = bytes([0x81, 0x80 | len(msg)]) + mask + bytes(
            b ^ mask[i % 4] for i, b in enumerate(msg))
        for b in frame:
            c.sock.sendall(bytes([b]))
        op, payload = c.recv_frame()
        assert json.loads(payload) == {"op": "pong", "id": "drip"}
    finally:
        c.close()


def test_client_close_is_echoed_and_counted(node):
    c = opened(node, "bye")
    try:
        c.send_frame(0x8, struct.pack("!H", 4001) + b"done")
        assert c.recv_until_close() == 4001
        assert c.sock.recv(10) == b""  # then the server closes TCP
    finally:
        c.close()
    assert node.metrics()['wsnode_closed_total{code="other"}'] == 1  # 4001: not a named label


def test_protocol_violations_close_with_1002(node):
    for bad in (b"\x81\x02hi",                          # unmasked
                b"\x83\x80\x00\x00\x00\x00",            # reserved opcode
                b"\x80\x80\x00\x00\x00\x00",            # continuation without a message
                b"\x09\x80\x00\x00\x00\x00"):           # fragmented ping
        c = opened(node, "bad")
        try:
            c.sock.sendall(bad)
            assert c.recv_until_close() == 1002
        finally:
            c.close()
    # and the node still serves
    c = opened(node, "good")
    try:
        c.send_text('{"op":"ping","id":1}')
        assert json.loads(c.recv_frame()[1])["op"] == "pong"
    finally:
        c.close()


def test_after_a_protocol_error_a_client_still_sending_reads_the_close(node):
    """A lingering close: the node drops what follows a broken frame instead
    of resetting the connection under the client's feet."""
    c = opened(node, "chatty")
    try:
        c.sock.sendall(b"\x81\x05hello" + b"x" * (512 << 10))  # unmasked, then junk
        assert c.recv_until_close() == 1002
        assert c.sock.recv(10) == b""  # EOF after the close frame, not a reset
    finally:
        c.close()
    # counted when the node sees the client's EOF, which follows c.close()
    assert wait_until(lambda: node.metrics()['wsnode_closed_total{code="1002"}'] == 1)


def test_pipelined_messages_in_one_segment(node):
    c = opened(node, "pipe")
    try:
        mask = b"\x00\x00\x00\x00"
        burst = b""
        for i in range(50):
            m = json.dumps({"op": "ping", "id": i}).encode()
            burst += bytes([0x81, 0x80 | len(m)]) + mask + m
        c.sock.sendall(burst)
        ids = [json.loads(c.recv_frame()[1])["id"] for _ in range(50)]
        assert ids == list(range(50))
    finally:
        c.close()


def test_clients_that_reset_during_the_upgrade_leave_nothing_behind(node):
    for _ in range(30):
        s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
        s.sendall(b"GET /ws?user=gone HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST, maybe before the 101 is written
    assert wait_until(lambda: node.metrics()["wsnode_connections"] == 0)
    assert wait_until(lambda: node.metrics()["wsnode_users"] == 0)
    c = opened(node, "after")
    c.close()

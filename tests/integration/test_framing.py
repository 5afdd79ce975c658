"""RFC 6455 framing end to end: the node's own frame parser and writer,
driven byte by byte by our raw client (tests/unit/protocol/test_websocket.cpp covers
the parser alone; these check what a real connection does with it)."""
import json
import socket
import struct
import time

from harness import wait_until
from rawws import RawClient, opened


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
        c.send_frame(0x8, struct.pack("!H", 4321) + b"done")
        assert c.recv_until_close() == 4321
        assert c.sock.recv(10) == b""  # then the server closes TCP
    finally:
        c.close()
    assert node.metrics()['wsnode_closed_total{code="other"}'] == 1  # 4321: not a named label


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


def frame(opcode, payload, fin=True):
    """A masked client frame (mask 0: the bytes stay readable)."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_a_bad_close_reason_gets_1007_and_then_the_server_closes_tcp(node):
    c = opened(node, "badreason")
    try:
        c.send_frame(0x8, struct.pack("!H", 1000) + b"\xff\xfe")
        assert c.recv_until_close() == 1007
        c.sock.settimeout(0.5)  # well below close_timeout (5 s): the server closes first
        assert c.sock.recv(10) == b""
    finally:
        c.close()


def test_messages_before_a_violation_are_handled_then_1002(node):
    s = opened(node, "listener")
    p = opened(node, "speaker")
    try:
        s.send_text('{"op":"sub","ch":"strict","id":1}')
        assert json.loads(s.recv_frame()[1])["id"] == 1
        pub = json.dumps({"op": "pub", "ch": "strict", "data": "first", "id": 9}).encode()
        p.sock.sendall(frame(0x1, pub) + b"\xc1\x80\0\0\0\0")  # then RSV1 set without deflate
        op, reply = p.recv_frame()
        assert op == 0x1 and json.loads(reply) == {"op": "ack", "id": 9}
        assert p.recv_until_close() == 1002
        assert json.loads(s.recv_frame()[1]) == {"op": "msg", "ch": "strict", "from": "speaker",
                                                 "data": "first"}
    finally:
        p.close()
        s.close()


def test_invalid_utf8_in_a_later_fragment_fails_before_the_message_ends(node):
    c = opened(node, "utf8")
    try:
        c.sock.sendall(frame(0x1, b'{"op":"ping","id":"', fin=False))
        c.sock.sendall(frame(0x0, b"ok \xed\xa0\x80", fin=False))  # a UTF-16 surrogate
        c.sock.settimeout(2)  # the final fragment is never sent
        assert c.recv_until_close() == 1007
    finally:
        c.close()


def test_a_frame_after_the_clients_close_does_not_lose_the_close_reply(node):
    """The client's close arrives while the node still has frames for it in
    its send queue, and another frame follows the close. The close reply
    goes out behind the queued frames, the sending side ends with a FIN, and
    what came after the close is read and dropped: closing a socket with
    unread input would reset the connection and discard the frames (and the
    close reply) still in the node's send queue."""
    c = RawClient(node.port, "/ws?user=closer", rcvbuf=4096)
    p = opened(node, "filler")
    try:
        c.recv_frame()  # hello
        c.send_text('{"op":"sub","ch":"fill","id":1}')
        assert json.loads(c.recv_frame()[1])["id"] == 1
        n = 200
        for i in range(n):  # about 200 KiB for a reader that does not read yet
            p.send_text(json.dumps({"op": "pub", "ch": "fill", "data": "y" * 1000, "id": i}))
            assert json.loads(p.recv_frame()[1]) == {"op": "ack", "id": i}
        c.sock.sendall(frame(0x8, struct.pack("!H", 1000)))
        time.sleep(0.3)  # the node has read the close; this frame comes after it
        c.sock.sendall(frame(0x1, b'{"op":"ping","id":2}'))
        got = [c.recv_frame() for _ in range(n + 1)]
        assert [op for op, _ in got] == [0x1] * n + [0x8]
        assert got[-1][1] == struct.pack("!H", 1000)
        assert c.sock.recv(10) == b""  # EOF, not a reset
    finally:
        p.close()
        c.close()

"""Bad input gets a clear error or close code; the connection survives a
bad command, and abuse closes it."""
import asyncio
import json

import pytest
import websockets

from harness import call, connect, recv, run, sub
from rawws import RawClient


def test_each_error_code_keeps_the_connection_open(make_node):
    node = make_node(limits={"max_data_bytes": 100, "max_subscriptions": 1,
                             "messages_per_second": 20, "burst": 20, "max_errors": 100},
                     channels={"readonly_namespaces": ["news"]})

    async def go():
        ws, _ = await connect(node, "alice")
        cases = [
            ('{"op":"pub",', "bad_json", None),
            ('[1,2]', "bad_request", None),
            ('{"op":"pub","ch":"a","id":1}', "bad_request", 1),  # missing data
            ('{"op":"sub","id":2}', "bad_request", 2),           # missing ch
            ('{"op":"send","data":1,"id":3}', "bad_request", 3),  # missing to
            ('{"op":"dance","id":4}', "unknown_op", 4),
            ('{"op":"sub","ch":"no spaces","id":5}', "bad_channel", 5),
            ('{"op":"sub","ch":"' + "x" * 129 + '","id":6}', "bad_channel", 6),
            ('{"op":"pub","ch":"news:1","data":1,"id":7}', "forbidden", 7),
            ('{"op":"pub","ch":"a","data":"' + "x" * 200 + '","id":8}', "too_large", 8),
        ]
        for text, code, id in cases:
            await ws.send(text)
            reply = await recv(ws)
            assert reply["op"] == "err" and reply["code"] == code, (text, reply)
            assert reply.get("id") == id, (text, reply)
            assert isinstance(reply["msg"], str) and reply["msg"]
            pong, _ = await call(ws, {"op": "ping", "id": "alive"})  # still open
            assert pong["op"] == "pong"
        # forbidden: the subscription limit
        await sub(ws, "s1", 10)
        reply, _ = await call(ws, {"op": "sub", "ch": "s2", "id": 11})
        assert reply["code"] == "forbidden", reply
        # rate_limited: a burst beyond the bucket
        for i in range(40):
            await ws.send(json.dumps({"op": "ping", "id": i}))
        replies = [await recv(ws) for _ in range(40)]
        limited = [r for r in replies if r["op"] == "err"]
        assert limited and all(r["code"] == "rate_limited" for r in limited)
        assert {r["id"] for r in limited} <= set(range(40))
        await asyncio.sleep(1.1)  # the bucket refills
        pong, _ = await call(ws, {"op": "ping", "id": "after"})
        assert pong == {"op": "pong", "id": "after"}
        m = node.metrics()
        for code in ("bad_json", "bad_request", "unknown_op", "bad_channel", "forbidden",
                     "too_large", "rate_limited"):
            assert m[f'wsnode_errors_total{{code="{code}"}}'] >= 1, code
        assert m['wsnode_dropped_total{reason="rate_limited"}'] >= 1
    run(go())


def test_binary_frames_are_refused_politely(node):
    async def go():
        ws, _ = await connect(node, "alice")
        await ws.send(b'{"op":"ping"}')
        reply = await recv(ws)
        assert reply["op"] == "err" and reply["code"] == "bad_request"
        pong, _ = await call(ws, {"op": "ping", "id": 1})
        assert pong["op"] == "pong"
    run(go())


def test_4mib_message_closes_with_1009(node):
    async def go():
        ws, _ = await connect(node, "alice", max_size=None)
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.send("x" * (4 << 20))
            await recv(ws)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    run(go())
    # the node is fine afterwards
    async def again():
        ws, _ = await connect(node, "bob")
        pong, _ = await call(ws, {"op": "ping", "id": 1})
        assert pong["op"] == "pong"
    run(again())
    assert node.metrics()['wsnode_closed_total{code="1009"}'] == 1


def test_invalid_utf8_closes_with_1007(node):
    c = RawClient(node.port, "/ws?user=alice")
    try:
        assert c.status == 101
        op, hello = c.recv_frame()
        assert json.loads(hello)["op"] == "hello"
        c.send_text(b'{"op":"ping","x":"\xc3\x28"}')
        assert c.recv_until_close() == 1007
    finally:
        c.close()


def test_repeated_abuse_closes_with_1008(make_node):
    node = make_node(limits={"max_errors": 5, "error_window_ms": 60000})

    async def go():
        ws, _ = await connect(node, "mallory")
        with pytest.raises(websockets.ConnectionClosed) as info:
            for _ in range(20):
                await ws.send("not json")
            for _ in range(20):
                await recv(ws)
        assert info.value.rcvd.code == 1008
    run(go())


def test_flood_is_bounded_and_closed(make_node):
    node = make_node(limits={"messages_per_second": 50, "burst": 50, "max_errors": 50})

    async def go():
        ws, _ = await connect(node, "flooder")
        closed = None
        try:
            for i in range(5000):
                await ws.send('{"op":"pub","ch":"x","data":"%d"}' % i)
            while True:
                await recv(ws)
        except websockets.ConnectionClosed as e:
            closed = e.rcvd.code if e.rcvd else None
        assert closed == 1008
    run(go())
    assert node.metrics()['wsnode_dropped_total{reason="rate_limited"}'] >= 50

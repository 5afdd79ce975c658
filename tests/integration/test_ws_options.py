"""WebSocket-level options: keep-alive pings and idle timeout, compression."""
import json
import time

import pytest
import websockets

from harness import call, connect, recv, run, sub
from rawws import RawClient


def test_server_pings_and_closes_silent_clients(make_node):
    node = make_node(ws={"ping_interval_ms": 300})
    c = RawClient(node.port, "/ws?user=quiet")
    try:
        assert json.loads(c.recv_frame()[1])["op"] == "hello"
        t0 = time.monotonic()
        op, _ = c.recv_frame()
        assert op == 0x9  # ping after ping_interval of silence
        # never answer: the connection is dropped after 2 x ping_interval
        assert c.recv_until_close() is None
        assert time.monotonic() - t0 < 5
    finally:
        c.close()


def test_clients_that_answer_pings_stay(make_node):
    node = make_node(ws={"ping_interval_ms": 200})

    async def go():
        ws, _ = await connect(node, "alive")  # websockets answers pings itself
        import asyncio
        await asyncio.sleep(1.5)
        reply, _ = await call(ws, {"op": "ping", "id": 1})
        assert reply["op"] == "pong"
    run(go())


def test_permessage_deflate_when_enabled(make_node):
    node = make_node(ws={"compression": True, "max_message_bytes": 65536})

    async def go():
        ws, _ = await connect(node, "z")
        assert any(e.name == "permessage-deflate" for e in ws.extensions)
        await sub(ws, "room:1")
        assert node.publish("room:1", "x" * 20000)[0] == 200
        assert (await recv(ws))["data"] == "x" * 20000
        # the limit applies to the decompressed size: 200 KB of one byte
        # compresses to almost nothing, and is still too big
        with pytest.raises(websockets.ConnectionClosed) as info:
            await ws.send(json.dumps({"op": "pub", "ch": "room:1", "data": "y" * 200000}))
            await recv(ws)
        assert info.value.rcvd.code == 1009
    run(go())


def test_compression_is_off_by_default(node):
    async def go():
        ws, _ = await connect(node, "plain")
        assert not ws.extensions
    run(go())

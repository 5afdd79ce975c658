"""[runtime] broker_shards = 2: topics split over two broker actors by hash.
A session subscribes in the shards of its channels and gets hello and DMs
from its user's; clients see one node, and the gauges add up over shards."""
from cluster import Cluster
from harness import call, connect, connect_url, recv, run, silent, sub, wait_until

CHANNELS = [f"room:{i}" for i in range(8)]  # enough names to land in both shards


def test_two_shards_deliver_every_channel_and_dm(make_node):
    node = make_node(runtime={"broker_shards": 2})

    async def go():
        readers = [(await connect(node, f"r{i}"))[0] for i in range(3)]
        for ws in readers:
            for n, ch in enumerate(CHANNELS):
                await sub(ws, ch, id=n)
        pub, _ = await connect(node, "writer")
        for n, ch in enumerate(CHANNELS):
            reply, _ = await call(pub, {"op": "pub", "ch": ch, "data": n, "id": n})
            assert reply == {"op": "ack", "id": n}
        for ws in readers:
            got = sorted([(m["ch"], m["data"]) for m in [await recv(ws) for _ in CHANNELS]])
            assert got == sorted((ch, n) for n, ch in enumerate(CHANNELS))
            await silent(ws, 0.1)
        for i in range(3):
            reply, _ = await call(pub, {"op": "send", "to": f"r{i}", "data": i, "id": 100 + i})
            assert reply["op"] == "ack"
            assert await recv(readers[i]) == {"op": "dm", "from": "writer", "data": i}
        m = node.metrics()
        assert m["wsnode_channels"] == len(CHANNELS)  # summed over the shards
        assert m["wsnode_users"] == 4
        # unsub in the channel's shard: no more deliveries there
        for n, ch in enumerate(CHANNELS):
            reply, _ = await call(readers[0], {"op": "unsub", "ch": ch, "id": 50 + n})
            assert reply["op"] == "ack"
        await call(pub, {"op": "pub", "ch": CHANNELS[0], "data": "late", "id": 99})
        await silent(readers[0], 0.2)
        assert (await recv(readers[1]))["data"] == "late"
        for ws in readers + [pub]:
            await ws.close()

    run(go())
    assert wait_until(lambda: node.metrics()["wsnode_session_actors"] == 0)
    m = node.metrics()
    assert (m["wsnode_channels"], m["wsnode_users"], m["wsnode_connections"]) == (0, 0, 0)


def test_two_shards_across_a_mesh(tmp_path):
    c = Cluster(tmp_path / "cluster", 2, ["runtime.broker_shards=2", "mesh.heartbeat_ms=200",
                                          "limits.messages_per_second=0"])
    try:
        async def go():
            a, hello = await connect_url(c.node("n1").ws_url("alice"))
            assert hello["node"] == "n1"
            b, hello = await connect_url(c.node("n2").ws_url("bob"))
            assert hello["node"] == "n2"
            for n, ch in enumerate(CHANNELS):
                await sub(a, ch, id=n)  # acked once n2 confirmed it
            for n, ch in enumerate(CHANNELS):
                await call(b, {"op": "pub", "ch": ch, "data": n, "id": n})
            got = sorted([(m["ch"], m["data"]) for m in [await recv(a) for _ in CHANNELS]])
            assert got == sorted((ch, n) for n, ch in enumerate(CHANNELS))
            await call(b, {"op": "send", "to": "alice", "data": "hi", "id": 9})
            assert await recv(a) == {"op": "dm", "from": "bob", "data": "hi"}
            await a.close()
            await b.close()

        run(go())
    finally:
        c.finish()

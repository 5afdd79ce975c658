"""Protocol v1 delivery on one node, spoken by Python's `websockets` (a
client we did not write)."""
import json

from harness import call, connect, recv, run, silent, sub, wait_until


def test_hello_names_node_user_and_session(node):
    async def go():
        ws, hello = await connect(node, "alice")
        assert hello["node"] == "n1" and hello["user"] == "alice"
        assert hello["sid"].startswith("n1-")
        ws2, hello2 = await connect(node, "alice")
        assert hello2["sid"] != hello["sid"]
        await ws.close()
        await ws2.close()
    run(go())


def test_pub_reaches_all_subscribers_and_nobody_else(node):
    async def go():
        subs = [await connect(node, f"u{i}") for i in range(3)]
        other, _ = await connect(node, "outsider")
        for ws, _ in subs:
            await sub(ws, "room:1")
        await sub(other, "room:2")
        pub, _ = await connect(node, "pubber")  # not subscribed
        data = {"text": "héllo ✓ 😀", "n": [1, 2.5, None], "nested": {"k": True}}
        reply, others = await call(pub, {"op": "pub", "ch": "room:1", "data": data, "id": 7})
        assert reply == {"op": "ack", "id": 7} and others == []
        for ws, _ in subs:
            assert await recv(ws) == {"op": "msg", "ch": "room:1", "from": "pubber", "data": data}
            await silent(ws, 0.1)
        await silent(other)
        await silent(pub, 0.1)
    run(go())


def test_data_is_forwarded_byte_for_byte(node):
    async def go():
        a, _ = await connect(node, "a")
        await sub(a, "raw")
        raw = '{"x" : 1.50E+3, "s":"\\u00e9\\ud83d\\ude00", "arr":[ ]}'
        await a.send('{"op":"pub","ch":"raw","data":' + raw + ',"id":1}')
        frames = [await a.recv(), await a.recv()]
        msg = next(f for f in frames if '"msg"' in f)
        assert msg == '{"op":"msg","ch":"raw","from":"a","data":' + raw + '}'
    run(go())


def test_publisher_subscribed_gets_its_own_message(node):
    async def go():
        a, _ = await connect(node, "alice")
        await sub(a, "room:1")
        reply, others = await call(a, {"op": "pub", "ch": "room:1", "data": 1, "id": 2})
        assert reply == {"op": "ack", "id": 2}
        if not others:  # ack and msg may come in either order
            others = [await recv(a)]
        assert others == [{"op": "msg", "ch": "room:1", "from": "alice", "data": 1}]
    run(go())


def test_prefix_isolation_room1_never_reaches_room12(node):
    async def go():
        r1, _ = await connect(node, "r1")
        r12, _ = await connect(node, "r12")
        await sub(r1, "room:1")
        await sub(r12, "room:12")
        p, _ = await connect(node, "p")
        await call(p, {"op": "pub", "ch": "room:12", "data": "for 12", "id": 1})
        await call(p, {"op": "pub", "ch": "room:1", "data": "for 1", "id": 2})
        assert (await recv(r12))["data"] == "for 12"
        assert (await recv(r1))["data"] == "for 1"
        await silent(r1)
        await silent(r12)
    run(go())


def test_unsub_stops_delivery(node):
    async def go():
        a, _ = await connect(node, "a")
        await sub(a, "room:1")
        assert node.publish("room:1", "before")[0] == 200
        assert (await recv(a))["data"] == "before"
        reply, _ = await call(a, {"op": "unsub", "ch": "room:1", "id": 3})
        assert reply == {"op": "ack", "id": 3}
        assert node.publish("room:1", "after")[0] == 200
        await silent(a, 0.5)
    run(go())


def test_dm_reaches_every_session_of_the_user_and_nobody_else(node):
    async def go():
        phone, _ = await connect(node, "bob")
        laptop, _ = await connect(node, "bob")
        carol, _ = await connect(node, "carol")
        alice, _ = await connect(node, "alice")
        reply, _ = await call(alice, {"op": "send", "to": "bob", "data": {"t": "hi"}, "id": 1})
        assert reply == {"op": "ack", "id": 1}
        for ws in (phone, laptop):
            assert await recv(ws) == {"op": "dm", "from": "alice", "data": {"t": "hi"}}
        await silent(carol)
        await silent(alice, 0.1)
        # a DM to a user with no session is accepted and goes nowhere
        reply, _ = await call(alice, {"op": "send", "to": "nobody", "data": 1, "id": 2})
        assert reply == {"op": "ack", "id": 2}
    run(go())


def test_api_publish_and_send_deliver(node):
    async def go():
        a, _ = await connect(node, "alice")
        await sub(a, "news:1")
        status, body, _ = node.publish("news:1", {"headline": "ü"})
        assert status == 200 and json.loads(body) == {"ok": True}
        assert await recv(a) == {"op": "msg", "ch": "news:1", "data": {"headline": "ü"}}
        status, body, _ = node.send("alice", [1, 2])
        assert status == 200 and json.loads(body) == {"ok": True}
        assert await recv(a) == {"op": "dm", "data": [1, 2]}
    run(go())


def test_ping_pong_and_ids_of_any_kind(node):
    async def go():
        a, _ = await connect(node, "a")
        for id in (5, "req-1", 1.5, -3):
            reply, _ = await call(a, {"op": "ping", "id": id})
            assert reply == {"op": "pong", "id": id}
        await a.send('{"op":"ping"}')
        assert await recv(a) == {"op": "pong"}
    run(go())


def test_sessions_ending_leave_no_entries(node):
    async def go():
        clients = [await connect(node, f"u{i % 3}") for i in range(6)]
        for i, (ws, _) in enumerate(clients):
            await sub(ws, f"room:{i % 4}")
            await sub(ws, "all", id=2)
        m = node.metrics()
        assert m["wsnode_channels"] == 5 and m["wsnode_users"] == 3
        assert m["wsnode_connections"] == 6
        for ws, _ in clients:
            await ws.close()
        assert wait_until(lambda: node.metrics()["wsnode_connections"] == 0)
        m = node.metrics()
        assert m["wsnode_channels"] == 0 and m["wsnode_users"] == 0
        assert m["wsnode_queued_bytes"] == 0
    run(go())


def test_many_subscribers_get_every_message_in_order(node):
    async def go():
        clients = [await connect(node, f"s{i}") for i in range(20)]
        for ws, _ in clients:
            await sub(ws, "feed")
        p, _ = await connect(node, "p")
        for i in range(100):
            await p.send(json.dumps({"op": "pub", "ch": "feed", "data": i}))
        for ws, _ in clients:
            got = [(await recv(ws))["data"] for _ in range(100)]
            assert got == list(range(100))
        acks = [await recv(p) for _ in range(100)]
        assert all(a == {"op": "ack"} for a in acks)
        m = node.metrics()
        assert m["wsnode_deliveries_total"] >= 2000
    run(go())


def test_bursts_of_mixed_sizes_arrive_intact_and_in_order(make_node):
    """Thousands of frames queued behind one another on each connection: the
    writer coalesces them into few kernel writes; every frame must still be
    well formed (a client library checks) and in order."""
    # a deep queue (the clients read slower than the node writes)
    node = make_node(limits={"messages_per_second": 0}, ws={"max_queue_bytes": 64 << 20})
    sizes = [1, 100, 125, 126, 200, 4000, 30000]

    async def go():
        subs = [await connect(node, f"s{i}", max_size=1 << 20) for i in range(5)]
        for ws, _ in subs:
            await sub(ws, "burst")
        p, _ = await connect(node, "p")
        n = 3000
        for i in range(n):
            text = "x" * sizes[i % len(sizes)]
            await p.send(json.dumps({"op": "pub", "ch": "burst", "data": {"i": i, "t": text}}))
        for ws, _ in subs:
            for i in range(n):
                msg = await recv(ws, timeout=30)
                assert msg["data"]["i"] == i
                assert len(msg["data"]["t"]) == sizes[i % len(sizes)]
    run(go())
    assert node.metrics()['wsnode_dropped_total{reason="slow_consumer"}'] == 0

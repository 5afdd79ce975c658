"""Channel history on one node (protocol v1.1): stream positions, recovery
with `since`, the history op and /api/history, idempotent publish, and a
stalled client that recovers what it missed after its 1013.

With WSNODE_BACKBONE=nats the node keeps its history in JetStream (streams
<prefix>_H_<namespace> on the session's nats-server, conftest), not in its
memory: the tests that see the difference (the node's history gauges, a
restart) assert what each backbone promises.

Clients: Python's websockets (not ours) for everything but the stalled
reader, which is rawws (it must stop reading)."""
import asyncio
import json
import time

import pytest

from harness import call, connect, recv, run, silent, wait_until
from natsd import on_nats
from rawws import RawClient

HISTORY = [{"name": "room", "history_size": 100, "history_ttl_ms": 60000, "recovery_max": 300},
           {"name": "small", "history_size": 10},
           {"name": "short", "history_size": 100, "history_ttl_ms": 1000}]


@pytest.fixture
def hnode(make_node):
    return make_node(namespace=HISTORY, limits={"messages_per_second": 0})


def publish_n(node, ch, n, start=1):
    offs = []
    for i in range(start, start + n):
        status, body, _ = node.publish(ch, {"n": i})
        assert status == 200, body
        reply = json.loads(body)
        assert reply["ok"] is True
        offs.append(reply["off"])
    return offs


async def sub_at(ws, ch, id=1, since=None):
    cmd = {"op": "sub", "ch": ch, "id": id}
    if since is not None:
        cmd["since"] = since
    reply, others = await call(ws, cmd)
    assert reply["op"] == "ack", reply
    return reply, others


async def take_msgs(ws, n, timeout=5, already=()):
    msgs = [m for m in already if m["op"] == "msg"]
    while len(msgs) < n:
        m = await recv(ws, timeout)
        assert m["op"] == "msg", m
        msgs.append(m)
    return msgs


def test_positions_and_recovery_of_30_of_50(hnode):
    offs = publish_n(hnode, "room:1", 50)
    assert offs == list(range(1, 51))

    async def body():
        ws, _ = await connect(hnode, "alice")
        ack, _ = await sub_at(ws, "room:1")
        assert ack["off"] == 50 and isinstance(ack["ep"], str) and ack["ep"]
        assert "recovered" not in ack
        ep = ack["ep"]
        ws2, _ = await connect(hnode, "bob")
        ack2, others = await sub_at(ws2, "room:1", since={"ep": ep, "off": 20})
        assert ack2 == {"op": "ack", "id": 1, "ep": ep, "off": 50, "recovered": True}
        replay = await take_msgs(ws2, 30, already=others)
        assert [m["off"] for m in replay] == list(range(21, 51))
        assert [m["data"]["n"] for m in replay] == list(range(21, 51))
        # then live ones, in order, on both
        publish_n(hnode, "room:1", 3, start=51)
        for w in (ws, ws2):
            live = await take_msgs(w, 3)
            assert [m["off"] for m in live] == [51, 52, 53]
        await silent(ws2)
        # a client's pub is acknowledged with its offset
        reply, mine = await call(ws, {"op": "pub", "ch": "room:1", "data": "hi", "id": 9})
        assert reply == {"op": "ack", "id": 9, "off": 54}
        for w, before in ((ws, mine), (ws2, [])):  # the ack and own msg: either order
            m = (await take_msgs(w, 1, already=before))[0]
            assert m == {"op": "msg", "ch": "room:1", "from": "alice", "off": 54, "data": "hi"}
    run(body())


def test_not_recovered_when_epoch_is_stale_or_messages_are_gone(hnode, session_nats):
    publish_n(hnode, "room:2", 5)
    publish_n(hnode, "small:1", 30)
    publish_n(hnode, "short:1", 5)

    async def body():
        ws, _ = await connect(hnode, "carol")
        ack, _ = await sub_at(ws, "room:2")
        ep = ack["ep"]
        # stale epoch
        ack, others = await sub_at(ws, "room:2", id=2, since={"ep": "nope", "off": 1})
        assert ack == {"op": "ack", "id": 2, "ep": ep, "off": 5, "recovered": False}
        # trimmed by history_size (10 kept of 30)
        ack, _ = await sub_at(ws, "small:1", id=3)
        ack, others2 = await sub_at(ws, "small:1", id=4, since={"ep": ack["ep"], "off": 5})
        assert ack["recovered"] is False and ack["off"] == 30
        # 20 back is exactly what is held: recovered
        ack, others3 = await sub_at(ws, "small:1", id=5, since={"ep": ack["ep"], "off": 20})
        assert ack["recovered"] is True
        got = await take_msgs(ws, 10, already=others3)
        assert [m["off"] for m in got] == list(range(21, 31))
        # trimmed by history_ttl_ms
        ack, _ = await sub_at(ws, "short:1", id=6)
        await asyncio.sleep(2.5)
        ack, others4 = await sub_at(ws, "short:1", id=7, since={"ep": ack["ep"], "off": 2})
        assert ack["recovered"] is False and ack["off"] == 5
        assert [m for m in others + others2 + others4 if m["op"] == "msg"] == []
        await silent(ws)
    run(body())
    m = hnode.metrics()
    assert m['wsnode_recoveries_total{result="recovered"}'] >= 1
    assert m['wsnode_recoveries_total{result="not_recovered"}'] >= 3
    if not on_nats():
        assert m["wsnode_history_channels"] == 3
        return
    # On NATS the node holds no copy (the gauge counts copies on this node):
    # JetStream does, one channel in each namespace's stream of this node
    prefix = hnode.config["nats"]["subject_prefix"]
    assert m["wsnode_history_channels"] == 0
    held = {name: state.get("num_subjects", 0)
            for name, state in session_nats.streams(prefix).items() if "_H_" in name}
    assert held == {f"{prefix}_H_{ns}": 1 for ns in ("room", "small", "short")}, held


def test_100_clients_recover_while_publishing(hnode):
    """Live messages published during the recovery are neither lost nor
    duplicated: every client ends with 1..N exactly once, in order."""
    publish_n(hnode, "room:9", 50)
    ep = hnode.history("room:9", limit=0)[1]["ep"]
    total = 50 + 100

    async def publisher():
        for i in range(51, total + 1):
            status, body, _ = await asyncio.to_thread(hnode.publish, "room:9", {"n": i})
            assert status == 200, body
            await asyncio.sleep(0.005)

    async def client(i):
        ws, _ = await connect(hnode, f"u{i}")
        _, others = await sub_at(ws, "room:9", since={"ep": ep, "off": i % 50})
        got = await take_msgs(ws, total - i % 50, timeout=15, already=others)
        return [m["off"] for m in got], i % 50

    async def body():
        pub = asyncio.create_task(publisher())
        results = await asyncio.gather(*(client(i) for i in range(100)))
        await pub
        for offs, since in results:
            assert offs == list(range(since + 1, total + 1))
    run(body(), timeout=90)


def test_history_across_a_restart(hnode):
    """A single mesh node keeps its history in memory: started again, its
    channels begin a new epoch, and a `since` in the old one is not
    recovered. On NATS the history is in JetStream and outlives the node
    (which keeps its subject prefix: the same config): the same epoch, the
    missed messages recovered, offsets going on."""
    publish_n(hnode, "room:r", 5)
    ep = hnode.history("room:r", limit=0)[1]["ep"]
    assert hnode.stop() == 0
    hnode.start()

    async def body():
        ws, _ = await connect(hnode, "rita")
        ack, others = await sub_at(ws, "room:r", since={"ep": ep, "off": 2})
        if on_nats():
            assert ack == {"op": "ack", "id": 1, "ep": ep, "off": 5, "recovered": True}
            got = await take_msgs(ws, 3, already=others)
            assert [(m["off"], m["data"]["n"]) for m in got] == [(3, 3), (4, 4), (5, 5)]
        else:
            assert ack["recovered"] is False and ack["ep"] != ep and ack["off"] == 0, ack
            assert [m for m in others if m["op"] == "msg"] == []
        await silent(ws)
    run(body())
    assert publish_n(hnode, "room:r", 1, start=6) == ([6] if on_nats() else [1])
    status, h = hnode.history("room:r")
    assert status == 200
    assert [p["data"]["n"] for p in h["pubs"]] == ([1, 2, 3, 4, 5, 6] if on_nats() else [6])


def test_history_op_and_api(hnode):
    publish_n(hnode, "room:3", 12)

    async def body():
        ws, _ = await connect(hnode, "dave")
        await ws.send(json.dumps({"op": "history", "ch": "room:3", "limit": 5, "id": 1}))
        h = await recv(ws)
        assert h["op"] == "history" and h["id"] == 1 and h["ch"] == "room:3" and h["off"] == 12
        assert [p["off"] for p in h["pubs"]] == [8, 9, 10, 11, 12]
        assert h["pubs"][0] == {"off": 8, "data": {"n": 8}}
        await ws.send(json.dumps({"op": "history", "ch": "room:3", "limit": 3, "id": 2,
                                  "since": {"ep": h["ep"], "off": 2}}))
        h2 = await recv(ws)
        assert [p["off"] for p in h2["pubs"]] == [3, 4, 5]
        await ws.send(json.dumps({"op": "history", "ch": "room:unknown", "id": 3}))
        h3 = await recv(ws)
        assert h3["pubs"] == [] and h3["off"] == 0
        reply, _ = await call(ws, {"op": "history", "ch": "plain:1", "id": 4})
        assert reply["op"] == "err" and reply["code"] == "bad_request"
        reply, _ = await call(ws, {"op": "history", "ch": "room:3", "id": 5, "limit": -1})
        assert reply["code"] == "bad_request"
    run(body())
    status, h = hnode.history("room:3", limit=2)
    assert status == 200 and "op" not in h and [p["off"] for p in h["pubs"]] == [11, 12]
    status, h = hnode.history("room:3")
    assert [p["off"] for p in h["pubs"]] == list(range(1, 13))
    status, _ = hnode.history("plain:1")
    assert status == 400


def test_idempotent_publish(hnode):
    s1, b1, _ = hnode.publish("room:4", {"v": 1}, idem="k-1")
    s2, b2, _ = hnode.publish("room:4", {"v": 2}, idem="k-1")
    s3, b3, _ = hnode.publish("room:4", {"v": 3}, idem="k-2")
    assert (s1, s2, s3) == (200, 200, 200)
    assert json.loads(b1)["off"] == json.loads(b2)["off"] == 1
    assert json.loads(b3)["off"] == 2

    async def body():
        ws, _ = await connect(hnode, "erin")
        r1, _ = await call(ws, {"op": "pub", "ch": "room:4", "data": 1, "key": "c-1", "id": 1})
        r2, _ = await call(ws, {"op": "pub", "ch": "room:4", "data": 1, "key": "c-1", "id": 2})
        assert r1["off"] == r2["off"] == 3
        r3, _ = await call(ws, {"op": "pub", "ch": "room:4", "data": 1, "key": "x" * 65, "id": 3})
        assert r3["code"] == "bad_request"
    run(body())
    status, h = hnode.history("room:4")
    assert [p["data"] for p in h["pubs"]] == [{"v": 1}, {"v": 3}, 1]


def test_stalled_client_closed_1013_recovers_everything(make_node):
    node = make_node(namespace=[{"name": "room", "history_size": 2000, "recovery_max": 1000}],
                     ws={"max_queue_bytes": 65536}, limits={"messages_per_second": 0})
    slow = RawClient(node.port, "/ws?user=slow", rcvbuf=4096)
    try:
        slow.recv_frame()  # hello
        slow.send_text(json.dumps({"op": "sub", "ch": "room:s", "id": 1}))
        ack = json.loads(slow.recv_frame()[1])
        ep, start = ack["ep"], ack["off"]
        assert start == 0
        pad = "x" * 16000
        total = 600  # ~9.6 MB: far past the queue bound and the socket buffers
        for i in range(1, total + 1):
            status, _, _ = node.publish("room:s", {"n": i, "pad": pad})
            assert status == 200
            if node.metrics().get('wsnode_closed_total{code="1013"}', 0) >= 1:
                break
        for i in range(i + 1, total + 1):
            assert node.publish("room:s", {"n": i, "pad": pad})[0] == 200
        assert wait_until(lambda: node.metrics()['wsnode_closed_total{code="1013"}'] >= 1)
        seen = []  # what it got before the close
        while True:
            try:
                op, payload = slow.recv_frame()
            except (ConnectionError, OSError):
                break
            if op == 0x8:
                assert payload[:2] == (1013).to_bytes(2, "big")
                break
            seen.append(json.loads(payload)["off"])
    finally:
        slow.close()
    assert seen == list(range(1, len(seen) + 1)) and len(seen) < total
    last = seen[-1] if seen else 0

    async def body():
        ws, _ = await connect(node, "slow")
        ack, others = await sub_at(ws, "room:s", since={"ep": ep, "off": last})
        assert ack["recovered"] is True and ack["off"] == total
        got = await take_msgs(ws, total - last, already=others)
        assert seen + [m["off"] for m in got] == list(range(1, total + 1))
    run(body())

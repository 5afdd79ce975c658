"""Several nodes behind nginx are one service: users and channels reach each
other across nodes, traffic goes only where subscribers are, and clients
fail over when a node dies or drains."""
import asyncio
import json
import time

import pytest
import websockets

from cluster import Cluster
from harness import call, connect_url, recv, run, silent, sub, wait_until

SETS = ["mesh.heartbeat_ms=200", "mesh.unsubscribe_linger_ms=500", "limits.messages_per_second=0"]


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", 3, SETS)
    yield c
    c.finish()


async def direct(cluster, node_id, user):
    """A session on a given node (bypassing nginx)."""
    ws, hello = await connect_url(cluster.node(node_id).ws_url(user))
    assert hello["node"] == node_id
    return ws


async def via_nginx(cluster, user, avoid=None, tries=30):
    """A session through nginx; with `avoid`, retries until it lands elsewhere."""
    for _ in range(tries):
        ws, hello = await connect_url(cluster.ws_url(user))
        if avoid is None or hello["node"] != avoid:
            return ws, hello
        await ws.close()
    raise AssertionError(f"nginx kept sending {user} to {avoid}")


async def reconnect(cluster, user, timeout=15):
    """Reconnects through nginx until it works (a node may be down)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect_url(cluster.ws_url(user), open_timeout=3)
        except (OSError, websockets.InvalidStatusCode, websockets.InvalidMessage,
                asyncio.TimeoutError, websockets.ConnectionClosed):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_status_and_readiness(cluster):
    s = cluster.status()
    assert s["nginx"]["running"]
    assert [r["readyz"] for r in s["nodes"]] == [200, 200, 200]
    assert [r["mesh_peers"] for r in s["nodes"]] == [2, 2, 2]
    for node in cluster.nodes:
        ready = json.loads(node.http("GET", "/readyz")[1])
        assert ready["mesh"] == "up"
        assert sorted(p["node"] for p in ready["peers"] if p["alive"]) == \
            sorted(n.id for n in cluster.nodes if n.id != node.id)


def test_dm_between_users_on_different_nodes_through_nginx(cluster):
    async def go():
        a, ha = await via_nginx(cluster, "alice")
        b, hb = await via_nginx(cluster, "bob", avoid=ha["node"])
        assert ha["node"] != hb["node"]
        reply, _ = await call(a, {"op": "send", "to": "bob", "data": "hi bob", "id": 1})
        assert reply["op"] == "ack"
        assert await recv(b) == {"op": "dm", "from": "alice", "data": "hi bob"}
        reply, _ = await call(b, {"op": "send", "to": "alice", "data": "hi alice", "id": 2})
        assert reply["op"] == "ack"
        assert await recv(a) == {"op": "dm", "from": "bob", "data": "hi alice"}
    run(go())


def test_publish_from_each_node_reaches_every_subscriber_exactly_once(cluster):
    async def go():
        subs = {}
        for node in ("n1", "n2", "n3"):
            for k in range(2):
                ws = await direct(cluster, node, f"{node}-s{k}")
                await sub(ws, "room:all")
                subs[(node, k)] = ws
        for node in ("n1", "n2", "n3"):
            pub = await direct(cluster, node, f"{node}-pub")
            reply, _ = await call(pub, {"op": "pub", "ch": "room:all", "data": node, "id": 1})
            assert reply["op"] == "ack"
        for key, ws in subs.items():
            got = sorted([(await recv(ws))["data"] for _ in range(3)])
            assert got == ["n1", "n2", "n3"], key
            await silent(ws, 0.3)  # nothing twice
    run(go())
    assert all(n.metrics()["wsnode_mesh_gaps_total"] == 0 for n in cluster.nodes)


def test_1000_api_publishes_arrive_complete_and_in_order(cluster):
    async def go():
        s2 = await direct(cluster, "n2", "reader2")
        s3 = await direct(cluster, "n3", "reader3")
        await sub(s2, "feed:1")
        await sub(s3, "feed:1")
        n1 = cluster.node("n1")
        loop = asyncio.get_running_loop()

        def publish_all():
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", n1.port, timeout=10)
            for i in range(1000):
                conn.request("POST", "/api/publish", json.dumps({"ch": "feed:1", "data": i}))
                r = conn.getresponse()
                r.read()
                assert r.status == 200
            conn.close()
        pub = loop.run_in_executor(None, publish_all)
        for ws in (s2, s3):
            got = [(await recv(ws, timeout=20))["data"] for _ in range(1000)]
            assert got == list(range(1000))
            await silent(ws, 0.3)
        await pub
    run(go())
    for node in ("n2", "n3"):
        m = cluster.node(node).metrics()
        assert m["wsnode_mesh_gaps_total"] == 0
        assert m["wsnode_mesh_received_total"] >= 1000


def test_prefix_isolation_across_the_mesh(cluster):
    async def go():
        r4 = await direct(cluster, "n2", "four")
        r42 = await direct(cluster, "n3", "fortytwo")
        await sub(r4, "room:4")
        await sub(r42, "room:42")
        p = await direct(cluster, "n1", "p")
        for i in range(20):
            await call(p, {"op": "pub", "ch": "room:42", "data": i, "id": i})
        assert [(await recv(r42))["data"] for _ in range(20)] == list(range(20))
        await silent(r4, 0.5)
    run(go())
    assert cluster.node("n2").metrics()["wsnode_mesh_received_total"] == 0


def test_traffic_goes_only_where_subscribers_are(cluster):
    async def go():
        only = await direct(cluster, "n3", "lonely")
        await sub(only, "room:local")
        n2_before = cluster.node("n2").metrics()["wsnode_mesh_received_total"]
        n3_before = cluster.node("n3").metrics()["wsnode_mesh_received_total"]
        p = await direct(cluster, "n1", "p")
        for i in range(300):
            await p.send(json.dumps({"op": "pub", "ch": "room:local", "data": i}))
        assert [(await recv(only))["data"] for _ in range(300)] == list(range(300))
        assert cluster.node("n2").metrics()["wsnode_mesh_received_total"] == n2_before
        assert cluster.node("n3").metrics()["wsnode_mesh_received_total"] == n3_before + 300
    run(go())


def test_no_message_is_missed_right_after_a_remote_sub_ack(cluster):
    """The sub ack comes after every peer confirmed the subscription, so a
    publish on another node right after the ack is delivered (no sleeps)."""
    n1 = cluster.node("n1")

    async def go():
        ws = await direct(cluster, "n2", "racer")
        for i in range(100):
            ch = f"race:{i}"
            reply, _ = await call(ws, {"op": "sub", "ch": ch, "id": i})
            assert reply == {"op": "ack", "id": i}
            status, _, _ = n1.publish(ch, i)
            assert status == 200
            msg = await recv(ws, timeout=5)
            assert msg == {"op": "msg", "ch": ch, "data": i}
    run(go())
    assert cluster.node("n2").metrics()["wsnode_mesh_subscribe_timeouts_total"] == 0


def test_kill_9_then_restart_on_the_same_ports(cluster):
    async def go():
        # two users on different nodes; `victim` is where alice's node is
        a, ha = await via_nginx(cluster, "alice")
        victim = ha["node"]
        b, hb = await via_nginx(cluster, "bob", avoid=victim)
        await sub(b, "room:k")
        cluster.kill(victim)
        with pytest.raises(websockets.ConnectionClosed):
            await recv(a, timeout=10)
        a, ha2 = await reconnect(cluster, "alice")
        assert ha2["node"] != victim
        reply, _ = await call(a, {"op": "send", "to": "bob", "data": "back", "id": 1})
        assert reply["op"] == "ack"
        assert await recv(b) == {"op": "dm", "from": "alice", "data": "back"}
        await call(a, {"op": "pub", "ch": "room:k", "data": "after kill", "id": 2})
        assert (await recv(b))["data"] == "after kill"

        cluster.start(victim)  # same config, same ports; nobody else restarts
        assert wait_until(lambda: all(n.metrics()["wsnode_mesh_peers"] == 2
                                      for n in cluster.nodes), timeout=15)
        fresh = await direct(cluster, victim, "newcomer")
        await sub(fresh, "room:k")
        await call(b, {"op": "pub", "ch": "room:k", "data": "to the restarted node", "id": 3})
        assert (await recv(fresh))["data"] == "to the restarted node"
        reply, _ = await call(fresh, {"op": "send", "to": "alice", "data": "hi", "id": 4})
        assert (await recv(a)) == {"op": "dm", "from": "newcomer", "data": "hi"}
    run(go())


def test_sigterm_drains_with_1001_and_clients_fail_over(cluster):
    async def go():
        a, ha = await via_nginx(cluster, "alice")
        victim = ha["node"]
        b, _ = await via_nginx(cluster, "bob", avoid=victim)
        cluster.stop(victim)  # SIGTERM: drain
        with pytest.raises(websockets.ConnectionClosed) as info:
            await recv(a, timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        a, ha2 = await reconnect(cluster, "alice")
        assert ha2["node"] != victim
        await call(b, {"op": "send", "to": "alice", "data": "still here", "id": 1})
        assert await recv(a) == {"op": "dm", "from": "bob", "data": "still here"}
    run(go())

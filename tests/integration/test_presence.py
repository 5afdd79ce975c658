"""Presence on 3 nodes (scripts/cluster; the deploy/ template gives rooms
presence and join/leave): users on every node listed once each, pages with
a cursor, join/leave seen on other nodes, and a killed node's users leave
everyone's presence within a few heartbeats. Clients are Python's
websockets, connected straight to each node."""
import json
import time

import pytest

from cluster import Cluster
from harness import call, connect_url, recv, run, wait_until

CH = "room:presence"


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster", 3, ["limits.messages_per_second=0"])
    yield c
    c.finish()


def url(node, user):
    return f"ws://127.0.0.1:{node.port}/ws?user={user}"


def api_presence(node, **body):
    status, raw, _ = node.http("POST", "/api/presence", json.dumps({"ch": CH, **body}))
    return status, json.loads(raw)


async def presence(ws, id, **kw):
    await ws.send(json.dumps({"op": "presence", "ch": CH, "id": id, **kw}))
    while True:
        f = await recv(ws)
        if f.get("id") == id:
            assert f["op"] == "presence", f
            return f


async def next_event(ws, timeout=10):
    while True:
        f = await recv(ws, timeout, events=True)
        if f["op"] in ("join", "leave"):
            return f["op"], f["user"]


async def joined(ws, ch=CH):
    reply, _ = await call(ws, {"op": "sub", "ch": ch, "id": 1})
    assert reply["op"] == "ack", reply


def test_presence_join_leave_across_three_nodes(cluster):
    n1, n2, n3 = cluster.nodes

    async def go():
        watcher, _ = await connect_url(url(n1, "watcher"))
        await joined(watcher)
        sessions = {}
        for name, node in (("alice", n1), ("bob", n2), ("bob2", n3), ("carol", n3)):
            user = "bob" if name == "bob2" else name
            sessions[name], _ = await connect_url(url(node, user))
            await joined(sessions[name])
        # join events for alice, bob (once: his second session is no news), carol
        seen = [await next_event(watcher) for _ in range(3)]
        assert sorted(seen) == [("join", "alice"), ("join", "bob"), ("join", "carol")], seen
        everyone = ["alice", "bob", "carol", "watcher"]
        # every node answers the same: each user once
        for node in (n1, n2, n3):
            assert wait_until(lambda: api_presence(node)[1]["count"] == 4, 10), api_presence(node)
            status, body = api_presence(node)
            assert status == 200 and body == {"ch": CH, "count": 4, "users": everyone}, body
        # pages with a cursor; limit 0 is the count alone
        first = await presence(watcher, 2, limit=3)
        assert first["count"] == 4 and first["users"] == everyone[:3] and first["cursor"], first
        rest = await presence(watcher, 3, limit=3, cursor=first["cursor"])
        assert rest["users"] == everyone[3:] and "cursor" not in rest, rest
        assert (await presence(watcher, 4, limit=0))["users"] == []
        # bob's last session leaving anywhere is a leave; the first is not
        await call(sessions["bob2"], {"op": "unsub", "ch": CH, "id": 5})
        await sessions["alice"].close()
        assert await next_event(watcher) == ("leave", "alice")
        await sessions["bob"].close()
        assert await next_event(watcher) == ("leave", "bob")
        assert wait_until(lambda: api_presence(n2)[1]["users"] == ["carol", "watcher"], 10)
        # a namespace without presence: forbidden
        await sessions["carol"].send(json.dumps({"op": "presence", "ch": "chat:1", "id": 9}))
        f = await recv(sessions["carol"])
        assert f["op"] == "err" and f["code"] == "forbidden", f
        assert n1.http("POST", "/api/presence", json.dumps({"ch": "chat:1"}))[0] == 403

    run(go())
    m = n1.metrics()
    assert m["wsnode_presence_joins_total"] >= 4 and m["wsnode_presence_leaves_total"] >= 2


def test_a_killed_nodes_users_leave_within_a_few_heartbeats(cluster):
    n1, n2, n3 = cluster.nodes

    async def go():
        watcher, _ = await connect_url(url(n1, "watcher"))
        await joined(watcher)
        doomed = []
        for i in range(5):
            ws, _ = await connect_url(url(n3, f"u{i}"))
            await joined(ws)
            doomed.append(ws)
        both, _ = await connect_url(url(n2, "u0"))  # u0 is also on n2: stays
        await joined(both)
        assert wait_until(lambda: api_presence(n2)[1]["count"] == 6, 10)
        cluster.kill("n3")
        killed = time.monotonic()
        leaves = set()
        while len(leaves) < 4:
            op, user = await next_event(watcher, timeout=15)
            if op == "leave":
                leaves.add(user)
        took = time.monotonic() - killed
        print(f"presence: 5 users on a node killed with -9; 4 leaves (u0 is on another node "
              f"too) seen on another node after {took:.1f} s (heartbeat 1 s)")
        assert leaves == {"u1", "u2", "u3", "u4"}
        assert took < 10
        for node in (n1, n2):
            assert wait_until(lambda: api_presence(node)[1]["users"] == ["u0", "watcher"], 5)

    run(go())


def test_presence_count_agrees_on_three_nodes_and_drops_a_killed_node(tmp_path):
    """`presence = "count"` (rooms too big for member lists): each node's
    count of sessions, exchanged every few seconds; the presence op and API
    answer the cluster-wide count with no members."""
    extra = tmp_path / "count.toml"
    extra.write_text('[[namespace]]\nname = "live"\npresence = "count"\n')
    cluster = Cluster(tmp_path / "cluster", 3, ["limits.messages_per_second=0"], append=extra)
    try:
        n1, n2, n3 = cluster.nodes

        def count(node):
            status, raw, _ = node.http("POST", "/api/presence", json.dumps({"ch": "live:1"}))
            assert status == 200, raw
            body = json.loads(raw)
            assert body["users"] == [] and "cursor" not in body, body
            return body["count"]

        async def go():
            viewers = []
            for node, n in ((n1, 4), (n2, 3), (n3, 5)):
                for i in range(n):
                    ws, _ = await connect_url(url(node, f"{node.id}v{i}"))
                    await joined(ws, "live:1")
                    viewers.append(ws)
            started = time.monotonic()
            assert wait_until(lambda: all(count(x) == 12 for x in (n1, n2, n3)), 10)
            print(f"presence count: 12 viewers on 3 nodes, every node agrees after "
                  f"{time.monotonic() - started:.1f} s")
            await viewers[0].send(json.dumps({"op": "presence", "ch": "live:1", "id": 9}))
            reply = await recv(viewers[0])
            assert reply == {"op": "presence", "id": 9, "ch": "live:1", "count": 12, "users": []}
            await viewers[-1].close()  # one leaves: everyone sees 11
            assert wait_until(lambda: all(count(x) == 11 for x in (n1, n2, n3)), 10)
            cluster.kill("n3")
            killed = time.monotonic()
            assert wait_until(lambda: count(n1) == 7 and count(n2) == 7, 20)
            took = time.monotonic() - killed
            print(f"presence count: a node with 4 viewers killed with -9; they left the count "
                  f"on the others after {took:.1f} s")
            assert took < 15
        run(go())
    finally:
        cluster.finish()

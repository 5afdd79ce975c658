"""Webhooks on 3 nodes (protocol v1.2 events, issue 30): `occupied` and
`vacated` exactly once per cluster-wide transition of a channel (100
transitions hopping between nodes; two subscribers on two nodes are one
occupancy), `connect` and `disconnect` once per session, from the session's
node, `join` and `leave` once per cluster for a user's first and last
session in a presence channel, and `undelivered` for a `send` (API or
client) to a user with no session anywhere, never for one with a session
on another node. The
cluster is scripts/cluster's (deploy/ templates, nginx in front); the
receiver is a real process (hook_backend.py, the `backend` fixture) whose
every call's signature is checked; clients are Python's websockets,
connected straight to each node unless the test says otherwise. Events
are counted once per id (delivery is at least once)."""
import asyncio
import hashlib
import hmac
import json
import time

import pytest

from cluster import Cluster
from harness import SANITIZED, call, connect_url, recv, run, sub, wait_until

SECRET = "cluster-events-secret-0123456789"
# Absence is asserted after a quiet spell: events travel in milliseconds
# on loopback, so a repeat or a second event would come within QUIET. Where
# a vacated must not come, LINGER outlasts the mesh's default
# unsubscribe_linger_ms (2 s): a node that lets go of a channel's mesh
# subscription only then must not take that for the channel's last
# subscriber leaving.
QUIET = 1.0
LINGER = 2.5
# The acceptance's 100 cycles; 40 under a sanitizer (the release pass runs
# the 100, the sanitizer pass looks for memory errors on the same paths).
CYCLES = 40 if SANITIZED else 100


@pytest.fixture
def cluster(tmp_path, backend):
    # string values go into the TOML as they are given: quoted here
    c = Cluster(tmp_path / "cluster", 3, [
        "limits.messages_per_second=0",
        f"hooks.events_url={json.dumps(backend.url('events'))}",
        f"hooks.secret={json.dumps(SECRET)}"])
    yield c
    c.finish()


def url(node, user):
    return f"ws://127.0.0.1:{node.port}/ws?user={user}"


async def on(node, user):
    """A session of `user` straight to `node`; (ws, hello)."""
    ws, hello = await connect_url(url(node, user))
    assert hello["node"] == node.id and hello["user"] == user, hello
    return ws, hello


def signed_batch(r):
    """(node, events) of one call of the receiver, after checking its
    signature and shape (as test_webhooks.delivered does)."""
    headers = {k.lower(): v for k, v in r["headers"].items()}
    want = "sha256=" + hmac.new(SECRET.encode(), r["raw"].encode(), hashlib.sha256).hexdigest()
    assert headers.get("x-wsnode-signature") == want, r
    assert headers.get("x-wsnode-secret") == SECRET
    body = json.loads(r["raw"])
    assert body["node"] in ("n1", "n2", "n3") and 1 <= len(body["events"]) <= 100, body
    return body["node"], body["events"]


class Received:
    """Every event the receiver got, once per id, in order of first arrival,
    with the node of its batch. The receiver's /_stats keeps only its last
    200 calls and a test here makes more: poll() takes the calls since the
    last poll (and fails should more than 200 have come in between)."""

    def __init__(self, backend):
        self.backend = backend
        self.calls = 0       # calls of the events hook taken so far
        self.events = []     # first deliveries, in order of arrival
        self.node = {}       # id -> the node whose batch held it

    def poll(self):
        stats = self.backend.stats()
        calls = stats["calls"].get("events", 0)
        kept = [r for r in stats["requests"] if r["hook"] == "events"]
        new = calls - self.calls
        assert new <= len(kept), f"{new} calls since the last poll, {len(kept)} kept: poll more"
        for r in kept[len(kept) - new:]:
            node, events = signed_batch(r)
            for e in events:
                if e["id"] not in self.node:
                    self.node[e["id"]] = node
                    self.events.append(e)
        self.calls = calls
        return self

    def select(self, type, **fields):
        """The events of `type` whose `fields` have these values (no poll)."""
        return [e for e in self.events
                if e["type"] == type and all(e.get(k) == v for k, v in fields.items())]

    def of(self, type, **fields):
        """select() after a poll."""
        return self.poll().select(type, **fields)

    def count(self, type, **fields):
        return len(self.of(type, **fields))


def check_common(e):
    """id and time of any event: time in unix ms (not s), of this run."""
    assert isinstance(e["id"], str) and e["id"], e
    assert isinstance(e["time"], int) and abs(e["time"] - time.time() * 1000) < 300000, e


async def unsub(ws, ch, id):
    reply, _ = await call(ws, {"op": "unsub", "ch": ch, "id": id})
    assert reply == {"op": "ack", "id": id}, reply


# ---------------------------------------------------------------- occupied / vacated

def test_occupied_and_vacated_once_per_transition_across_nodes(cluster, backend):
    got = Received(backend)
    ch = "occ:1"

    def counts():
        got.poll()
        return len(got.select("occupied", ch=ch)), len(got.select("vacated", ch=ch))

    async def go():
        # one session per node, kept open: cycle i subscribes on node i % 3
        clients = [(await on(node, f"occ_{node.id}"))[0] for node in cluster.nodes]
        started = time.monotonic()
        for i in range(CYCLES):
            ws = clients[i % 3]
            await sub(ws, ch, id=2 * i + 1)
            assert wait_until(lambda: counts()[0] >= i + 1, 10, 0.02), f"cycle {i}: {counts()}"
            assert counts() == (i + 1, i), f"cycle {i}, subscribed on n{i % 3 + 1}"
            await unsub(ws, ch, 2 * i + 2)
            assert wait_until(lambda: counts()[1] >= i + 1, 10, 0.02), f"cycle {i}: {counts()}"
            assert counts() == (i + 1, i + 1), f"cycle {i}, left n{i % 3 + 1}"
            assert time.monotonic() - started < 90, f"only {i + 1} cycles in 90 s"
        print(f"events: {CYCLES} occupied/vacated cycles over 3 nodes in "
              f"{time.monotonic() - started:.1f} s")

    run(go(), timeout=150)
    time.sleep(QUIET)  # a repeat or a late second event would come within this
    occupied, vacated = got.of("occupied", ch=ch), got.of("vacated", ch=ch)
    assert (len(occupied), len(vacated)) == (CYCLES, CYCLES)
    for e in occupied + vacated:
        check_common(e)
        assert e["ch"] == ch
    # in time too: each cycle's occupied, then its vacated, then the next
    # cycle's occupied (equal ms allowed: the events may come from other nodes)
    times = [e["time"] for pair in zip(occupied, vacated) for e in pair]
    assert times == sorted(times), times


def test_two_subscribers_on_two_nodes_are_one_occupancy(cluster, backend):
    got = Received(backend)
    ch = "occ:2"
    n1, n2, _ = cluster.nodes

    async def go():
        a, _ = await on(n1, "occ2_a")
        b, _ = await on(n2, "occ2_b")
        await asyncio.gather(sub(a, ch, id=1), sub(b, ch, id=1))  # at the same time
        assert wait_until(lambda: got.count("occupied", ch=ch) >= 1, 10)
        time.sleep(QUIET)  # a second occupied (each node thinking it was first) comes within this
        assert got.count("occupied", ch=ch) == 1
        await unsub(a, ch, 2)
        time.sleep(LINGER)  # b is still subscribed: no vacated within this
        assert got.count("vacated", ch=ch) == 0
        await unsub(b, ch, 2)
        assert wait_until(lambda: got.count("vacated", ch=ch) >= 1, 10)

    run(go())
    time.sleep(QUIET)  # a repeat would come within this
    assert (got.count("occupied", ch=ch), got.count("vacated", ch=ch)) == (1, 1)
    for e in got.of("occupied", ch=ch) + got.of("vacated", ch=ch):
        check_common(e)
    assert got.of("occupied", ch=ch)[0]["time"] <= got.of("vacated", ch=ch)[0]["time"]


# ---------------------------------------------------------------- connect / disconnect

def test_connect_and_disconnect_once_per_session_from_its_node(cluster, backend):
    got = Received(backend)
    sessions = {}  # sid -> (node, user, close code, reason)

    async def go():
        opened = []
        for node in cluster.nodes:
            for j in range(2):
                opened.append(await on(node, f"cd_{node.id}_{j}"))
        opened.append(await connect_url(cluster.ws_url("cd_front")))  # through nginx
        for k, (ws, hello) in enumerate(opened):
            code, reason = 4000 + k, f"bye {hello['user']}"
            sessions[hello["sid"]] = (hello["node"], hello["user"], code, reason)
            await ws.close(code=code, reason=reason)
        # one the application disconnects (through another node): its
        # disconnect carries the API's code and reason
        ws, hello = await on(cluster.nodes[1], "cd_api")
        sessions[hello["sid"]] = (hello["node"], "cd_api", 4010, "moderated")
        status, raw, _ = cluster.nodes[2].http(
            "POST", "/api/disconnect",
            json.dumps({"user": "cd_api", "code": 4010, "reason": "moderated"}))
        assert status == 200 and json.loads(raw)["sessions"] == 1, raw
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (4010, "moderated")

    run(go())
    assert wait_until(lambda: got.count("disconnect") >= len(sessions), 10), got.events
    time.sleep(1.5)  # a second event of a session (another node's, a repeat) would come within this
    connects, disconnects = got.of("connect"), got.of("disconnect")
    assert sorted(e["sid"] for e in connects) == sorted(sessions), connects
    assert sorted(e["sid"] for e in disconnects) == sorted(sessions), disconnects
    for e in connects + disconnects:
        check_common(e)
        node, user, code, reason = sessions[e["sid"]]
        assert e["user"] == user, e
        assert got.node[e["id"]] == node, (e, got.node[e["id"]])
        if e["type"] == "disconnect":
            assert (e["code"], e["reason"]) == (code, reason), e
    by_sid = {e["sid"]: e for e in connects}
    for e in disconnects:  # each session's disconnect after its connect
        assert e["time"] >= by_sid[e["sid"]]["time"], (by_sid[e["sid"]], e)


# ---------------------------------------------------------------- undelivered

def test_undelivered_only_for_users_with_no_session_anywhere(cluster, backend):
    got = Received(backend)
    n1, n2, n3 = cluster.nodes

    async def go():
        here, _ = await on(n2, "und_here")
        sender, _ = await on(n3, "und_sender")
        # nobody anywhere: one undelivered each, API and client send
        assert n1.send("und_ghost_api", {"k": 1})[0] == 200
        reply, _ = await call(sender, {"op": "send", "to": "und_ghost_ws", "data": [2, "x"],
                                       "id": 1})
        assert reply == {"op": "ack", "id": 1}, reply
        # a session on another node than the sender's: delivered, not undelivered
        assert n1.send("und_here", {"k": 3})[0] == 200
        assert await recv(here) == {"op": "dm", "data": {"k": 3}}
        reply, _ = await call(sender, {"op": "send", "to": "und_here", "data": 4, "id": 2})
        assert reply == {"op": "ack", "id": 2}, reply
        assert await recv(here) == {"op": "dm", "from": "und_sender", "data": 4}
        assert wait_until(lambda: got.count("undelivered", to="und_ghost_api") >= 1
                          and got.count("undelivered", to="und_ghost_ws") >= 1, 10), got.events

    run(go())
    time.sleep(1.5)  # an undelivered for und_here, or a repeat, would come within this
    api_ghost = got.of("undelivered", to="und_ghost_api")
    ws_ghost = got.of("undelivered", to="und_ghost_ws")
    assert len(api_ghost) == 1 and api_ghost[0]["data"] == {"k": 1}, api_ghost
    assert len(ws_ghost) == 1 and ws_ghost[0]["data"] == [2, "x"], ws_ghost
    for e in api_ghost + ws_ghost:
        check_common(e)
    assert got.of("undelivered", to="und_here") == []
    assert got.count("undelivered") == 2, got.of("undelivered")


# ---------------------------------------------------------------- join / leave

async def room_sub(ws, ch, id):
    """A sub of a history channel; a cluster that just came up may answer
    'history unavailable; retry' while the channel's owner settles: retry
    as a client does (bounded)."""
    for attempt in range(20):
        reply, _ = await call(ws, {"op": "sub", "ch": ch, "id": id})
        if reply["op"] == "ack":
            return
        assert reply.get("code") in ("rate_limited", "unavailable"), reply
        await asyncio.sleep(0.25)
    raise AssertionError(f"sub {ch} never acked")


def test_join_and_leave_once_per_cluster_for_a_users_first_and_last_session(cluster, backend):
    got = Received(backend)
    ch = "room:jl"  # the deploy template's room namespace has presence
    n1, n2, n3 = cluster.nodes

    def count(kind, user):
        return got.count(kind, ch=ch, user=user)

    async def go():
        a1, _ = await on(n1, "jl_ann")
        a2, _ = await on(n2, "jl_ann")
        bob, _ = await on(n3, "jl_bob")
        await room_sub(a1, ch, 1)
        assert wait_until(lambda: count("join", "jl_ann") >= 1, 10), got.events
        await room_sub(a2, ch, 1)  # ann's second session: she is in already
        await room_sub(bob, ch, 1)
        assert wait_until(lambda: count("join", "jl_bob") >= 1, 10), got.events
        time.sleep(QUIET)  # a second join of ann (from n2, or from every node) comes within this
        assert count("join", "jl_ann") == 1
        await unsub(a1, ch, 2)
        time.sleep(LINGER)  # her session on n2 holds her in: no leave within this
        assert count("leave", "jl_ann") == 0
        await a2.close()  # her last session goes: she leaves
        assert wait_until(lambda: count("leave", "jl_ann") >= 1, 10), got.events
        await bob.close()
        assert wait_until(lambda: count("leave", "jl_bob") >= 1, 10), got.events

    run(go())
    time.sleep(QUIET)  # a repeat would come within this
    for user in ("jl_ann", "jl_bob"):
        joins, leaves = got.of("join", ch=ch, user=user), got.of("leave", ch=ch, user=user)
        assert (len(joins), len(leaves)) == (1, 1), (user, joins, leaves)
        for e in joins + leaves:
            check_common(e)
        assert joins[0]["time"] <= leaves[0]["time"]


# ---------------------------------------------------------------- a node dies

def fnv1a(a, b):
    """actors/rank_nodes.hpp's hash of (a, NUL, b)."""
    h = 1469598103934665603
    for c in a.encode() + b"\0" + b.encode():
        h ^= c
        h = (h * 1099511628211) % (1 << 64)
    return h


def keepers(name, nodes):
    """The owner, then the backup, of an occupancy name ("c:<ch>")."""
    return sorted(nodes, key=lambda n: (-fnv1a(name, n), n))[:2]


def test_a_killed_nodes_channels_are_vacated_whoever_owned_them(cluster, backend):
    got = Received(backend)
    ids = [n.id for n in cluster.nodes]
    victim = cluster.nodes[2]

    def alone(owner):
        """A channel whose owner is `owner`."""
        return next(f"kill.{owner}.{i}" for i in range(1000)
                    if keepers(f"c:kill.{owner}.{i}", ids)[0] == owner)
    lone = [alone(node_id) for node_id in ids]  # one owned by each node, the victim's too
    shared = alone(ids[0])[:-1] + "shared"

    async def go():
        held, _ = await on(victim, "kill_held")
        other, _ = await on(cluster.nodes[0], "kill_other")
        for i, ch in enumerate(lone + [shared]):
            await sub(held, ch, id=i + 1)
        await sub(other, shared, id=1)
        for ch in lone + [shared]:
            assert wait_until(lambda: got.count("occupied", ch=ch) >= 1, 10), (ch, got.events)
        t0 = time.monotonic()
        cluster.kill(victim.id)  # kill -9: no drain, no unsubscribe
        for ch in lone:
            assert wait_until(lambda: got.count("vacated", ch=ch) >= 1, 15), (ch, got.events)
        print(f"kill -9 {victim.id}: {len(lone)} channels it alone held vacated within "
              f"{time.monotonic() - t0:.1f} s (owners {', '.join(keepers('c:' + c, ids)[0] for c in lone)})")
        time.sleep(LINGER)  # the shared channel is still held on n1: no vacated within this
        assert got.count("vacated", ch=shared) == 0
        await unsub(other, shared, 2)
        assert wait_until(lambda: got.count("vacated", ch=shared) >= 1, 10), got.events

    run(go())
    for ch in lone + [shared]:
        assert (got.count("occupied", ch=ch), got.count("vacated", ch=ch)) == (1, 1), ch

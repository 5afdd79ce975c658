"""The server API (protocol v1.2, issue 30) on 3 nodes behind nginx
(scripts/cluster, deploy/ templates: `room` keeps history; --append adds a
`capped` namespace with max_subscribers = 2): /api/disconnect (every session
of a user on every node, close code and reason, a ban refused with 403
through nginx and straight to each node until it ends), /api/subscribe and
/api/unsubscribe (server-side subscriptions of every session of a user),
/api/online, /api/channels (pages with a cursor), /api/info,
/api/broadcast (100 channels, each subscriber gets its message once), the
per-node max_subscribers cap, and 400 answers naming the bad key. The
calls go to any node or through nginx: each answers for the whole cluster
("nodes": how many nodes answered). Clients are Python's websockets,
connected straight to a node unless the test says otherwise.

One cluster for the module (started with the append file): each test uses
its own users and channels."""
import asyncio
import json
import os
import re
import time

import pytest
import websockets
import websockets.exceptions

from cluster import Cluster
from harness import call, connect_url, recv, run, silent, sub, wait_until
from hooks_kit import close_of

SETS = ["limits.messages_per_second=0"]
CAPPED = '[[namespace]]\nname = "capped"\nmax_subscribers = 2\n'
NODES = 3

# A refused upgrade: websockets >= 11 raises InvalidStatus (status in
# .response), older versions InvalidStatusCode (.status_code); 10.4 has
# both names but raises the second.
REFUSED = tuple(c for c in (getattr(websockets.exceptions, "InvalidStatus", None),
                            getattr(websockets.exceptions, "InvalidStatusCode", None)) if c)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("server_api")
    extra = run_dir / "capped.toml"
    extra.write_text(CAPPED)
    started = time.monotonic()
    c = Cluster(run_dir / "cluster", NODES, SETS, append=extra)
    c.started = started  # /api/info's uptime cannot be longer than this
    yield c
    c.finish()


def url(node, user):
    return f"ws://127.0.0.1:{node.port}/ws?user={user}"


def front(cluster):
    """nginx as a harness.Node (its http() goes to nginx's port): API calls
    through the front, answered by whichever node nginx picks."""
    return Cluster.node_view({"http": cluster.port, "id": "nginx", "log": os.devnull,
                              "pid": None})


def api(node, path, body=None):
    """GET `path` (no body) or POST it with `body` as JSON; returns
    (status, parsed answer)."""
    if body is None:
        status, raw, _ = node.http("GET", path)
    else:
        status, raw, _ = node.http("POST", path, json.dumps(body),
                                   {"Content-Type": "application/json"})
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


async def on(node, user):
    """A session of `user` straight to `node`."""
    ws, hello = await connect_url(url(node, user))
    assert hello["node"] == node.id and hello["user"] == user, hello
    return ws


async def sub_retrying(ws, ch, id=1, tries=10):
    """The first sub of a history channel: a cluster that came up moments
    ago may not have settled the channel's owner yet and answers 'history
    unavailable; retry', which a client retries. Returns the ack."""
    for _ in range(tries):
        reply, _ = await call(ws, {"op": "sub", "ch": ch, "id": id})
        if reply["op"] == "ack" or "unavailable" not in reply.get("msg", ""):
            break
        await asyncio.sleep(0.5)  # the owner settles within a few heartbeats
    assert reply["op"] == "ack", reply
    return reply


def refused_status(e):
    response = getattr(e, "response", None)
    return response.status_code if response is not None else e.status_code


async def upgrade_status(ws_url):
    """101 when the upgrade is accepted (the session is closed again at
    once), else the HTTP status of the refusal."""
    try:
        ws = await websockets.connect(ws_url, open_timeout=5, close_timeout=1)
    except REFUSED as e:
        return refused_status(e)
    await ws.close()
    return 101


async def status_settles(ws_url, want, timeout=5):
    """Tries the upgrade until it answers `want` (each node learns of a ban's
    end by its own clock); returns the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = await upgrade_status(ws_url)
        if status == want or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.1)


def msg(ch, data, **extra):
    """A msg frame as a subscriber gets it from an API publish (no `from`)."""
    return {"op": "msg", "ch": ch, **extra, "data": data}


def refusals(node, reason):
    """Commands refused by policy for `reason` on `node`. The metric family is
    wsnode_refusals_total (docs/operations.md); issue 30's brief names
    wsnode_refused_total: either is accepted."""
    m = node.metrics()
    return sum(m.get(f'{family}{{reason="{reason}"}}', 0)
               for family in ("wsnode_refusals_total", "wsnode_refused_total"))


# ---------------------------------------------------------------- disconnect

def test_disconnect_closes_every_session_of_the_user_on_every_node(cluster):
    n1, n2, n3 = cluster.nodes

    async def go():
        bobs = [await on(n1, "dc_bob"), await on(n2, "dc_bob")]
        eve = await on(n1, "dc_eve")  # another user on the same node: stays
        # asked of a node where bob has no session
        assert api(n3, "/api/disconnect", {"user": "dc_bob"}) == \
            (200, {"ok": True, "sessions": 2, "nodes": NODES})
        for ws in bobs:
            assert (await close_of(ws)).code == 4003  # the default code
        reply, _ = await call(eve, {"op": "ping", "id": 1})
        assert reply["op"] == "pong", reply
        # a code and reason of the caller's, through nginx
        bob3 = await on(n3, "dc_bob")
        assert api(front(cluster), "/api/disconnect",
                   {"user": "dc_bob", "code": 4010, "reason": "moved"}) == \
            (200, {"ok": True, "sessions": 1, "nodes": NODES})
        close = await close_of(bob3)
        assert (close.code, close.reason) == (4010, "moved")
        # nobody left to close; without ban_ms the user may come back at once
        assert api(n1, "/api/disconnect", {"user": "dc_bob"}) == \
            (200, {"ok": True, "sessions": 0, "nodes": NODES})
        await on(n2, "dc_bob")

    run(go())


def test_a_ban_refuses_the_user_everywhere_until_it_ends(cluster):
    n1, n2, n3 = cluster.nodes
    ban_ms = 3000

    async def go():
        bob = await on(n2, "ban_bob")
        t0 = time.monotonic()
        assert api(n1, "/api/disconnect", {"user": "ban_bob", "ban_ms": ban_ms,
                                           "reason": "banned"}) == \
            (200, {"ok": True, "sessions": 1, "nodes": NODES})
        close = await close_of(bob)
        assert (close.code, close.reason) == (4003, "banned")
        # refused before the upgrade: through nginx and straight to each node
        everywhere = [cluster.ws_url("ban_bob")] + [url(n, "ban_bob") for n in cluster.nodes]
        for u in everywhere:
            assert await upgrade_status(u) == 403, u
        assert await upgrade_status(url(n2, "ban_eve")) == 101  # the user only
        # the ban ends: the user connects again, not before ban_ms
        deadline = t0 + ban_ms / 1000 + 5
        while (status := await upgrade_status(cluster.ws_url("ban_bob"))) != 101:
            assert status == 403, status
            assert time.monotonic() < deadline, "still refused 5 s after the ban's end"
            await asyncio.sleep(0.1)
        took = time.monotonic() - t0
        assert took >= ban_ms / 1000 - 0.2, f"let in after {took:.2f} s of a {ban_ms} ms ban"
        for u in everywhere[1:]:
            assert await status_settles(u, 101) == 101, u

    run(go())


# ---------------------------------------------------------------- subscribe

def test_subscribe_and_unsubscribe_every_session_of_the_user(cluster):
    n1, n2, n3 = cluster.nodes
    ch = "news:api1"
    body = {"user": "sub_bob", "ch": ch}

    async def go():
        bobs = [await on(n1, "sub_bob"), await on(n2, "sub_bob")]
        watcher = await on(n3, "sub_watch")  # subscribed by itself: shows a publish went out
        await sub(watcher, ch)
        assert api(n3, "/api/subscribe", body) == \
            (200, {"ok": True, "sessions": 2, "nodes": NODES})
        for ws in bobs:  # no id: not an answer to a command of the client's
            assert await recv(ws) == {"op": "subscribed", "ch": ch}
        assert n3.publish(ch, {"n": 1})[0] == 200
        for ws in bobs + [watcher]:
            assert await recv(ws) == msg(ch, {"n": 1})
        assert api(front(cluster), "/api/unsubscribe", body) == \
            (200, {"ok": True, "sessions": 2, "nodes": NODES})
        for ws in bobs:
            assert await recv(ws) == {"op": "unsubscribed", "ch": ch}
        assert n3.publish(ch, {"n": 2})[0] == 200
        assert await recv(watcher) == msg(ch, {"n": 2})  # it went out...
        for ws in bobs:
            await silent(ws, 0.3)  # ...but not to bob any more
        # a user without a session: nothing to do, still an answer
        assert api(n1, "/api/subscribe", {"user": "sub_nobody", "ch": ch}) == \
            (200, {"ok": True, "sessions": 0, "nodes": NODES})

    run(go())


def test_subscribe_in_a_history_namespace_gives_the_position(cluster):
    n1, n2, n3 = cluster.nodes
    ch = "room:api1"

    async def go():
        watcher = await on(n3, "hsub_watch")
        ack = await sub_retrying(watcher, ch)  # settles the channel's owner
        bobs = [await on(n1, "hsub_bob"), await on(n2, "hsub_bob")]
        assert api(n2, "/api/subscribe", {"user": "hsub_bob", "ch": ch}) == \
            (200, {"ok": True, "sessions": 2, "nodes": NODES})
        for ws in bobs:
            assert await recv(ws) == {"op": "subscribed", "ch": ch, "ep": ack["ep"],
                                      "off": ack["off"]}
        status, raw, _ = n3.publish(ch, "hello")
        assert status == 200 and json.loads(raw) == {"ok": True, "off": ack["off"] + 1}, raw
        for ws in bobs + [watcher]:
            assert await recv(ws) == msg(ch, "hello", off=ack["off"] + 1)

    run(go())


# ---------------------------------------------------------------- online

def test_online_counts_sessions_per_user_across_nodes(cluster):
    n1, n2, n3 = cluster.nodes
    users = ["on_bob", "on_eve", "on_zed"]

    def online(node):
        return api(node, "/api/online", {"users": users})

    async def go():
        await on(n1, "on_bob")
        bob2 = await on(n2, "on_bob")
        await on(n3, "on_eve")
        want = (200, {"online": {"on_bob": 2, "on_eve": 1, "on_zed": 0}, "nodes": NODES})
        assert wait_until(lambda: online(n1) == want, 10), online(n1)
        for node in (n2, n3, front(cluster)):
            assert online(node) == want
        await bob2.close()
        want = (200, {"online": {"on_bob": 1, "on_eve": 1, "on_zed": 0}, "nodes": NODES})
        assert wait_until(lambda: online(n3) == want, 10), online(n3)

    run(go())


# ---------------------------------------------------------------- channels

def channel_pages(node, limit, prefix=None, max_pages=100):
    """Every page of /api/channels, following the cursor (bounded)."""
    pages, cursor = [], None
    for _ in range(max_pages):
        body = {"limit": limit}
        if prefix is not None:
            body["prefix"] = prefix
        if cursor is not None:
            body["cursor"] = cursor
        status, page = api(node, "/api/channels", body)
        assert status == 200 and isinstance(page, dict) and page.get("nodes") == NODES, \
            (status, page)
        assert len(page["channels"]) <= limit, page
        pages.append(page)
        cursor = page.get("cursor")
        if cursor is None:
            return pages
    raise AssertionError(f"more than {max_pages} pages of {limit}")


def listing(node, limit, prefix=None):
    return [c for page in channel_pages(node, limit, prefix) for c in page["channels"]]


def test_channels_lists_subscriber_counts_in_pages(cluster):
    n1, n2, n3 = cluster.nodes
    # which channels each session subscribes to: 5 channels under t:, their
    # subscribers on different nodes, and one under another prefix
    layout = [(n1, "ls_a", ["t:a", "t:b", "t:c"]), (n1, "ls_b", ["t:c", "u:z"]),
              (n2, "ls_c", ["t:b", "t:c", "t:e"]), (n3, "ls_d", ["t:c", "t:d", "t:e"])]
    want = [{"ch": "t:a", "subscribers": 1}, {"ch": "t:b", "subscribers": 2},
            {"ch": "t:c", "subscribers": 4}, {"ch": "t:d", "subscribers": 1},
            {"ch": "t:e", "subscribers": 2}]

    async def go():
        for node, user, channels in layout:
            ws = await on(node, user)
            for i, ch in enumerate(channels):
                await sub(ws, ch, id=i + 1)
        assert wait_until(lambda: listing(n1, 2, "t:") == want, 10), listing(n1, 2, "t:")
        # sorted by name, 2 a page, a cursor on every page but the last
        pages = channel_pages(n2, 2, "t:")
        assert [p["channels"] for p in pages] == [want[0:2], want[2:4], want[4:]], pages
        assert ["cursor" in p for p in pages] == [True, True, False], pages
        assert listing(front(cluster), 5, "t:") == want
        # without a prefix: every channel (other tests' may linger), sorted, once each
        everything = listing(n3, 50)
        names = [c["ch"] for c in everything]
        assert names == sorted(set(names)), names
        for c in want + [{"ch": "u:z", "subscribers": 1}]:
            assert c in everything, (c, everything)

    run(go())


# ---------------------------------------------------------------- info

def test_info_describes_every_node(cluster):
    n1, n2, n3 = cluster.nodes
    opened = {"n1": 2, "n2": 1, "n3": 0}

    def counts():
        status, body = api(n2, "/api/info")
        assert status == 200 and isinstance(body, dict), body
        return {x["node"]: (x["connections"], x["sessions"]) for x in body["nodes"]}

    async def go():
        a = await on(n1, "info_a")
        await on(n1, "info_b")
        await on(n2, "info_c")
        await sub(a, "info:1", id=1)
        await sub(a, "info:2", id=2)
        want = {k: (v, v) for k, v in opened.items()}
        assert wait_until(lambda: counts() == want, 10), counts()
        status, body = api(front(cluster), "/api/info")
        assert status == 200 and [x["node"] for x in body["nodes"]] == ["n1", "n2", "n3"], body
        alive = time.monotonic() - cluster.started
        for x, node in zip(body["nodes"], cluster.nodes):
            assert (x["connections"], x["sessions"]) == want[x["node"]], x
            assert isinstance(x["uptime_s"], int) and 0 <= x["uptime_s"] <= alive + 1, x
            version = re.search(r'wsnode_info\{node="%s",version="([^"]*)"\}' % node.id,
                                node.http("GET", "/metrics")[1].decode())
            assert version and x["version"] == version.group(1) != "", x
        assert body["nodes"][0]["channels"] >= 2  # info:1 and info:2 on n1

    run(go())


# ---------------------------------------------------------------- broadcast

def test_broadcast_reaches_each_channels_subscribers_once(cluster):
    names = [f"b:{i}" for i in range(100)]
    data = {"flash": "sale", "n": 1}
    readers = 6  # two sessions per node, each subscribed to every 6th channel

    async def go():
        clients = []
        for k in range(readers):
            ws = await on(cluster.nodes[k % NODES], f"bc_{k}")
            for i, ch in enumerate(names[k::readers]):
                await sub(ws, ch, id=i + 1)
            clients.append(ws)
        status, body = api(front(cluster), "/api/broadcast", {"channels": names, "data": data})
        assert status == 200 and body == {"ok": True, "results": [{"ch": ch} for ch in names]}, \
            body
        for k, ws in enumerate(clients):
            mine = names[k::readers]
            got = [await recv(ws) for _ in mine]
            assert sorted(f["ch"] for f in got) == sorted(mine), (k, got)
            assert all(f == msg(f["ch"], data) for f in got), got
        # once each: nothing more within a short silence
        await asyncio.gather(*(silent(ws, 0.5) for ws in clients))

    run(go())


def test_broadcast_into_a_history_channel_gives_its_offset(cluster):
    n1, n2, n3 = cluster.nodes

    async def go():
        plain = await on(n1, "bch_plain")
        await sub(plain, "b:solo")
        room = await on(n3, "bch_room")
        ack = await sub_retrying(room, "room:bcast")
        off = ack["off"] + 1
        assert api(n2, "/api/broadcast", {"channels": ["b:solo", "room:bcast"], "data": "x"}) == \
            (200, {"ok": True, "results": [{"ch": "b:solo"}, {"ch": "room:bcast", "off": off}]})
        assert await recv(plain) == msg("b:solo", "x")
        assert await recv(room) == msg("room:bcast", "x", off=off)

    run(go())


# ---------------------------------------------------------------- max_subscribers

def test_max_subscribers_is_a_per_node_cap(cluster):
    n1, n2, n3 = cluster.nodes
    ch = "capped:1"

    async def go():
        here = [await on(n1, f"cap_{k}") for k in range(3)]
        await sub(here[0], ch)
        await sub(here[1], ch)
        reply, _ = await call(here[2], {"op": "sub", "ch": ch, "id": 7})
        assert reply["op"] == "err" and reply["id"] == 7 and reply["code"] == "forbidden", reply
        assert isinstance(reply.get("msg"), str), reply
        # per node: two more on n2 are let in (4 subscribers in the cluster)
        there = [await on(n2, f"cap_{k}") for k in (3, 4)]
        for ws in there:
            await sub(ws, ch)
        # the refused session is not subscribed; the four are
        assert n3.publish(ch, 1)[0] == 200
        for ws in here[:2] + there:
            assert await recv(ws) == msg(ch, 1)
        await silent(here[2], 0.3)
        # one leaves n1: room for the next (retried for a moment, should the
        # node count its subscribers a little after the unsub's ack)
        reply, _ = await call(here[0], {"op": "unsub", "ch": ch, "id": 8})
        assert reply == {"op": "ack", "id": 8}, reply
        for id in range(9, 19):
            reply, _ = await call(here[2], {"op": "sub", "ch": ch, "id": id})
            if reply["op"] == "ack":
                break
            assert reply["code"] == "forbidden", reply
            await asyncio.sleep(0.2)  # 10 tries: 2 s, and fewer errs than max_errors (30)
        assert reply == {"op": "ack", "id": id}, reply

    run(go())
    assert refusals(n1, "max_subscribers") >= 1
    assert refusals(n2, "max_subscribers") == 0


# ---------------------------------------------------------------- bad bodies

# (path, body, the key the message must name)
BAD_BODIES = [
    ("/api/disconnect", {}, "user"),
    ("/api/disconnect", {"user": 42}, "user"),
    ("/api/disconnect", {"user": "bad_bob", "code": 999}, "code"),
    ("/api/disconnect", {"user": "bad_bob", "ban_ms": -1}, "ban_ms"),
    ("/api/disconnect", {"user": "bad_bob", "reason": 5}, "reason"),
    ("/api/disconnect", {"user": "bad_bob", "colour": "red"}, "colour"),
    ("/api/subscribe", {"ch": "news:1"}, "user"),
    ("/api/subscribe", {"user": "bad_bob"}, "ch"),
    ("/api/unsubscribe", {"user": None, "ch": "news:1"}, "user"),
    ("/api/unsubscribe", {"user": "bad_bob", "ch": "news:1", "extra": 1}, "extra"),
    ("/api/online", {}, "users"),
    ("/api/online", {"users": []}, "users"),
    ("/api/online", {"users": "bad_bob"}, "users"),
    ("/api/online", {"users": ["bad_bob", 7]}, "users"),
    ("/api/channels", {"limit": 0}, "limit"),
    ("/api/channels", {"limit": "2"}, "limit"),
    ("/api/channels", {"prefix": 5}, "prefix"),
    ("/api/channels", {"cursor": 5}, "cursor"),
    ("/api/channels", {"sort": "name"}, "sort"),
    ("/api/broadcast", {"data": 1}, "channels"),
    ("/api/broadcast", {"channels": "b:1", "data": 1}, "channels"),
    ("/api/broadcast", {"channels": [], "data": 1}, "channels"),
    ("/api/broadcast", {"channels": [f"b:{i}" for i in range(1001)], "data": 1}, "channels"),
    ("/api/broadcast", {"channels": ["b:1"]}, "data"),
    ("/api/broadcast", {"channels": ["b:1"], "data": 1, "bogus": True}, "bogus"),
]


def test_bad_bodies_get_400_naming_the_key(cluster):
    n2 = cluster.node("n2")
    wrong = []
    for path, body, key in BAD_BODIES:
        status, answer = api(n2, path, body)
        ok = status == 400 and isinstance(answer, dict) and answer.get("error") == "bad_request" \
            and isinstance(answer.get("msg"), str) \
            and re.search(rf"\b{re.escape(key)}\b", answer["msg"]) is not None
        if not ok:
            shown = json.dumps(body)
            wrong.append(f"{path} {shown[:80]}: {status} {answer} (should name {key})")
    assert not wrong, "\n".join(wrong)

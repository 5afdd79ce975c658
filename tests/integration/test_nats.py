"""Behaviour that only exists on the NATS backbone ([backbone] kind =
"nats"): these tests always run on NATS (scripts/cluster up --nats, with its
own nats-servers), whatever WSNODE_BACKBONE says.

- live traffic follows interest: a node without subscribers of a channel
  receives none of its messages (the servers route by subscription), also
  for history channels that JetStream republishes to the live subject;
- channel names with '.' (a subject separator in NATS) work across nodes;
- losing every nats-server: /readyz 503, history publishes answered with an
  error within [nats] timeout_ms (never silence), and all is well again
  once the server is back;
- config refusals of the [backbone]/[nats] keys;
- history kept in JetStream outlives a restart of every wsnode node.

Every process is started through scripts/cluster and stopped by PID
(Cluster.finish) also when a test fails."""
import asyncio
import http.client
import json
import signal
import subprocess
import time

import pytest

from cluster import Cluster
from harness import WSNODE, call, connect_url, recv, run, silent, sub, wait_until

import cluster_nats  # scripts/cluster_nats.py (on sys.path through natsd)

SETS = ["mesh.heartbeat_ms=200", "mesh.unsubscribe_linger_ms=500",
        "limits.messages_per_second=0"]
TEST_BOUND_S = 240  # each test, cluster start and stop included
RECEIVED = 'wsnode_backbone_received_total{kind="nats"}'
UP = 'wsnode_backbone_up{kind="nats"}'
RECONNECTS = 'wsnode_backbone_reconnects_total{kind="nats"}'
DISCONNECTS = 'wsnode_backbone_disconnects_total{kind="nats"}'


@pytest.fixture
def make_cluster(tmp_path):
    """Clusters on NATS (n nodes, n nats-servers), all stopped by PID at the end."""
    made = []

    def factory(n=3, sets=()):
        c = Cluster(tmp_path / f"cluster{len(made)}", n, [*SETS, *sets], backbone="nats")
        made.append(c)
        assert c.state["backbone"] == "nats" and len(c.nats) == n
        return c

    yield factory
    errors = []
    for c in made:
        try:
            c.finish()
        except Exception as e:  # noqa: BLE001 - stop the others first, then report
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture(autouse=True)
def bounded(make_cluster):
    """Each test ends within TEST_BOUND_S (SIGALRM raises in the test); set
    up after make_cluster, so the alarm is off before the clusters stop."""
    def expired(signum, frame):
        raise TimeoutError(f"test still running after {TEST_BOUND_S} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_BOUND_S)
    t0 = time.monotonic()
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)
    print(f" [{time.monotonic() - t0:.1f} s]", end="")


# ------------------------------------------------------------------ helpers

async def direct(cluster, node_id, user):
    """A session on the node's own port (not nginx)."""
    ws, hello = await connect_url(cluster.node(node_id).ws_url(user))
    assert hello["node"] == node_id
    return ws


def publish_many(port, ch, items, timeout=10):
    """POST /api/publish of each item on one keep-alive connection; returns
    the parsed answers (each must be 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    answers = []
    try:
        for data in items:
            conn.request("POST", "/api/publish", json.dumps({"ch": ch, "data": data}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body)
            answers.append(json.loads(body))
    finally:
        conn.close()
    return answers


def subscriptions_of(cluster, node_id):
    """The subjects node `node_id`'s NATS connection subscribes to, from
    /connz?subs=1 of every running nats-server (the connection is named
    "wsnode <id>"); asserts that exactly one server holds it."""
    found = []
    for x in cluster.nats:
        status, body = cluster_nats.get_json(x, "/connz?subs=1&limit=1000")
        assert status == 200, (x["id"], status)
        for conn in body.get("connections") or []:
            if conn.get("name") == f"wsnode {node_id}":
                found.append(conn.get("subscriptions_list") or [])
    assert len(found) == 1, f"{node_id}: {len(found)} connections named 'wsnode {node_id}'"
    return found[0]


def ready(node):
    status, body, _ = node.http("GET", "/readyz", timeout=3)
    return status, body


# ------------------------------------------------------------------ 1. interest

def test_live_traffic_goes_only_to_nodes_with_subscribers(make_cluster):
    cluster = make_cluster(3)
    n1, n2, n3 = (cluster.node(i) for i in ("n1", "n2", "n3"))
    count = 200

    async def go():
        for ch, history in (("chat:only", False), ("room:only", True)):
            ws = await direct(cluster, "n1", f"u1-{ch.replace(':', '-')}")
            reply, _ = await call(ws, {"op": "sub", "ch": ch, "id": 1})
            assert reply["op"] == "ack", reply
            assert ("off" in reply) == history, reply
            await asyncio.sleep(0.5)  # presence and the like settle before counting
            n1_before = n1.metrics()[RECEIVED]
            n3_before = n3.metrics()[RECEIVED]
            # while n1 is subscribed: the servers know n1's interest, not n3's
            n1_subjects = subscriptions_of(cluster, "n1")
            assert any(s.endswith(ch) for s in n1_subjects), (ch, n1_subjects)
            n3_subjects = subscriptions_of(cluster, "n3")
            print(f"\n  {ch}: n3 subscribes to {sorted(n3_subjects)}", end="")
            assert not any(s.endswith(ch) for s in n3_subjects), (ch, n3_subjects)

            answers = await asyncio.to_thread(publish_many, n2.port, ch, list(range(count)))
            if history:
                assert [a.get("off") for a in answers] == list(range(1, count + 1)), answers[:3]
            got = []
            for _ in range(count):
                msg = await recv(ws, timeout=10)
                assert msg["op"] == "msg" and msg["ch"] == ch, msg
                got.append(msg)
            assert [m["data"] for m in got] == list(range(count))
            if history:
                assert [m["off"] for m in got] == list(range(1, count + 1))
            await silent(ws, 0.5)  # nothing twice
            n1_after = n1.metrics()[RECEIVED]
            n3_after = n3.metrics()[RECEIVED]
            print(f"\n  {ch}: n1 received +{n1_after - n1_before:.0f}, "
                  f"n3 received +{n3_after - n3_before:.0f}", end="")
            assert n3_after == n3_before, (ch, n3_before, n3_after)
            assert n1_after - n1_before >= count, (ch, n1_before, n1_after)
            await ws.close()

    run(go(), timeout=120)


# ------------------------------------------------------------------ 2. dots

def test_channel_names_with_dots_work_across_nodes(make_cluster):
    cluster = make_cluster(3)
    n2 = cluster.node("n2")

    async def go():
        for ch in ("chat:a.b.c", "room:a.b.c"):
            ws = await direct(cluster, "n1", "dots-" + ch.replace(":", "-"))
            await sub(ws, ch)
            # neighbours a subject-splitting mistake would mix it up with
            others = {}
            for other in (ch.rsplit(".", 1)[0], ch.split(".", 1)[0], ch.replace(".", "_")):
                o = await direct(cluster, "n1", "other-" + other.replace(":", "-"))
                await sub(o, other)
                others[other] = o
            # one subject token: '.' is written %2E (transport/nats_subjects.hpp)
            subjects = subscriptions_of(cluster, "n1")
            assert any(s.endswith("." + ch.replace(".", "%2E")) for s in subjects), subjects

            assert await asyncio.to_thread(publish_many, n2.port, ch, ["via api"])
            p = await direct(cluster, "n3", "pub-" + ch.replace(":", "-"))
            reply, _ = await call(p, {"op": "pub", "ch": ch, "data": "via ws", "id": 7})
            assert reply["op"] == "ack", reply
            a = await recv(ws)
            b = await recv(ws)
            assert (a["ch"], a["data"]) == (ch, "via api"), a
            assert (b["ch"], b["data"]) == (ch, "via ws"), b
            assert b["from"] == "pub-" + ch.replace(":", "-"), b
            if ch.startswith("room:"):
                assert (a["off"], b["off"]) == (1, 2), (a, b)
            await silent(ws, 0.3)
            for name, o in others.items():
                await silent(o, 0.2)
            if ch.startswith("room:"):
                status, body, _ = n2.http("POST", "/api/history", json.dumps({"ch": ch}),
                                          {"Content-Type": "application/json"})
                assert status == 200, body
                hist = json.loads(body)
                assert [x["data"] for x in hist["pubs"]] == ["via api", "via ws"], hist

    run(go(), timeout=90)


# ------------------------------------------------------------------ 3. NATS gone

def test_losing_nats_turns_not_ready_and_history_errors_then_recovers(make_cluster):
    timeout_ms = 2000
    cluster = make_cluster(1, sets=[f"nats.timeout_ms={timeout_ms}"])
    node = cluster.node("n1")
    assert ready(node)[0] == 200

    async def go():
        ws = await direct(cluster, "n1", "writer")
        reply, _ = await call(ws, {"op": "pub", "ch": "room:x", "data": "before", "id": 1})
        assert reply["op"] == "ack" and reply["off"] == 1, reply
        m = node.metrics()
        assert m[UP] == 1
        reconnects, disconnects = m[RECONNECTS], m[DISCONNECTS]

        await asyncio.to_thread(cluster.nats_kill, 1)
        t0 = time.monotonic()
        assert await asyncio.to_thread(wait_until, lambda: ready(node)[0] == 503, 5), ready(node)
        print(f"\n  /readyz 503 after {time.monotonic() - t0:.2f} s", end="")
        status, body = ready(node)
        assert status == 503 and json.loads(body)["mesh"] == "down", body
        m = node.metrics()
        assert m[UP] == 0
        assert m[DISCONNECTS] > disconnects, (disconnects, m[DISCONNECTS])

        t0 = time.monotonic()
        reply, others = await call(ws, {"op": "pub", "ch": "room:x", "data": "during", "id": 2},
                                   timeout=timeout_ms / 1000 + 3)
        took = time.monotonic() - t0
        print(f"; pub answered after {took:.2f} s: {reply}", end="")
        assert reply["op"] == "err", reply
        assert reply["code"] == "rate_limited", reply
        assert reply["msg"].startswith("channel history unavailable"), reply
        assert took <= timeout_ms / 1000 + 1.0, took
        assert not [f for f in others if f.get("op") == "msg"], others

        t0 = time.monotonic()
        await asyncio.to_thread(cluster.nats_start, 1)
        assert await asyncio.to_thread(wait_until, lambda: ready(node)[0] == 200, 10), ready(node)
        print(f"; /readyz 200 {time.monotonic() - t0:.2f} s after nats-start", end="")
        m = node.metrics()
        assert m[UP] == 1
        assert m[RECONNECTS] > reconnects, (reconnects, m[RECONNECTS])
        reply, _ = await call(ws, {"op": "pub", "ch": "room:x", "data": "after", "id": 3},
                              timeout=timeout_ms / 1000 + 3)
        print(f"; pub after: {reply}", end="")
        assert reply["op"] == "ack" and isinstance(reply.get("off"), int), reply
        assert reply["off"] >= 2, reply
        # what the channel holds now ("during" was answered with err; the
        # protocol allows that it was published anyway)
        status, body, _ = node.http("POST", "/api/history", json.dumps({"ch": "room:x"}),
                                    {"Content-Type": "application/json"})
        assert status == 200, body
        held = [(p["off"], p["data"]) for p in json.loads(body)["pubs"]]
        print(f"; room:x holds {held}", end="")
        assert held[0] == (1, "before") and held[-1] == (reply["off"], "after"), held

    run(go(), timeout=90)


# ------------------------------------------------------------------ 4. config

NATS_OK = '[backbone]\nkind = "nats"\n\n[nats]\nservers = ["nats://127.0.0.1:1"]\n'


@pytest.mark.parametrize("text, key", [
    (NATS_OK + '\n[mesh]\nbind = "tcp://127.0.0.1:7000"\n', "mesh.bind"),
    ('[backbone]\nkind = "nats"\n\n[nats]\nservers = ["http://x:1"]\n', "nats.servers"),
    (NATS_OK + "replicas = 9\n", "nats.replicas"),
    ('[backbone]\nkind = "zmq"\n', "backbone.kind"),
    (NATS_OK + 'user = "wsnode"\n', "nats.user"),
], ids=["mesh-bind", "http-url", "replicas-9", "kind-zmq", "user-no-password"])
def test_nats_config_refusals_name_the_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    r = subprocess.run([WSNODE, "--config", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert key in r.stderr, r.stderr
    print(f"\n  {r.stderr.strip()}", end="")


def test_a_valid_nats_config_passes_the_check_without_a_server(tmp_path):
    """The control for the refusals above: the same base config is accepted
    (the check does not need a reachable server)."""
    path = tmp_path / "ok.toml"
    path.write_text(NATS_OK + 'replicas = 1\nuser = "wsnode"\npassword = "secret"\n')
    r = subprocess.run([WSNODE, "--config", str(path), "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr)


# ------------------------------------------------------------------ 5. restart all

def test_history_survives_a_restart_of_every_node(make_cluster):
    cluster = make_cluster(3)
    ch = "room:keep"
    n1 = cluster.node("n1")
    answers = [publish_many(cluster.node(f"n{1 + i % 3}").port, ch, [f"m{i + 1}"])[0]
               for i in range(5)]
    assert [a["off"] for a in answers] == [1, 2, 3, 4, 5], answers
    status, body, _ = n1.http("POST", "/api/history", json.dumps({"ch": ch}),
                              {"Content-Type": "application/json"})
    assert status == 200, body
    ep = json.loads(body)["ep"]

    for node_id in ("n1", "n2", "n3"):
        cluster.stop(node_id)
    assert not any(cluster_nats.alive(x["pid"]) for x in cluster.state["nodes"])
    for node_id in ("n1", "n2", "n3"):
        cluster.start(node_id)
    assert wait_until(lambda: all(n.metrics()["wsnode_mesh_peers"] == 2 for n in cluster.nodes),
                      timeout=15)

    async def go():
        ws = await direct(cluster, "n2", "recoverer")
        reply, _ = await call(ws, {"op": "sub", "ch": ch, "id": 1,
                                   "since": {"ep": ep, "off": 2}})
        assert reply == {"op": "ack", "id": 1, "ep": ep, "off": 5, "recovered": True}, reply
        got = [await recv(ws) for _ in range(3)]
        assert [(m["off"], m["data"]) for m in got] == [(3, "m3"), (4, "m4"), (5, "m5")], got
        await silent(ws, 0.5)
        await ws.send(json.dumps({"op": "history", "ch": ch, "id": 2}))
        reply = await recv(ws)
        assert reply["op"] == "history" and reply["ep"] == ep and reply["off"] == 5, reply
        assert [(p["off"], p["data"]) for p in reply["pubs"]] == \
            [(i, f"m{i}") for i in range(1, 6)], reply

    run(go(), timeout=60)
    for node in cluster.nodes:  # every restarted node reads the same history
        status, body, _ = node.http("POST", "/api/history", json.dumps({"ch": ch}),
                                    {"Content-Type": "application/json"})
        assert status == 200, body
        hist = json.loads(body)
        assert hist["ep"] == ep and [p["data"] for p in hist["pubs"]] == \
            [f"m{i}" for i in range(1, 6)], (node.id, hist)

"""Webhooks (protocol v1.2 events, the first part of issue 30): connect and
disconnect events in signed batches to [hooks] events_url, at least once
(retried while the receiver fails), from a bounded queue whose overflow is
counted. The receiver is a real process (hook_backend.py); clients are
Python's websockets."""
import hashlib
import hmac
import json
import time

import websockets

from harness import connect, run, wait_until

SECRET = "webhook-secret-0123456789"


def events_node(make_node, backend, **hooks):
    conf = {"events_url": backend.url("events"), "secret": SECRET}
    conf.update(hooks)
    return make_node(hooks=conf)


def delivered(backend):
    """Every event the receiver got (repeats included), oldest first, after
    checking each call's signature and node."""
    out = []
    for r in backend.stats()["requests"]:
        if r["hook"] != "events":
            continue
        headers = {k.lower(): v for k, v in r["headers"].items()}
        want = "sha256=" + hmac.new(SECRET.encode(), r["raw"].encode(), hashlib.sha256).hexdigest()
        assert headers.get("x-wsnode-signature") == want, r
        assert headers.get("x-wsnode-secret") == SECRET
        body = json.loads(r["raw"])
        assert body["node"] and 1 <= len(body["events"]) <= 100
        out += body["events"]
    return out


def by_id(events):
    return {e["id"]: e for e in events}


def test_connect_and_disconnect_once_per_session_signed(make_node, backend):
    node = events_node(make_node, backend)
    sids = []

    async def go():
        for user in ("ann", "bob", "cat"):
            ws, hello = await connect(node, user)
            sids.append(hello["sid"])
            await ws.close(code=4000, reason=f"bye {user}")
    run(go())
    assert wait_until(lambda: sum(e["type"] == "disconnect" for e in by_id(delivered(backend))
                                  .values()) == 3, timeout=10)
    events = list(by_id(delivered(backend)).values())
    connects = [e for e in events if e["type"] == "connect"]
    disconnects = [e for e in events if e["type"] == "disconnect"]
    assert sorted(e["sid"] for e in connects) == sorted(sids)
    assert sorted(e["sid"] for e in disconnects) == sorted(sids)
    now_ms = time.time() * 1000
    for e in events:
        assert abs(e["time"] - now_ms) < 60000, e
    for e in disconnects:
        assert e["code"] == 4000 and e["reason"] == f"bye {e['user']}", e
    assert {e["user"] for e in connects} == {"ann", "bob", "cat"}
    m = node.metrics()
    assert m['wsnode_webhook_events_total{result="sent"}'] >= 6
    assert m["wsnode_webhook_queued"] == 0


def test_only_the_kinds_configured(make_node, backend):
    node = events_node(make_node, backend, events=["disconnect"])

    async def go():
        ws, _ = await connect(node, "ann")
        await ws.close()
    run(go())
    assert wait_until(lambda: len(delivered(backend)) >= 1, timeout=10)
    time.sleep(0.3)
    assert [e["type"] for e in by_id(delivered(backend)).values()] == ["disconnect"]


def test_a_failing_receiver_gets_every_event_later(make_node, backend):
    backend.rules(events={"status": 500})
    node = events_node(make_node, backend)

    async def go():
        for i in range(5):
            ws, _ = await connect(node, f"u{i}")
            await ws.close()
    run(go())
    assert wait_until(lambda: backend.calls("events") >= 3, timeout=10)  # retried
    assert node.metrics()["wsnode_webhook_calls_failed_total"] >= 3
    backend.rules(events={"status": 204})
    assert wait_until(lambda: node.metrics()["wsnode_webhook_queued"] == 0, timeout=20)
    ok_events = []
    for r in backend.stats()["requests"]:
        if r["hook"] == "events":
            ok_events += json.loads(r["raw"])["events"]
    got = by_id(ok_events)  # at least once: repeats share an id
    assert sorted(e["user"] for e in got.values() if e["type"] == "connect") == \
        [f"u{i}" for i in range(5)]
    assert sorted(e["user"] for e in got.values() if e["type"] == "disconnect") == \
        [f"u{i}" for i in range(5)]


def test_a_receiver_that_never_answers_fills_the_bounded_queue(make_node, backend):
    backend.rules(events={"delay_ms": 3000})
    node = events_node(make_node, backend, timeout_ms=200, events_max_queue=5)

    async def go():
        for i in range(20):
            ws, _ = await connect(node, f"u{i}")
            await ws.close()
    run(go())
    m = node.metrics()
    assert m["wsnode_webhook_queued"] <= 5
    assert m['wsnode_webhook_events_total{result="dropped"}'] >= 30
    assert node.http("GET", "/healthz")[0] == 200


def test_a_stopping_node_sends_the_disconnects_of_its_sessions(make_node, backend):
    node = events_node(make_node, backend)

    async def go():
        ws, hello = await connect(node, "ann")
        assert wait_until(lambda: len(delivered(backend)) >= 1, timeout=10)
        node.stop()  # drain: the session closes with 1001
        try:
            await ws.recv()
        except websockets.ConnectionClosed:
            pass
        return hello["sid"]
    sid = run(go())
    events = by_id(delivered(backend)).values()
    assert [(e["type"], e["code"]) for e in events if e["type"] == "disconnect"] == \
        [("disconnect", 1001)], list(events)
    assert [e["sid"] for e in events] == [sid, sid]

"""Hooks (protocol v1.2, issue 29): the commands the application decides
(subscribe, publish, rpc), replies in order behind a slow hook,
back-pressure and the bound on calls in flight, metrics. The backend is a
real process, hook_backend.py, scripted per test; clients are Python's
websockets (not ours) and rawws where a client must pipeline megabytes of
commands."""
import asyncio
import json
import os
import resource
import socket
import struct
import threading
import time

from harness import (SANITIZED, connect, connect_url, make_token, recv, run, silent,
                     wait_until)
from hooks_kit import SECRET, as_cookie, ask, hooked, metric, reply_ep
from rawws import RawClient, _mask_fast


# ---------------------------------------------------------------- subscribe

def test_subscribe_hook_allows_and_refuses_per_channel(make_node, backend):
    backend.rules(
        connect={"answer": {"result": {"user": "${cookie.session}",
                                       "meta": {"name": "N-${cookie.session}"}}}},
        subscribe=[
            {"match": {"req.ch": "chat:secret"},
             "answer": {"error": {"code": "members_only", "msg": "members only"}}},
            {"match": {"req.ch": "chat:down"}, "status": 500},
            {"match": {"req.ch": "chat:vip", "req.data.invite": "yes"}, "answer": {"result": {}}},
            {"match": {"req.ch": "chat:vip"},
             "answer": {"error": {"code": "forbidden", "msg": "invite needed"}}}])
    node = hooked(make_node, backend, ("connect", "subscribe", "publish", "rpc"),
                  {"forward_headers": ["Cookie"]})
    for i in (1, 2, 3):
        assert node.publish("chat:1", {"n": i})[0] == 200

    async def go():
        ws, hello = await as_cookie(node, "ann")
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:1", "id": 1})
        assert reply["op"] == "ack" and reply["off"] == 3, reply
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:secret", "id": 2})
        assert reply == {"op": "err", "id": 2, "code": "members_only", "msg": "members only"}
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:down", "id": 3})
        assert reply["op"] == "err" and reply["code"] == "unavailable", reply
        assert reply["msg"].startswith("hook failed: "), reply
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:vip", "id": 4})
        assert reply == {"op": "err", "id": 4, "code": "forbidden", "msg": "invite needed"}
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:vip", "data": {"invite": "yes"},
                                  "id": 5})
        assert reply["op"] == "ack", reply
        reply, _ = await ask(ws, {"op": "sub", "ch": "open:1", "id": 6})  # no hook there
        assert reply == {"op": "ack", "id": 6}
        # with history: recovery through the hook
        ws2, _ = await as_cookie(node, "bob")
        reply, others = await ask(ws2, {"op": "sub", "ch": "chat:1", "id": 1,
                                        "since": {"ep": reply_ep(node, "chat:1"), "off": 1}})
        assert reply["op"] == "ack" and reply["recovered"] is True, reply
        got = others + [await recv(ws2) for _ in range(2 - len(others))]
        assert [m["data"]["n"] for m in got] == [2, 3]
        for ch in ("chat:1", "chat:secret", "chat:down", "chat:vip", "open:1"):
            assert node.publish(ch, ch)[0] == 200
        seen = [(await recv(ws))["ch"] for _ in range(3)]
        assert seen == ["chat:1", "chat:vip", "open:1"]
        await silent(ws)
        return hello["sid"]

    sid = run(go())
    bodies = backend.bodies("subscribe")
    assert bodies[0] == {"hook": "subscribe", "node": "n1", "sid": sid, "user": "ann",
                         "meta": {"name": "N-ann"}, "ch": "chat:1", "data": None}
    anns = [b for b in bodies if b["user"] == "ann"]
    assert [b["ch"] for b in anns] == ["chat:1", "chat:secret", "chat:down", "chat:vip", "chat:vip"]
    assert anns[4]["data"] == {"invite": "yes"}
    assert metric(node, "wsnode_hook_calls_total", hook="subscribe", result="error") == 2
    assert metric(node, "wsnode_hook_calls_total", hook="subscribe", result="status") == 1


def test_a_subscription_grant_wins_without_the_hook(make_node, backend):
    backend.rules(subscribe={"answer": {"error": {"code": "forbidden", "msg": "hook says no"}}})
    node = hooked(make_node, backend, auth={"secret": SECRET})

    async def go():
        tok = make_token("alice", SECRET, extra={"channels": ["chat:granted"]})
        ws, _ = await connect_url(node.ws_url(token=tok))
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:granted", "id": 1})
        assert reply["op"] == "ack", reply
        sub_tok = make_token("alice", SECRET, extra={"ch": "chat:token"})
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:token", "token": sub_tok, "id": 2})
        assert reply["op"] == "ack", reply
        reply, _ = await ask(ws, {"op": "sub", "ch": "chat:other", "id": 3})
        assert reply == {"op": "err", "id": 3, "code": "forbidden", "msg": "hook says no"}
    run(go())
    assert [b["ch"] for b in backend.bodies("subscribe")] == ["chat:other"]


# ------------------------------------------------------------------ publish

def test_publish_hook_rewrites_what_subscribers_and_history_get(make_node, backend):
    backend.rules(publish=[
        {"match": {"req.ch": "danmaku:*"},
         "answer": {"result": {"data": {"text": "***", "was": "${req.data}", "by": "${req.user}"}}}},
        {"match": {"req.ch": "chat:rw"}, "answer": {"result": {"data": "${req.data.text} (ok)"}}}])
    node = hooked(make_node, backend)

    async def go():
        alice, hello = await connect(node, "alice")
        bob, _ = await connect(node, "bob")
        for i, ch in enumerate(("danmaku:1", "chat:rw", "chat:keep"), start=1):
            reply, _ = await ask(bob, {"op": "sub", "ch": ch, "id": i})
            assert reply["op"] == "ack", reply
        reply, _ = await ask(alice, {"op": "pub", "ch": "danmaku:1", "data": {"text": "spoiler"},
                                     "id": 1})
        assert reply == {"op": "ack", "id": 1}
        assert await recv(bob) == {"op": "msg", "ch": "danmaku:1", "from": "alice", "data": {
            "text": "***", "was": {"text": "spoiler"}, "by": "alice"}}
        reply, _ = await ask(alice, {"op": "pub", "ch": "chat:rw", "data": {"text": "hello"},
                                     "id": 2})
        assert reply == {"op": "ack", "id": 2, "off": 1}
        assert await recv(bob) == {"op": "msg", "ch": "chat:rw", "from": "alice", "off": 1,
                                   "data": "hello (ok)"}
        reply, _ = await ask(alice, {"op": "pub", "ch": "chat:keep", "data": [1, 2, 3], "id": 3})
        assert reply == {"op": "ack", "id": 3, "off": 1}  # result {}: as sent
        assert (await recv(bob))["data"] == [1, 2, 3]
        await silent(bob)
        return hello["sid"]

    sid = run(go())
    status, h = node.history("chat:rw")
    assert status == 200 and [p["data"] for p in h["pubs"]] == ["hello (ok)"], h
    assert h["pubs"][0].get("from") == "alice"
    assert node.history("chat:keep")[1]["pubs"][0]["data"] == [1, 2, 3]
    bodies = [b for b in backend.bodies("publish") if b.get("user") == "alice"]
    assert bodies[1] == {"hook": "publish", "node": "n1", "sid": sid, "user": "alice",
                         "meta": None, "ch": "chat:rw", "data": {"text": "hello"}}


def test_publish_hook_refusal_and_timeout_publish_nothing(make_node, backend):
    backend.rules(publish=[
        {"match": {"req.ch": "chat:spam"}, "answer": {"error": {"code": "spam", "msg": "no ads"}}},
        {"match": {"req.ch": "chat:slow"}, "delay_ms": 1000, "answer": {"result": {"data": "late"}}},
        {"match": {"req.ch": "chat:broken"}, "status": 500}])
    node = hooked(make_node, backend, keys={"timeout_ms": 300})
    chans = ("chat:spam", "chat:slow", "chat:broken", "chat:ok")

    async def go():
        alice, _ = await connect(node, "alice")
        bob, _ = await connect(node, "bob")
        for i, ch in enumerate(chans, start=1):
            assert (await ask(bob, {"op": "sub", "ch": ch, "id": i}))[0]["op"] == "ack"
        reply, _ = await ask(alice, {"op": "pub", "ch": "chat:spam", "data": "buy", "id": 1})
        assert reply == {"op": "err", "id": 1, "code": "spam", "msg": "no ads"}
        started = time.monotonic()
        reply, _ = await ask(alice, {"op": "pub", "ch": "chat:slow", "data": "x", "id": 2})
        assert reply == {"op": "err", "id": 2, "code": "unavailable", "msg": "hook failed: timeout"}
        assert 0.25 <= time.monotonic() - started < 0.9
        reply, _ = await ask(alice, {"op": "pub", "ch": "chat:broken", "data": "x", "id": 3})
        assert reply["op"] == "err" and reply["code"] == "unavailable", reply
        assert reply["msg"].startswith("hook failed: "), reply
        await silent(bob, 1.2)  # the slow answer comes after its timeout: dropped
        await silent(alice, 0.1)
        reply, _ = await ask(alice, {"op": "pub", "ch": "chat:ok", "data": "fine", "id": 4})
        assert reply == {"op": "ack", "id": 4, "off": 1}
        m = await recv(bob)
        assert m["ch"] == "chat:ok" and m["data"] == "fine", m
    run(go())
    for ch in chans[:3]:
        assert node.history(ch)[1]["pubs"] == [], ch
    calls = lambda result: metric(node, "wsnode_hook_calls_total", hook="publish", result=result)
    assert (calls("error"), calls("timeout"), calls("status")) == (1, 1, 1)
    assert metric(node, "wsnode_errors_total", code="unavailable") == 2


# ---------------------------------------------------------------------- rpc

def test_rpc_round_trip(make_node, backend):
    backend.rules(rpc=[
        {"match": {"req.method": "get_profile"},
         "answer": {"result": {"data": {"name": "N-${req.user}", "id": "${req.data.id}"}}}},
        {"match": {"req.method": "missing"},
         "answer": {"error": {"code": "not_found", "msg": "no such method"}}},
        {"match": {"req.method": "down"}, "status": 503}])
    node = hooked(make_node, backend)

    async def go():
        ws, hello = await connect(node, "ann")
        reply, _ = await ask(ws, {"op": "rpc", "method": "get_profile", "data": {"id": 7}, "id": 1})
        assert reply == {"op": "rpc", "id": 1, "data": {"name": "N-ann", "id": 7}}
        reply, _ = await ask(ws, {"op": "rpc", "method": "chat:ping/v1.x-y_z", "id": 2})
        assert reply == {"op": "rpc", "id": 2, "data": None}  # result {}: no data
        reply, _ = await ask(ws, {"op": "rpc", "method": "missing", "data": 1, "id": 3})
        assert reply == {"op": "err", "id": 3, "code": "not_found", "msg": "no such method"}
        reply, _ = await ask(ws, {"op": "rpc", "method": "down", "id": 4})
        assert reply["op"] == "err" and reply["code"] == "unavailable", reply
        for i, method in enumerate(("bad method", "", "m" * 65, 7), start=5):
            reply, _ = await ask(ws, {"op": "rpc", "method": method, "id": i})
            assert reply["op"] == "err" and reply["code"] == "bad_request", (method, reply)
        return hello["sid"]

    sid = run(go())
    bodies = backend.bodies("rpc")
    assert [b["method"] for b in bodies] == ["get_profile", "chat:ping/v1.x-y_z", "missing", "down"]
    assert bodies[0] == {"hook": "rpc", "node": "n1", "sid": sid, "user": "ann", "meta": None,
                         "method": "get_profile", "data": {"id": 7}}
    assert bodies[1]["data"] is None
    assert metric(node, "wsnode_hook_calls_total", hook="rpc", result="ok") == 2


def test_rpc_without_rpc_url_is_unknown_op(make_node):
    node = make_node()

    async def go():
        ws, _ = await connect(node, "ann")
        reply, _ = await ask(ws, {"op": "rpc", "method": "get_profile", "id": 1})
        assert reply["op"] == "err" and reply["code"] == "unknown_op", reply
    run(go())


def test_replies_stay_in_command_order_behind_a_slow_hook(make_node, backend):
    backend.rules(publish={"match": {"req.ch": "chat:slow"}, "delay_ms": 500},
                  rpc={"answer": {"result": {"data": "r"}}})
    node = hooked(make_node, backend)

    async def go():
        ws, _ = await connect(node, "ann")
        started = time.monotonic()
        for cmd in ({"op": "pub", "ch": "chat:slow", "data": 1, "id": 1},
                    {"op": "ping", "id": 2},
                    {"op": "rpc", "method": "m", "id": 3},
                    {"op": "pub", "ch": "open:1", "data": 2, "id": 4},
                    {"op": "pub", "ch": "danmaku:1", "data": 3, "id": 5}):
            await ws.send(json.dumps(cmd))
        replies = []
        while len(replies) < 5:
            frame = await recv(ws)
            if frame["op"] != "msg":
                replies.append(frame)
                if len(replies) == 1:
                    assert time.monotonic() - started >= 0.45
        assert [(r["op"], r["id"]) for r in replies] == \
            [("ack", 1), ("pong", 2), ("rpc", 3), ("ack", 4), ("ack", 5)], replies
    run(go())


# ------------------------------------------------------------ back-pressure

def masked_text(text):
    """A client's text frame (masked, as RFC 6455 wants)."""
    payload, mask = text.encode(), os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0xFE, n)
    return head + mask + _mask_fast(payload, mask)


def test_a_session_waiting_for_its_hook_is_not_read_on(make_node, backend):
    """A pub waits 3 s for its hook while its client pipelines 20 MB of
    commands behind it: the node stops reading the client (its sending
    stalls) instead of queueing them; then every command is answered, in
    order."""
    backend.rules(publish={"delay_ms": 3000})
    node = hooked(make_node, backend, keys={"timeout_ms": 10000})
    count, pad = 20000, "x" * 1000
    client = RawClient(node.port, "/ws?user=ann", timeout=60)
    try:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        assert json.loads(client.recv_frame()[1])["op"] == "hello"
        blob = b"".join([masked_text('{"op":"pub","ch":"chat:slow","data":0,"id":0}')] + [
            masked_text(json.dumps({"op": "pub", "ch": "open:1", "data": pad, "id": i}))
            for i in range(1, count + 1)])
        state = {"sent": 0, "ids": [], "ops": set(), "first_reply": None, "error": None}

        def sender():
            view = memoryview(blob)
            try:
                while state["sent"] < len(blob):
                    state["sent"] += client.sock.send(view[state["sent"]:state["sent"] + 65536])
            except OSError as e:
                state["error"] = e

        def reader():
            try:
                while len(state["ids"]) <= count:
                    op, payload = client.recv_frame()
                    if op == 0x1:
                        reply = json.loads(payload)
                        state["first_reply"] = state["first_reply"] or time.monotonic()
                        state["ids"].append(reply["id"])
                        state["ops"].add(reply["op"])
            except (OSError, ConnectionError) as e:
                state["error"] = e

        rss_before = node.rss_kib()
        started = time.monotonic()
        threads = [threading.Thread(target=f, daemon=True) for f in (sender, reader)]
        for t in threads:
            t.start()
        time.sleep(2)  # the hook still holds the first pub
        stalled_at, rss_during = state["sent"], node.rss_kib()
        for t in threads:
            t.join(timeout=90)
        assert state["error"] is None, state["error"]
        print(f"sent {stalled_at >> 10} KiB of {len(blob) >> 10} while the hook waited; "
              f"RSS {rss_before >> 10} -> {rss_during >> 10} MiB")
        assert stalled_at < 8 << 20, stalled_at  # reading paused: kernel buffers at most
        assert state["first_reply"] - started >= 2.5
        assert state["ids"] == list(range(count + 1)) and state["ops"] == {"ack"}, state["ops"]
        assert rss_during - rss_before < (64 if SANITIZED else 32) << 10
        assert backend.calls("publish") == 1
    finally:
        client.close()



SESSIONS = 1000


def test_slow_backend_many_publishers_bounded(make_node, backend):
    """1,000 sessions publish at once through a backend that takes 40 ms a
    call (10 s at 4 calls at once): never more than max_in_flight calls at
    once, every command answered, memory bounded. (Fewer sessions only when
    the open-file limit cannot be raised.)"""
    backend.rules(publish={"delay_ms": 40})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 3 * SESSIONS:  # the node (started below) and this process each hold SESSIONS
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * SESSIONS), hard))
    sessions = min(SESSIONS, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 2 - 100)
    node = hooked(make_node, backend, keys={"max_in_flight": 4, "timeout_ms": 60000})
    state = {"max_rss": 0, "max_in_flight": 0, "max_queued": 0}

    async def sample():
        while True:
            m = await asyncio.to_thread(node.metrics)
            state["max_in_flight"] = max(state["max_in_flight"], m.get("wsnode_hook_in_flight", 0))
            state["max_queued"] = max(state["max_queued"], m.get("wsnode_hook_queued", 0))
            state["max_rss"] = max(state["max_rss"], node.rss_kib())
            await asyncio.sleep(0.2)

    async def go():
        watcher, _ = await connect(node, "watcher", ping_interval=None)
        assert (await ask(watcher, {"op": "sub", "ch": "danmaku:bp", "id": 1}))[0]["op"] == "ack"
        clients = []
        for start in range(0, sessions, 100):
            clients += await asyncio.gather(*(connect(node, f"u{i}", ping_interval=None)
                                              for i in range(start, min(start + 100, sessions))))
        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        try:
            replies = await asyncio.gather(*(
                ask(ws, {"op": "pub", "ch": "danmaku:bp", "data": i, "id": 1}, timeout=90)
                for i, (ws, _) in enumerate(clients)))
        finally:
            sampler.cancel()
        took = time.monotonic() - started
        got = [await recv(watcher, 10) for _ in range(sessions)]
        return [r for r, _ in replies], got, took

    replies, got, took = run(go(), timeout=240)
    stats = backend.stats()
    print(f"{sessions} publishes in {took:.1f} s; backend max concurrent "
          f"{stats['max_concurrent']}, node max in flight {state['max_in_flight']}, "
          f"queued {state['max_queued']}, RSS max {state['max_rss'] // 1024} MiB")
    assert [r["op"] for r in replies] == ["ack"] * sessions, \
        [r for r in replies if r["op"] != "ack"][:5]
    assert sorted(m["data"] for m in got) == list(range(sessions))
    assert stats["calls"]["publish"] == sessions
    assert stats["max_concurrent"] <= 4, stats["max_concurrent"]
    assert state["max_in_flight"] <= 4 and state["max_queued"] > 0, state
    assert stats["connections"] <= 8, stats["connections"]  # keep-alive: reused
    assert state["max_rss"] < (1024 if SANITIZED else 300) * 1024, state
    assert metric(node, "wsnode_hook_calls_total", hook="publish", result="ok") == sessions
    assert wait_until(lambda: node.metrics()["wsnode_hook_queued"] == 0)


# ------------------------------------------------------------------ metrics

def test_hook_metrics_and_keep_alive(make_node, backend):
    node = hooked(make_node, backend)

    async def go():
        ws, _ = await connect(node, "ann")
        for i in range(1, 21):
            reply, _ = await ask(ws, {"op": "pub", "ch": "danmaku:1", "data": i, "id": i})
            assert reply == {"op": "ack", "id": i}
    run(go())
    m = node.metrics()
    assert m['wsnode_hook_calls_total{hook="publish",result="ok"}'] == 20
    assert m['wsnode_hook_duration_seconds_count{hook="publish"}'] == 20
    assert m['wsnode_hook_duration_seconds_bucket{hook="publish",le="+Inf"}'] == 20
    assert m["wsnode_hook_in_flight"] == 0 and m["wsnode_hook_queued"] == 0
    assert backend.stats()["connections"] == 1  # one keep-alive connection, reused
    assert m['wsnode_hook_duration_seconds_sum{hook="publish"}'] > 0

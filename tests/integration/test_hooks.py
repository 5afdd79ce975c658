"""Hooks (protocol v1.2, issue 29): wsnode asks the application's backend
(connect, refresh, subscribe, publish, rpc) over HTTP/1.1. The backend is a
real process, hook_backend.py, scripted per test (and, in the last test,
examples/hooks_backend.py behind examples/hooks.toml). Clients are Python's
websockets (not ours), http.client for refused upgrades, and rawws where a
client must pipeline megabytes of commands."""
import asyncio
import base64
import http.client
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib

import pytest
import websockets

from harness import (ROOT, SANITIZED, WSNODE, connect, connect_url, free_port, make_token, recv,
                     run, silent, wait_until)
from hook_backend import Backend
from rawws import RawClient, _mask_fast

SECRET = "hooks-secret-0123456789abcdef"
NAMESPACES = [
    {"name": "chat", "history_size": 100, "subscribe_hook": True, "publish_hook": True},
    {"name": "danmaku", "publish_hook": True},
    {"name": "open"},
]
LIMITS = {"max_errors": 1000, "messages_per_second": 0}
ALLOW_BY_COOKIE = {"answer": {"result": {"user": "${cookie.session}"}}}


@pytest.fixture
def backend(tmp_path):
    """The scripted backend on a free loopback port, stopped by PID at the end."""
    b = Backend(tmp_path)
    try:
        b.start()
        yield b
    finally:
        b.stop()


def hooked(make_node, backend, hooks=("subscribe", "publish", "rpc"), keys=None,
           namespace=None, **sections):
    """A node whose [hooks] `hooks` urls point at `backend` (plus `keys`);
    NAMESPACES' switches of hooks without a url are left out."""
    conf = {f"{h}_url": backend.url(h) for h in hooks}
    conf.update(keys or {})
    if namespace is None:
        namespace = [{k: v for k, v in ns.items()
                      if not k.endswith("_hook") or k[:-5] in hooks} for ns in NAMESPACES]
    sections.setdefault("limits", LIMITS)
    return make_node(hooks=conf, namespace=namespace, **sections)


def upgrade(node, path="/ws", headers=None):
    """(status, body text) of a WebSocket upgrade request: for refusals."""
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=15)
    try:
        conn.request("GET", path, headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), **(headers or {})})
        r = conn.getresponse()
        return r.status, ("" if r.status == 101 else r.read().decode())
    finally:
        conn.close()


async def as_cookie(node, session, path="/ws", **kw):
    """A session opened with the cookie session=`session`; (ws, hello)."""
    return await connect_url(node.ws_url(path=path),
                             extra_headers={"Cookie": f"session={session}"}, **kw)


async def ask(ws, cmd, timeout=5):
    """Sends `cmd`; returns (the frame with its id, the other frames seen meanwhile)."""
    await ws.send(json.dumps(cmd))
    others = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.001, deadline - time.monotonic()))
        if frame.get("id") == cmd["id"] and frame["op"] in ("ack", "err", "pong", "rpc"):
            return frame, others
        others.append(frame)


async def close_of(ws, timeout=8):
    """Reads until the session closes; returns the close frame received."""
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await recv(ws, timeout)
    assert info.value.rcvd is not None, info.value
    return info.value.rcvd


def reply_ep(node, ch):
    """The channel's current epoch (history namespaces)."""
    return node.history(ch, limit=0)[1]["ep"]


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def metric(node, name, **labels):
    key = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    return node.metrics().get(key, 0)


# ------------------------------------------------------------------ connect

def test_connect_by_cookie_gives_user_channels_and_refusals(make_node, backend):
    backend.rules(connect=[
        {"match": {"cookie.session": "ann-cookie"},
         "answer": {"result": {"user": "ann", "channels": ["chat:ann", "open:news"],
                               "meta": {"name": "Ann"}}}},
        {"match": {"cookie.session": "quiet"}, "answer": {"error": {"code": "banned"}}},
        {"answer": {"error": {"code": "forbidden", "msg": "not logged in"}}}],
        subscribe={"answer": {"error": {"code": "forbidden", "msg": "hook says no"}}})
    node = hooked(make_node, backend, ("connect", "subscribe", "publish", "rpc"),
                  {"forward_headers": ["Cookie"], "secret": "hook-secret"})

    async def go():
        # ?user= is not identity when the connect hook is on
        ws, hello = await connect_url(node.ws_url(path="/ws?user=mallory&x=2"),
                                      extra_headers={"Cookie": "session=ann-cookie; theme=dark"})
        assert hello["user"] == "ann", hello
        first, second = await recv(ws), await recv(ws)
        # chat keeps history: its frame carries the channel's position
        assert first == {"op": "subscribed", "ch": "chat:ann", "ep": first.get("ep"), "off": 0}
        assert isinstance(first["ep"], str) and first["ep"]
        assert second == {"op": "subscribed", "ch": "open:news"}
        assert node.publish("open:news", "headline")[0] == 200
        m = await recv(ws)
        assert m["op"] == "msg" and m["ch"] == "open:news" and m["data"] == "headline", m
        # ?token= goes to the hook, it is not identity either
        ws2, hello2 = await connect_url(node.ws_url(path="/ws?token=abc.def.ghi"),
                                        extra_headers={"Cookie": "session=ann-cookie"})
        assert hello2["user"] == "ann"
        return hello["sid"]

    sid = run(go())
    # server-side channels skip the subscribe hook (which refuses everything here)
    assert backend.calls("subscribe") == 0
    assert upgrade(node, "/ws?user=bob") == (403, "not logged in\n")
    assert upgrade(node, "/ws", {"Cookie": "session=quiet"}) == (403, "banned\n")
    bodies = backend.bodies("connect")
    assert len(bodies) == 4, bodies
    first = bodies[0]
    assert first["remote"].startswith("127.0.0.1:"), first
    assert {k: v for k, v in first.items() if k != "remote"} == {
        "hook": "connect", "node": "n1", "headers": {"Cookie": "session=ann-cookie; theme=dark"},
        "query": "user=mallory&x=2"}, first
    assert bodies[1]["token"] == "abc.def.ghi" and bodies[1]["query"] == "token=abc.def.ghi"
    assert bodies[2]["headers"] == {} and bodies[2]["query"] == "user=bob"
    assert "token" not in bodies[2]
    assert sid.startswith("n1-")
    for r in backend.stats()["requests"]:
        h = lower(r["headers"])
        assert h.get("x-wsnode-secret") == "hook-secret", r
        assert h.get("content-type", "").startswith("application/json"), r
    assert metric(node, "wsnode_hook_calls_total", hook="connect", result="ok") == 2
    assert metric(node, "wsnode_hook_calls_total", hook="connect", result="error") == 2


def test_connect_with_backend_down_is_503(make_node, backend):
    backend.rules(connect=ALLOW_BY_COOKIE)
    node = hooked(make_node, backend, ("connect",), {"forward_headers": ["Cookie"]})
    cookie = {"Cookie": "session=ann"}
    assert upgrade(node, "/ws", cookie) == (101, "")
    backend.stop()  # its keep-alive connection goes with it
    status, body = upgrade(node, "/ws", cookie)
    assert status == 503 and body.startswith("hook failed: "), (status, body)
    backend.start()
    backend.rules(connect=ALLOW_BY_COOKIE)
    assert upgrade(node, "/ws", cookie) == (101, "")  # back
    # a url where nothing listens
    dead = hooked(make_node, backend, (), {"connect_url": f"http://127.0.0.1:{free_port()}/c"},
                  namespace=[{"name": "open"}])
    status, body = upgrade(dead, "/ws", cookie)
    assert status == 503 and body.startswith("hook failed: ") and "refused" in body, body
    assert metric(dead, "wsnode_hook_calls_total", hook="connect", result="unreachable") == 1
    assert metric(node, "wsnode_hook_calls_total", hook="connect", result="ok") == 2


def test_connect_disconnect_answer_closes_with_its_code(make_node, backend):
    backend.rules(connect=[
        {"match": {"cookie.session": "eve"},
         "answer": {"disconnect": {"code": 4003, "reason": "banned for a day"}}},
        {"answer": {"disconnect": {"code": 4999}}}])
    node = hooked(make_node, backend, ("connect",), {"forward_headers": ["Cookie"]})

    async def go():
        for session, code, reason in (("eve", 4003, "banned for a day"), ("fay", 4999, "")):
            ws = await websockets.connect(node.ws_url(path="/ws"), close_timeout=2,
                                          extra_headers={"Cookie": f"session={session}"})
            # no hello: the close frame is the first thing
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)
    run(go())
    assert metric(node, "wsnode_hook_calls_total", hook="connect", result="disconnect") == 2


def test_connect_without_refresh_url_closes_4001_after_expire_at(make_node, backend):
    backend.rules(connect={"answer": {"result": {"user": "${cookie.session}",
                                                  "expire_at": "${now+1}"}}})
    node = hooked(make_node, backend, ("connect",), {"forward_headers": ["Cookie"]},
                  auth={"expiry_grace_ms": 300})

    async def go():
        ws, _ = await as_cookie(node, "ann")
        started = time.monotonic()
        assert (await close_of(ws, timeout=6)).code == 4001
        assert time.monotonic() - started >= 0.3  # expire_at (whole seconds) + the grace
    run(go())


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


# ------------------------------------------------------------------ refresh

def test_refresh_extends_or_closes_4001(make_node, backend):
    backend.rules(
        connect={"answer": {"result": {"user": "${cookie.session}", "expire_at": "${now+1}",
                                       "meta": {"v": 1}}}},
        refresh=[
            {"match": {"req.user": "bob"},
             "answer": {"error": {"code": "forbidden", "msg": "session revoked"}}},
            {"match": {"req.user": "cid"}, "status": 500},
            {"match": {"req.user": "dan"}, "answer": {"disconnect": {"code": 4005, "reason": "moved"}}},
            {"answer": {"result": {"expire_at": "${now+3600}", "meta": {"v": 2}}}}],
        rpc={"answer": {"result": {"data": "${req.meta}"}}})
    node = hooked(make_node, backend, ("connect", "refresh", "subscribe", "publish", "rpc"),
                  {"forward_headers": ["Cookie"]}, auth={"expiry_grace_ms": 500})

    async def go():
        started = time.monotonic()
        ann, hello = await as_cookie(node, "ann")
        bob, _ = await as_cookie(node, "bob")
        cid, _ = await as_cookie(node, "cid")
        dan, _ = await as_cookie(node, "dan")
        closes = await asyncio.gather(close_of(bob), close_of(cid), close_of(dan))
        assert [(c.code, c.reason) for c in closes] == \
            [(4001, "session revoked"), (4001, closes[1].reason), (4005, "moved")]
        await asyncio.sleep(max(0, 3 - (time.monotonic() - started)))
        reply, _ = await ask(ann, {"op": "rpc", "method": "meta", "id": 1})
        assert reply == {"op": "rpc", "id": 1, "data": {"v": 2}}  # the refresh's new meta
        return hello["sid"]

    sid = run(go())
    bodies = backend.bodies("refresh")
    ann = [b for b in bodies if b["user"] == "ann"]
    assert ann == [{"hook": "refresh", "node": "n1", "sid": sid, "user": "ann", "meta": {"v": 1}}]
    assert len([b for b in bodies if b["user"] == "cid"]) >= 1  # failed: retried until grace
    assert metric(node, "wsnode_closed_total", code="4001") == 2


# -------------------------------------------------------- malformed answers

BIG = "x" * 4096
# (what, rule, connect fails, publish fails); None: the contract does not say
CASES = [
    ("not json", {"raw": "not json"}, True, True),
    ("empty body", {"raw": ""}, True, True),
    ("truncated", {"raw": '{"result":'}, True, True),
    ("array", {"answer": [{"result": {}}]}, True, True),
    ("string", {"answer": "ok"}, True, True),
    ("none of the three", {"answer": {"ok": True}}, True, True),
    ("result a number", {"answer": {"result": 5}}, True, True),
    ("result an array", {"answer": {"result": []}}, True, True),
    ("user missing", {"answer": {"result": {}}}, True, False),
    ("user a number", {"answer": {"result": {"user": 7}}}, True, None),
    ("user with a space", {"answer": {"result": {"user": "a b"}}}, True, None),
    ("user too long", {"answer": {"result": {"user": "u" * 65}}}, True, None),
    ("expire_at a string", {"answer": {"result": {"user": "zed", "expire_at": "soon"}}}, True, None),
    ("channels a string", {"answer": {"result": {"user": "zed", "channels": "open:1"}}}, True, None),
    ("error code capitals", {"answer": {"error": {"code": "Forbidden"}}}, True, True),
    ("error code too long", {"answer": {"error": {"code": "x" * 33}}}, True, True),
    ("error a string", {"answer": {"error": "forbidden"}}, True, True),
    ("error msg a number", {"answer": {"error": {"code": "forbidden", "msg": 5}}}, True, True),
    ("disconnect code 1000", {"answer": {"disconnect": {"code": 1000}}}, True, True),
    ("disconnect on publish", {"answer": {"disconnect": {"code": 4003}}}, False, True),
    ("status 500", {"status": 500, "answer": {"result": {"user": "zed"}}}, True, True),
    ("status 404", {"status": 404, "answer": {"result": {"user": "zed"}}}, True, True),
    ("too large", {"answer": {"result": {"user": "zed", "meta": BIG, "data": BIG}}}, True, True),
    ("closed", {"close": True}, True, True),
]


def test_malformed_answers_fail_clearly_without_a_crash(make_node, backend):
    backend.rules(connect=ALLOW_BY_COOKIE)
    node = hooked(make_node, backend, ("connect", "subscribe", "publish", "rpc"),
                  {"forward_headers": ["Cookie"], "max_answer_bytes": 1024})
    cookie = {"Cookie": "session=zed"}

    async def go():
        ws, _ = await as_cookie(node, "alice")
        acked = 0
        for i, (what, rule, connect_fails, publish_fails) in enumerate(CASES, start=1):
            backend.rules(connect=rule, publish=rule)
            status, body = upgrade(node, "/ws", cookie)
            if connect_fails:
                assert status == 503 and body.startswith("hook failed: "), (what, status, body)
            else:
                assert status == 101, (what, status, body)
            reply, _ = await ask(ws, {"op": "pub", "ch": "chat:m", "data": i, "id": i})
            if publish_fails:
                assert reply["op"] == "err" and reply["code"] == "unavailable", (what, reply)
                assert reply["msg"].startswith("hook failed: "), (what, reply)
            elif publish_fails is False:
                assert reply["op"] == "ack", (what, reply)
            acked += reply["op"] == "ack"
        return acked

    acked = run(go())
    assert node.http("GET", "/healthz")[0] == 200
    assert node.http("GET", "/readyz")[0] == 200
    assert len(node.history("chat:m")[1]["pubs"]) == acked  # nothing of a failed one
    backend.rules(connect=ALLOW_BY_COOKIE, publish=None)
    assert upgrade(node, "/ws", cookie) == (101, "")
    calls = lambda result: metric(node, "wsnode_hook_calls_total", hook="connect", result=result)
    assert calls("too_large") == 1 and calls("status") == 2 and calls("malformed") >= 15
    assert metric(node, "wsnode_hook_calls_total", hook="publish", result="too_large") == 1


# ------------------------------------------------------------------- config

def test_config_refusals_exit_2_naming_the_key(make_node):
    url = "http://127.0.0.1:9/h"
    cases = {
        "publish_hook without publish_url":
            ({}, [{"name": "chat", "publish_hook": True}], ("publish_url", "publish_hook")),
        "subscribe_hook without subscribe_url":
            ({}, [{"name": "chat", "subscribe_hook": True}], ("subscribe_url", "subscribe_hook")),
        "https": ({"connect_url": "https://127.0.0.1:9/h"}, None, ("hooks.connect_url",)),
        "not a url": ({"publish_url": "127.0.0.1:9/h"}, None, ("hooks.publish_url",)),
        "events": ({"events_url": url}, None, ("hooks.events_url",)),
        "refresh without connect": ({"refresh_url": url}, None, ("hooks.refresh_url",)),
        "timeout": ({"timeout_ms": 5}, None, ("hooks.timeout_ms",)),
        "in flight": ({"max_in_flight": 0}, None, ("hooks.max_in_flight",)),
        "answer bytes": ({"max_answer_bytes": 63}, None, ("hooks.max_answer_bytes",)),
        "headers": ({"forward_headers": "Cookie"}, None, ("hooks.forward_headers",)),
        "unknown key": ({"conect_url": url}, None, ("hooks.conect_url",)),
    }
    for what, (hooks, namespace, needles) in cases.items():
        sections = {"hooks": hooks}
        if namespace:
            sections["namespace"] = namespace
        node = make_node(start=False, **sections)
        for extra in (["--check-config"], []):
            r = subprocess.run([WSNODE, "--config", node.config_path, *extra],
                               capture_output=True, text=True, timeout=20)
            assert r.returncode == 2, (what, r.returncode, r.stderr)
            assert any(n in r.stderr for n in needles), (what, r.stderr)
    # a public listener: the connect hook stands for [auth] secret, not for api.key
    port = free_port()
    public = {"http": {"listen": f"0.0.0.0:{port}"}, "hooks": {"connect_url": url}}
    node = make_node(start=False, api={"key": "k" * 32}, **public)
    r = subprocess.run([WSNODE, "--config", node.config_path, "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    node = make_node(start=False, **public)
    r = subprocess.run([WSNODE, "--config", node.config_path, "--check-config"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "api.key" in r.stderr, r.stderr


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


# ------------------------------------------------------------------ example

def test_the_example_backend_with_its_config(make_node, tmp_path):
    """examples/hooks_backend.py behind examples/hooks.toml (ports moved)."""
    with open(os.path.join(ROOT, "examples", "hooks.toml"), "rb") as f:
        conf = tomllib.load(f)
    port = free_port()
    hooks = {k: v.replace("127.0.0.1:9000", f"127.0.0.1:{port}") if k.endswith("_url") else v
             for k, v in conf["hooks"].items()}
    with open(tmp_path / "example-backend.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "hooks_backend.py"),
                                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: port_open(port), timeout=10)
        node = make_node(hooks=hooks, namespace=conf["namespace"], limits=LIMITS)
        assert upgrade(node) == (403, "not logged in\n")

        async def go():
            ann, hello = await as_cookie(node, "s-ann-7f3a")
            cid, _ = await as_cookie(node, "s-cid-04e2")
            assert hello["user"] == "ann"
            assert (await ask(ann, {"op": "sub", "ch": "chat:team", "id": 1}))[0]["op"] == "ack"
            reply, _ = await ask(cid, {"op": "sub", "ch": "chat:team", "id": 1})
            assert reply["op"] == "err" and reply["code"] == "forbidden", reply
            assert (await ask(cid, {"op": "sub", "ch": "danmaku:1", "id": 2}))[0]["op"] == "ack"
            reply, _ = await ask(ann, {"op": "pub", "ch": "danmaku:1", "id": 2,
                                       "data": {"text": "no Spoiler here", "color": "red"}})
            assert reply == {"op": "ack", "id": 2}
            assert (await recv(cid))["data"] == {"text": "no *** here", "color": "red"}
            reply, others = await ask(ann, {"op": "pub", "ch": "chat:team", "data": "hi", "id": 3})
            assert reply == {"op": "ack", "id": 3, "off": 1}
            reply, _ = await ask(ann, {"op": "rpc", "method": "recent", "id": 4,
                                       "data": {"ch": "chat:team"}})
            assert [(m["user"], m["data"]) for m in reply["data"]] == [("ann", "hi")], reply
            reply, _ = await ask(ann, {"op": "rpc", "method": "get_profile", "id": 5})
            assert reply == {"op": "rpc", "id": 5, "data": {"name": "Ann"}}
            reply, _ = await ask(ann, {"op": "rpc", "method": "nope", "id": 6})
            assert reply["op"] == "err" and reply["code"] == "not_found", reply
        run(go())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

"""Hooks (protocol v1.2, issue 29): connect, refresh, what a malformed
answer does, config refusals, and the example backend. The backend is a
real process, hook_backend.py, scripted per test (and, in the last test,
examples/hooks_backend.py behind examples/hooks.toml). Clients are Python's
websockets (not ours) and http.client for refused upgrades."""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest
import websockets

from harness import ROOT, WSNODE, connect_url, free_port, recv, run, wait_until
from hooks_kit import (ALLOW_BY_COOKIE, LIMITS, as_cookie, ask, close_of, hooked, lower, metric,
                       upgrade)


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
        "events without a secret": ({"events_url": url}, None, ("hooks.secret",)),
        "unknown event": ({"events_url": url, "secret": "s", "events": ["joined"]}, None,
                          ("hooks.events",)),
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
            # its webhook receiver: who is online, which channels are held,
            # and a push notification for a send to nobody
            reply, _ = await ask(ann, {"op": "send", "to": "bob", "data": "call me", "id": 7})
            assert reply == {"op": "ack", "id": 7}
            assert wait_until(lambda: example_state(port)["outbox"], timeout=10)
            state = example_state(port)
            assert state["online"] == {"ann": 1, "cid": 1}, state
            assert {"chat:team", "danmaku:1"} <= set(state["occupied"]), state
            assert state["outbox"] == [{"to": "bob", "from": "ann", "data": "call me"}], state
            reply, _ = await ask(cid, {"op": "rpc", "method": "online", "id": 8})
            assert reply == {"op": "rpc", "id": 8, "data": ["ann", "cid"]}, reply
            await cid.close()
            assert wait_until(lambda: example_state(port)["online"] == {"ann": 1}, timeout=10)
        run(go())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def example_state(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as r:
        return json.loads(r.read())


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False

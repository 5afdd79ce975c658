"""Identity from verified tokens, Origin allow-list, API key, connection limit."""
import asyncio
import json

import pytest
import websockets

from harness import call, connect, connect_url, make_token, recv, run

SECRET = "integration-secret-0123456789abcdef"
KEY = "api-key-for-tests"


@pytest.fixture
def secure(make_node):
    return make_node(auth={"secret": SECRET}, api={"key": KEY},
                     ws={"allowed_origins": ["https://app.example"]})


async def status_of(url, **kw):
    """The HTTP status of a refused upgrade (101 if it was accepted)."""
    try:
        ws = await websockets.connect(url, **kw)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


def test_valid_token_sets_the_user(secure):
    async def go():
        ws, hello = await connect_url(secure.ws_url(token=make_token("alice", SECRET)))
        assert hello["user"] == "alice"
        reply, _ = await call(ws, {"op": "ping", "id": 1})
        assert reply["op"] == "pong"
    run(go())


def test_bad_tokens_get_401_before_the_upgrade(secure):
    async def go():
        bad = {
            "expired": make_token("alice", SECRET, exp_in=-60),
            "forged": make_token("alice", "wrong-secret"),
            "alg none": make_token("alice", SECRET, alg="none"),
            "hs512": make_token("alice", SECRET, alg="HS512"),
            "malformed": "not.a.jwt",
            "garbage": "%00%ff",
            "bad sub": make_token("a b", SECRET),
        }
        for name, token in bad.items():
            assert await status_of(secure.ws_url(token=token)) == 401, name
        assert await status_of(secure.ws_url()) == 401  # missing token
        assert await status_of(secure.ws_url(user="alice")) == 401  # dev-mode ?user= refused
        assert await status_of(secure.ws_url(path="/websocket/alice")) == 401
        good = make_token("alice", SECRET)
        url = secure.ws_url(path=f"/ws?token={good}&user=bob")
        assert await status_of(url) == 401
    run(go())
    m = secure.metrics()
    assert m['wsnode_upgrades_rejected_total{reason="auth"}'] >= 10
    assert m["wsnode_connections"] == 0


def test_origin_allow_list(secure):
    async def go():
        url = secure.ws_url(token=make_token("alice", SECRET))
        assert await status_of(url, origin="https://evil.example") == 403
        assert await status_of(url, origin="https://app.example") == 101
        assert await status_of(url) == 101  # non-browser clients send no Origin
    run(go())


def test_api_key_is_required(secure):
    assert secure.publish("room:1", 1)[0] == 401
    assert secure.publish("room:1", 1, key="wrong")[0] == 401
    status, _, headers = secure.send("bob", 1)
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer"

    async def go():
        ws, _ = await connect_url(secure.ws_url(token=make_token("bob", SECRET)))
        await call(ws, {"op": "sub", "ch": "room:1", "id": 1})
        status, body, _ = secure.publish("room:1", "ok", key=KEY)
        assert status == 200 and json.loads(body) == {"ok": True}
        assert (await recv(ws))["data"] == "ok"
        assert secure.send("bob", "dm", key=KEY)[0] == 200
        assert await recv(ws) == {"op": "dm", "data": "dm"}
    run(go())


def test_connection_limit_answers_503(make_node):
    node = make_node(ws={"max_connections": 3})

    async def go():
        clients = [await connect(node, f"u{i}") for i in range(3)]
        assert await status_of(node.ws_url("u4")) == 503
        await clients[0][0].close()
        for _ in range(50):
            if node.metrics()["wsnode_connections"] < 3:
                break
            await asyncio.sleep(0.05)
        ws, _ = await connect(node, "u5")
        assert ws.open
    run(go())
    assert node.metrics()['wsnode_upgrades_rejected_total{reason="limit"}'] == 1

"""Who may do what (protocol v1.1): private channels with subscription
tokens or the `channels` claim, publish rules, token refresh and expiry
(4001), RS256/ES256 tokens made here with the openssl command, and the
refusal counters. Clients are Python's websockets (not ours)."""
import asyncio
import base64
import json
import os
import subprocess
import time

import pytest
import websockets

from harness import call, connect_url, make_token, recv, run, silent

SECRET = "policy-secret-0123456789abcdef"
NAMESPACES = [
    {"name": "private", "subscribe": "token", "publish": "subscribers", "presence": True},
    {"name": "news", "publish": "server"},
    {"name": "open"},
]


@pytest.fixture
def secure(make_node):
    return make_node(auth={"secret": SECRET, "expiry_grace_ms": 500}, namespace=NAMESPACES,
                     limits={"max_errors": 1000})


def token(user, exp_in=3600, **extra):
    return make_token(user, SECRET, exp_in=exp_in, extra=extra or None)


def refusals(node, reason):
    return node.metrics().get(f'wsnode_refusals_total{{reason="{reason}"}}', 0)


async def expect_err(ws, cmd, code="forbidden"):
    reply, _ = await call(ws, cmd)
    assert reply["op"] == "err" and reply["code"] == code, reply
    return reply


def test_private_channel_needs_a_grant(secure):
    async def go():
        alice, _ = await connect_url(secure.ws_url(token=token("alice")))
        ch = "private:alice-bob"
        await expect_err(alice, {"op": "sub", "ch": ch, "id": 1})
        bad = {
            "another user": token("bob", ch=ch),
            "another channel": token("alice", ch="private:other"),
            "expired": token("alice", exp_in=-60, ch=ch),
            "another key": make_token("alice", "not-the-secret", extra={"ch": ch}),
            "no exp": make_token("alice", SECRET, exp_in=None, extra={"ch": ch}),
            "garbage": "abc.def.ghi",
        }
        for i, (why, tok) in enumerate(bad.items(), start=2):
            reply = await expect_err(alice, {"op": "sub", "ch": ch, "token": tok, "id": i})
            assert reply["msg"], why
        # history and presence of a private channel need the same grant
        await expect_err(alice, {"op": "presence", "ch": ch, "id": 20})
        # a valid subscription token: ack, then messages flow
        reply, _ = await call(alice, {"op": "sub", "ch": ch, "token": token("alice", ch=ch),
                                      "id": 30})
        assert reply == {"op": "ack", "id": 30}
        # publish = "subscribers": the subscriber may, a non-subscriber may not
        reply, others = await call(alice, {"op": "pub", "ch": ch, "data": "hi", "id": 31})
        assert reply["op"] == "ack", reply
        msgs = [f for f in others if f["op"] == "msg"] or [await recv(alice)]
        assert msgs[0]["data"] == "hi" and msgs[0]["from"] == "alice"
        # the connection token's channels claim grants without a sub token
        carol, _ = await connect_url(secure.ws_url(token=token("carol", channels=[ch])))
        reply, _ = await call(carol, {"op": "sub", "ch": ch, "id": 1})
        assert reply == {"op": "ack", "id": 1}
        dave, _ = await connect_url(secure.ws_url(token=token("dave")))
        await expect_err(dave, {"op": "pub", "ch": ch, "data": "x", "id": 1})
        # the HTTP API may always publish
        assert secure.publish(ch, {"from": "api"})[0] == 200
        for ws in (alice, carol):
            m = await recv(ws)
            assert m["op"] == "msg" and m["data"] == {"from": "api"} and "from" not in m
        await silent(dave)
        # open namespaces stay open
        reply, _ = await call(dave, {"op": "sub", "ch": "open:1", "id": 2})
        assert reply["op"] == "ack"

    run(go())
    assert refusals(secure, "no_grant") == 2  # the sub and the presence without a grant
    assert refusals(secure, "bad_sub_token") == 6
    assert refusals(secure, "not_subscriber") == 1
    assert secure.metrics()['wsnode_errors_total{code="forbidden"}'] == 9


def test_publish_server_namespace(secure):
    async def go():
        ws, _ = await connect_url(secure.ws_url(token=token("alice")))
        reply, _ = await call(ws, {"op": "sub", "ch": "news:1", "id": 1})
        assert reply["op"] == "ack"
        reply = await expect_err(ws, {"op": "pub", "ch": "news:1", "data": 1, "id": 2})
        assert "clients may not publish" in reply["msg"]
        assert secure.publish("news:1", "headline")[0] == 200
        m = await recv(ws)
        assert m["op"] == "msg" and m["data"] == "headline"

    run(go())
    assert refusals(secure, "publish_server") == 1


def test_refresh_keeps_a_connection_past_its_exp(secure):
    async def go():
        kept, _ = await connect_url(secure.ws_url(token=token("alice", exp_in=2)))
        lapsed, _ = await connect_url(secure.ws_url(token=token("bob", exp_in=2)))
        wrong, _ = await connect_url(secure.ws_url(token=token("carol", exp_in=2)))
        fresh = token("alice", exp_in=3600)
        reply, _ = await call(kept, {"op": "refresh", "token": fresh, "id": 1})
        exp = json.loads(base64.urlsafe_b64decode(fresh.split(".")[1] + "=="))["exp"]
        assert reply == {"op": "ack", "id": 1, "exp": exp}
        # a token of another user: err, and the old expiry stays
        reply = await expect_err(wrong, {"op": "refresh", "token": token("alice"), "id": 1})
        assert "another user" in reply["msg"]
        started = time.monotonic()
        for ws in (lapsed, wrong):
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await recv(ws, timeout=8)
            assert info.value.rcvd.code == 4001, info.value
        waited = time.monotonic() - started
        assert waited >= 1.0, waited  # exp (2 s, whole seconds) + grace 0.5 s
        # the refreshed one is still open and answers
        reply, _ = await call(kept, {"op": "ping", "id": 2})
        assert reply["op"] == "pong"
        # a refresh with a bad token closes with 4001 at once
        with pytest.raises(websockets.ConnectionClosed) as info:
            await kept.send(json.dumps({"op": "refresh", "token": "a.b.c", "id": 3}))
            while True:
                await recv(kept, timeout=5)
        assert info.value.rcvd.code == 4001

    run(go())
    assert refusals(secure, "token_expired") == 2
    assert refusals(secure, "refresh_other_user") == 1
    assert refusals(secure, "refresh_bad_token") == 1
    assert secure.metrics()['wsnode_closed_total{code="4001"}'] == 3


def test_wsnode_token_makes_connection_and_subscription_tokens(secure):
    from harness import WSNODE

    def made(*args):
        r = subprocess.run([WSNODE, "token", "--config", secure.config_path, *args],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    async def go():
        ws, hello = await connect_url(secure.ws_url(token=made("--user", "erin", "--ttl", "60")))
        assert hello["user"] == "erin"
        sub_tok = made("--user", "erin", "--channel", "private:9")
        reply, _ = await call(ws, {"op": "sub", "ch": "private:9", "token": sub_tok, "id": 1})
        assert reply == {"op": "ack", "id": 1}
        granted = made("--user", "fay", "--channels", "private:1", "private:2")
        fay, _ = await connect_url(secure.ws_url(token=granted))
        for i, ch in enumerate(("private:1", "private:2"), start=1):
            reply, _ = await call(fay, {"op": "sub", "ch": ch, "id": i})
            assert reply["op"] == "ack", reply

    run(go())


def test_refresh_in_dev_mode_is_a_bad_request(node):
    async def go():
        ws, _ = await connect_url(node.ws_url("alice"))
        await expect_err(ws, {"op": "refresh", "token": "a.b.c", "id": 1}, code="bad_request")
        await expect_err(ws, {"op": "refresh", "id": 2}, code="bad_request")
    run(go())


# ------------------------------------------------------------------ RS256 / ES256


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def der_to_raw(der):
    """An ECDSA DER signature (SEQUENCE of two INTEGERs) as JWS's r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def pk_token(alg, key_file, claims):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing = (header + "." + b64url(json.dumps(claims).encode())).encode()
    sig = openssl("dgst", "-sha256", "-sign", key_file, data=signing)
    if alg == "ES256":
        sig = der_to_raw(sig)
    return signing.decode() + "." + b64url(sig)


@pytest.fixture
def keys(tmp_path):
    rsa, ec, other = (str(tmp_path / n) for n in ("rsa.pem", "ec.pem", "other.pem"))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", other)
    pub = tmp_path / "public.pem"
    pub.write_bytes(openssl("pkey", "-in", rsa, "-pubout") + openssl("pkey", "-in", ec, "-pubout"))
    return {"rsa": rsa, "ec": ec, "other": other, "public": str(pub)}


async def status_of(url):
    try:
        ws = await websockets.connect(url)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


def test_rs256_and_es256_tokens(make_node, keys):
    node = make_node(auth={"public_key_file": keys["public"], "issuer": "auth.example",
                           "audience": "wsnode"}, namespace=NAMESPACES)
    now = int(time.time())

    def claims(**kw):
        c = {"sub": "alice", "exp": now + 3600, "iss": "auth.example", "aud": "wsnode"}
        c.update(kw)
        return {k: v for k, v in c.items() if v is not None}

    good_rs = pk_token("RS256", keys["rsa"], claims())
    good_es = pk_token("ES256", keys["ec"], claims(aud=["x", "wsnode"]))
    # the RS256 signature under an ES256 header: wrong algorithm for the key
    swapped = b64url(json.dumps({"alg": "ES256"}).encode()) + good_rs[good_rs.index("."):]
    bad = {
        "expired": pk_token("RS256", keys["rsa"], claims(exp=now - 60)),
        "not yet valid": pk_token("ES256", keys["ec"], claims(nbf=now + 600)),
        "wrong issuer": pk_token("RS256", keys["rsa"], claims(iss="evil")),
        "no issuer": pk_token("RS256", keys["rsa"], claims(iss=None)),
        "wrong audience": pk_token("ES256", keys["ec"], claims(aud="other")),
        "unknown key": pk_token("ES256", keys["other"], claims()),
        "wrong algorithm for the key": swapped,
        "alg none": b64url(b'{"alg":"none"}') + "." + b64url(json.dumps(claims()).encode()) + ".",
        "HS256 without a secret": make_token("alice", "x", extra={"iss": "auth.example",
                                                                  "aud": "wsnode"}),
    }

    async def go():
        for tok in (good_rs, good_es):
            ws, hello = await connect_url(node.ws_url(token=tok))
            assert hello["user"] == "alice"
            # a subscription token signed with the same keys
            sub_tok = pk_token("ES256", keys["ec"], claims(ch="private:a"))
            reply, _ = await call(ws, {"op": "sub", "ch": "private:a", "token": sub_tok, "id": 1})
            assert reply["op"] == "ack", reply
            await ws.close()
        for why, tok in bad.items():
            assert await status_of(node.ws_url(token=tok)) == 401, why

    run(go())
    assert node.metrics()['wsnode_upgrades_rejected_total{reason="auth"}'] == len(bad)


def test_bad_public_key_file_is_refused_at_start(make_node, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    for value in (str(bad), str(tmp_path / "missing.pem")):
        node = make_node(start=False, auth={"public_key_file": value})
        r = subprocess.run([os.environ.get("WSNODE_BIN", node_bin()), "--config", node.config_path,
                            "--check-config"], capture_output=True, text=True)
        assert r.returncode == 2, r
        assert "auth.public_key_file" in r.stderr, r.stderr


def node_bin():
    from harness import WSNODE
    return WSNODE

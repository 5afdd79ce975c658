"""SIGHUP reloads what can change under live connections (issue 32):
token keys with a grace period for the old ones, the API key, namespace
policy; a refused file changes nothing; a restart-only key is named."""
import asyncio
import json
import signal
import time

import pytest
import websockets

from harness import call, connect_url, make_token, recv, run, wait_until

OLD = "reload-old-secret-0123456789abcdefgh"
NEW = "reload-new-secret-0123456789abcdefgh"
GRACE_MS = 4000
SESSIONS = 1000


async def status_of(url):
    """The HTTP status of an upgrade (101 when it was accepted)."""
    try:
        ws = await websockets.connect(url, close_timeout=1)
    except websockets.InvalidStatusCode as e:
        return e.status_code
    await ws.close()
    return 101


def reloads(node, result):
    return node.metrics().get(f'wsnode_config_reloads_total{{result="{result}"}}', 0)


def hangup(node, result, before):
    """Sends SIGHUP and waits until the reload is counted under `result`."""
    node.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: reloads(node, result) == before + 1, timeout=10), node.log_text()


@pytest.fixture
def secured(make_node):
    return make_node(auth={"secret": OLD, "key_grace_ms": GRACE_MS}, api={"key": "k1"},
                     namespace=[{"name": "room"}, {"name": "news", "publish": "anyone"}])


def test_key_rotation_under_1000_sessions(secured):
    node = secured

    async def go():
        async def one(i):
            ws, _ = await connect_url(node.ws_url(token=make_token(f"u{i}", OLD)),
                                      open_timeout=30)
            reply, _ = await call(ws, {"op": "sub", "ch": "room:1", "id": 1}, timeout=30)
            assert reply["op"] == "ack", reply
            return ws
        sessions = []
        for start in range(0, SESSIONS, 100):  # bounded: 10 waves of 100
            sessions += await asyncio.gather(*(one(i) for i in range(start, start + 100)))
        assert node.metrics()["wsnode_connections"] == SESSIONS
        closed_before = sum(v for k, v in node.metrics().items()
                            if k.startswith("wsnode_closed_total"))

        node.rewrite_config(auth={"secret": NEW}, api={"key": "k2"},
                            namespace=[{"name": "room"}, {"name": "news", "publish": "server"}])
        hangup(node, "ok", 0)
        rotated = time.monotonic()
        assert "reload: applied" in node.log_text()

        # new keys connect; old ones too, during the grace
        ws, hello = await connect_url(node.ws_url(token=make_token("fresh", NEW)))
        assert hello["user"] == "fresh"
        ws_old, _ = await connect_url(node.ws_url(token=make_token("late", OLD)))
        assert time.monotonic() - rotated < GRACE_MS / 1000, "the old-key check came too late"
        # the API key changed
        assert node.publish("room:1", "after", key="k1")[0] == 401
        assert node.publish("room:1", "after", key="k2")[0] == 200
        # no session was dropped: every one gets the message
        frames = await asyncio.gather(*(recv(s, timeout=30) for s in sessions))
        assert all(f["op"] == "msg" and f["data"] == "after" for f in frames)
        assert node.metrics()["wsnode_connections"] == SESSIONS + 2
        closed_after = sum(v for k, v in node.metrics().items()
                           if k.startswith("wsnode_closed_total"))
        assert closed_after == closed_before
        # an open session applies the new namespace policy at its next message
        reply, _ = await call(sessions[0], {"op": "pub", "ch": "news:1", "data": 1, "id": 2})
        assert reply["op"] == "err" and reply["code"] == "forbidden", reply

        # after the grace: old keys refused, new ones accepted
        await asyncio.sleep(max(0.0, GRACE_MS / 1000 - (time.monotonic() - rotated)) + 0.3)
        assert await status_of(node.ws_url(token=make_token("later", OLD))) == 401
        assert await status_of(node.ws_url(token=make_token("later", NEW))) == 101

        # a file the reader refuses changes nothing
        with open(node.config_path) as f:
            good = f.read()
        node.rewrite_config(text=good + "\n[limits]\nburst = 0\n")
        hangup(node, "error", 0)
        assert "reload refused" in node.log_text() and "limits.burst" in node.log_text()
        assert node.publish("room:1", "still", key="k2")[0] == 200
        assert await status_of(node.ws_url(token=make_token("later", NEW))) == 101
        frames = await asyncio.gather(*(recv(s, timeout=30) for s in sessions[:10]))
        assert all(f["data"] == "still" for f in frames)

        # a restart-only key is named and ignored; the rest applies
        node.rewrite_config(text=good.replace('key = "k2"', 'key = "k3"') +
                            "\n[ws]\ncompression = true\n")
        hangup(node, "restart_needed", 0)
        log = node.log_text()
        assert "ws.compression changed" in log and "needs a restart" in log, log[-2000:]
        assert node.publish("room:1", "k3", key="k3")[0] == 200
        assert node.metrics()["wsnode_connections"] == SESSIONS + 2
    run(go(), timeout=240)


def test_reload_without_changes_and_the_log_level(make_node):
    node = make_node(log={"level": "info"})
    hangup(node, "ok", 0)
    assert "reload: nothing to apply" in node.log_text()
    node.rewrite_config(log={"level": "debug"})
    hangup(node, "ok", 1)
    assert "reload: applied log.level" in node.log_text()

    async def go():  # debug lines appear now (a session's open is logged at debug)
        ws, _ = await connect_url(node.ws_url(user="alice"))
        reply, _ = await call(ws, {"op": "ping", "id": 1})
        assert reply["op"] == "pong"
    run(go())
    assert wait_until(lambda: "debug" in node.log_text().split("reload: applied log.level")[1])


def test_reload_turns_merged_frames_on_and_caps_a_channel(make_node):
    node = make_node(namespace=[{"name": "live", "merge_ms": 0}])

    async def go():
        ws, _ = await connect_url(node.ws_url("viewer") + "&batch=1")
        reply, _ = await call(ws, {"op": "sub", "ch": "live:1", "id": 1})
        assert reply["op"] == "ack"
        for i in range(3):
            assert node.publish("live:1", i)[0] == 200
        frames = [await recv(ws) for _ in range(3)]
        assert [f["data"] for f in frames] == [0, 1, 2]  # one frame each

        node.rewrite_config(namespace=[{"name": "live", "merge_ms": 300, "merge_max": 50,
                                        "max_subscribers": 1}])
        hangup(node, "ok", 0)
        assert "namespace.live.merge_ms" in node.log_text()
        for i in range(3, 6):
            assert node.publish("live:1", i)[0] == 200
        raw = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(raw, list) and [m["data"] for m in raw] == [3, 4, 5], raw
        # max_subscribers = 1: the channel is full for a second session
        ws2, _ = await connect_url(node.ws_url("other"))
        reply, _ = await call(ws2, {"op": "sub", "ch": "live:1", "id": 1})
        assert reply["op"] == "err", reply
    run(go())

"""What the hooks tests share (test_hooks.py, test_hooks_commands.py): a node
whose [hooks] point at the scripted backend (the `backend` fixture, in
conftest.py), and small client helpers."""
import base64
import http.client
import json
import os
import time

import pytest
import websockets

from harness import connect_url, recv

SECRET = "hooks-secret-0123456789abcdef"
NAMESPACES = [
    {"name": "chat", "history_size": 100, "subscribe_hook": True, "publish_hook": True},
    {"name": "danmaku", "publish_hook": True},
    {"name": "open"},
]
LIMITS = {"max_errors": 1000, "messages_per_second": 0}
ALLOW_BY_COOKIE = {"answer": {"result": {"user": "${cookie.session}"}}}


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



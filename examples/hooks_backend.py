#!/usr/bin/env python3
"""An example application backend for wsnode's hooks (protocol v1.2).

wsnode asks it, over HTTP, who a connecting client is, who may join a chat
room, what a published message becomes, and answers RPCs. Python 3 standard
library only (Debian's python3 is enough).

Run it beside a node:

    python3 examples/hooks_backend.py --port 9000 &
    ./build/wsnode --config examples/hooks.toml

examples/hooks.toml is the matching node config: [hooks] urls pointing at
http://127.0.0.1:9000/ws/<hook>, forward_headers = ["Cookie"], namespaces
"danmaku" (publish_hook) and "chat" (subscribe_hook, publish_hook, history).

Log in (the cookie is per host, so the page on :8080 sends it too), then
open the demo:

    http://127.0.0.1:9000/login?user=ann      then   http://127.0.0.1:8080/

What it decides:
- connect: the `session` cookie names a user (SESSIONS); none or unknown ->
  refused (HTTP 403 "not logged in"). Sessions last an hour (expire_at) and
  carry meta {"name": ...}; refresh extends them by another hour.
- subscribe: chat:ROOM only for the room's MEMBERS.
- publish: danmaku: BANNED words become "***"; chat: kept here (the last
  1,000 messages) and allowed as sent.
- rpc: get_profile -> {"name": ...}; recent {"ch": "chat:ROOM"} -> the room's
  stored messages; online -> who is online, as the webhooks told; any other
  method -> err not_found.

Webhooks (POST /ws/events, [hooks] events_url): every batch's
X-Wsnode-Signature is checked (HMAC-SHA256 of the body with the secret;
401 otherwise) and repeats are dropped by event id (delivery is at least
once). connect/disconnect keep who is online, occupied/vacated which
channels have subscribers, and undelivered queues a push notification
(here: a list; GET /state shows all three).

The secret is WSNODE_HOOK_SECRET, default "example-secret" as in
examples/hooks.toml: calls without that X-Wsnode-Secret get 403 (wsnode
then answers its client `unavailable`).
"""
import argparse
import collections
import hashlib
import hmac
import json
import os
import re
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSIONS = {"s-ann-7f3a": "ann", "s-bob-91cc": "bob", "s-cid-04e2": "cid"}  # cookie -> user
NAMES = {"ann": "Ann", "bob": "Bob", "cid": "Cid"}
MEMBERS = {"chat:lobby": {"ann", "bob", "cid"}, "chat:team": {"ann", "bob"}}
BANNED = re.compile(r"spoiler", re.IGNORECASE)
SECRET = os.environ.get("WSNODE_HOOK_SECRET", "example-secret")
TTL = 3600

messages = collections.deque(maxlen=1000)  # chat messages, oldest first
lock = threading.Lock()  # the server runs a thread per connection
# what the webhooks told
online = collections.Counter()  # user -> sessions
occupied = set()  # channels with subscribers somewhere
outbox = collections.deque(maxlen=1000)  # push notifications for undelivered sends
seen = collections.OrderedDict()  # the last event ids, to drop repeats


def error(code, msg):
    return {"error": {"code": code, "msg": msg}}


def on_connect(call):
    cookie = SimpleCookie()
    try:
        cookie.load(call["headers"].get("Cookie", ""))
    except CookieError:
        pass
    user = SESSIONS.get(cookie["session"].value) if "session" in cookie else None
    if user is None:
        return error("forbidden", "not logged in")
    return {"result": {"user": user, "expire_at": int(time.time()) + TTL,
                       "meta": {"name": NAMES[user]}}}


def on_refresh(call):
    return {"result": {"expire_at": int(time.time()) + TTL}}


def on_subscribe(call):
    ch = call["ch"]
    if ch.startswith("chat:") and call["user"] not in MEMBERS.get(ch, ()):
        return error("forbidden", "not a member of " + ch)
    return {"result": {}}


def on_publish(call):
    ch, data = call["ch"], call["data"]
    if ch.startswith("danmaku:"):
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            return {"result": {"data": {**data, "text": BANNED.sub("***", data["text"])}}}
        if isinstance(data, str):
            return {"result": {"data": BANNED.sub("***", data)}}
        return {"result": {}}
    if ch.startswith("chat:"):
        with lock:
            messages.append({"ch": ch, "user": call["user"], "data": data,
                             "time": int(time.time())})
    return {"result": {}}


def on_rpc(call):
    method, data = call["method"], call["data"]
    if method == "get_profile":
        return {"result": {"data": {"name": (call["meta"] or {}).get("name", call["user"])}}}
    if method == "online":
        with lock:
            return {"result": {"data": sorted(u for u, n in online.items() if n > 0)}}
    if method == "recent":
        ch = data.get("ch") if isinstance(data, dict) else None
        if call["user"] not in MEMBERS.get(ch, ()):
            return error("forbidden", "not a member")
        with lock:
            return {"result": {"data": [m for m in messages if m["ch"] == ch]}}
    return error("not_found", "no method " + method)


def on_events(batch):
    """One webhook batch, signature already checked."""
    with lock:
        for e in batch["events"]:
            if e["id"] in seen:
                continue  # a retry of a batch that reached us before
            seen[e["id"]] = True
            if len(seen) > 10000:
                seen.popitem(last=False)
            kind = e["type"]
            if kind == "connect":
                online[e["user"]] += 1
            elif kind == "disconnect":
                online[e["user"]] -= 1
                if online[e["user"]] <= 0:
                    del online[e["user"]]
            elif kind == "occupied":
                occupied.add(e["ch"])
            elif kind == "vacated":
                occupied.discard(e["ch"])
            elif kind == "undelivered":  # a real backend would send a push notification
                outbox.append({"to": e["to"], "from": e.get("from"), "data": e["data"]})


HOOKS = {"connect": on_connect, "refresh": on_refresh, "subscribe": on_subscribe,
         "publish": on_publish, "rpc": on_rpc}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: wsnode reuses its connections
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between headers and body

    def answer(self, status, body, headers=()):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/ws/events":
            want = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(self.headers.get("X-Wsnode-Signature", ""), want):
                return self.answer(401, {"error": "bad signature"})
            on_events(json.loads(raw))
            return self.answer(200, {})
        call = json.loads(raw)
        if SECRET and not hmac.compare_digest(self.headers.get("X-Wsnode-Secret", ""), SECRET):
            return self.answer(403, {"error": "bad secret"})
        hook = HOOKS.get(call.get("hook"))
        if hook is None:
            return self.answer(404, {"error": "unknown hook"})
        self.answer(200, hook(call))

    def do_GET(self):  # /login?user=ann: sets the session cookie (a stand-in for a login page)
        if self.path == "/state":  # what the webhooks told
            with lock:
                return self.answer(200, {"online": dict(online), "occupied": sorted(occupied),
                                         "outbox": list(outbox)})
        user = self.path.partition("user=")[2]
        cookie = next((c for c, u in SESSIONS.items() if u == user), None)
        if not self.path.startswith("/login?") or cookie is None:
            return self.answer(404, {"users": sorted(NAMES)})
        self.answer(200, {"logged_in": user},
                    [("Set-Cookie", f"session={cookie}; Path=/; HttpOnly; SameSite=Lax")])


def main():
    ap = argparse.ArgumentParser(description="wsnode hooks example backend")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    args = ap.parse_args()
    print(f"hooks backend on http://{args.host}:{args.port}/ws/<hook>", flush=True)
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()

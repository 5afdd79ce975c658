"""Helpers for integration tests: start/stop wsnode, talk to it.

Clients: Python's `websockets` (Debian's python3-websockets, a client we did
not write) for most tests, and rawws.RawClient (our own, byte-level) where a
test needs control the library hides (stop reading, invalid UTF-8).
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import websockets

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WSNODE = os.environ.get("WSNODE_BIN", os.path.join(ROOT, "build", "wsnode"))
# ASan's shadow memory and quarantine inflate RSS: memory bounds allow for it.
SANITIZED = os.environ.get("WSNODE_SANITIZED") == "1"


_given = set()  # ports handed out in this test run: never twice


# What a sanitizer build writes to a node's log when it finds something.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def free_port():
    """A free port below the kernel's ephemeral range (32768+ on Linux), so
    that outgoing connections (mesh reconnects, clients) cannot take it
    between this check and the server's bind; never one handed out before
    in this run (a node may bind its port only later)."""
    for _ in range(1000):
        port = random.randrange(20000, 32000)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _given.add(port)
            return port
    raise RuntimeError("no free port in 20000-32000")


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_text(sections):
    """TOML for {section: {key: value}}; a list of dicts is an array of
    tables ([[namespace]])."""
    out = []
    for name, keys in sections.items():
        if isinstance(keys, list):
            for table in keys:
                out.append(f"[[{name}]]")
                out.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
                out.append("")
            continue
        out.append(f"[{name}]")
        for k, v in keys.items():
            out.append(f"{k} = {toml_value(v)}")
        out.append("")
    return "\n".join(out)


class Node:
    """A wsnode process with its own config and log under `workdir`."""

    def __init__(self, workdir, sections):
        os.makedirs(workdir, exist_ok=True)
        self.workdir = str(workdir)
        self.port = free_port()
        cfg = {"node": {"id": "n1"}, "http": {"listen": f"127.0.0.1:{self.port}"}}
        for name, keys in sections.items():
            if isinstance(keys, list):
                cfg[name] = keys
            else:
                cfg.setdefault(name, {}).update(keys)
        cfg["http"].setdefault("static_dir", os.path.join(ROOT, "web"))
        self.id = cfg["node"]["id"]
        self.config = cfg  # as rendered (conftest may have added [backbone]/[nats])
        self.config_path = os.path.join(self.workdir, "config.toml")
        with open(self.config_path, "w") as f:
            f.write(toml_text(cfg))
        self.log_path = os.path.join(self.workdir, "wsnode.log")
        self.proc = None
        self.expect_nonzero_exit = False  # set by tests that kill -9 on purpose

    def rewrite_config(self, text=None, **sections):
        """Rewrites the config file (for a reload): `sections` merged into
        the current config ({section: {key: value}}; a list replaces an
        array of tables), or `text` as it is."""
        if text is None:
            for name, keys in sections.items():
                if isinstance(keys, list):
                    self.config[name] = keys
                else:
                    self.config.setdefault(name, {}).update(keys)
            text = toml_text(self.config)
        with open(self.config_path, "w") as f:
            f.write(text)

    # -------------------------------------------------------------- process
    def start(self, timeout=15):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([WSNODE, "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"wsnode exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if self.http("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"wsnode did not come up:\n{self.log_text()}")

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Sends `sig` and waits; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    # -------------------------------------------------------------- http
    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def http(self, method, path, body=None, headers=None, timeout=10):
        """Returns (status, body bytes, headers)."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def publish(self, ch, data, key=None, idem=None, timeout=10):
        """POST /api/publish; `key` is the API key, `idem` the idempotency key."""
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = {"ch": ch, "data": data}
        if idem is not None:
            body["key"] = idem
        return self.http("POST", "/api/publish", json.dumps(body), headers, timeout=timeout)

    def history(self, ch, limit=None, since=None):
        """POST /api/history; returns (status, parsed body)."""
        body = {"ch": ch}
        if limit is not None:
            body["limit"] = limit
        if since is not None:
            body["since"] = since
        status, raw, _ = self.http("POST", "/api/history", json.dumps(body),
                                   {"Content-Type": "application/json"})
        return status, json.loads(raw)

    def send(self, to, data, key=None):
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return self.http("POST", "/api/send", json.dumps({"to": to, "data": data}), headers)

    def metrics(self):
        """Parses /metrics into {"name{labels}": value}."""
        status, body, _ = self.http("GET", "/metrics")
        assert status == 200
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def ws_url(self, user=None, path=None, token=None):
        if path is None:
            path = "/ws"
            if token is not None:
                path += f"?token={token}"
            elif user is not None:
                path += f"?user={user}"
        return f"ws://127.0.0.1:{self.port}{path}"


# ------------------------------------------------------------------ clients

_open_clients = []


def run(coro, timeout=120):
    """Runs a test coroutine (bounded in time), then closes every client it
    opened, so that no test waits on the library's close timeouts."""
    async def main():
        try:
            return await asyncio.wait_for(coro, timeout)
        finally:
            clients = list(_open_clients)
            _open_clients.clear()
            for ws in clients:
                ws.close_timeout = 1
            await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    return asyncio.run(main())


async def connect_url(url, **kwargs):
    """Opens a session at `url`; returns (ws, hello)."""
    kwargs.setdefault("close_timeout", 2)
    ws = await websockets.connect(url, **kwargs)
    _open_clients.append(ws)
    hello = await recv(ws)
    assert hello["op"] == "hello", hello
    return ws, hello


async def connect(node, user, **kwargs):
    """Opens a session as `user` (dev mode); returns (ws, hello)."""
    return await connect_url(node.ws_url(user), **kwargs)


PRESENCE_EVENTS = ("join", "leave")


async def recv(ws, timeout=5, events=False):
    """The next frame; presence events (join/leave: the deploy/ templates
    give rooms join_leave) are skipped unless `events`."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.001, deadline - time.monotonic())))
        if events or frame.get("op") not in PRESENCE_EVENTS:
            return frame


async def silent(ws, seconds=0.3, events=False):
    """Asserts that nothing arrives for `seconds` (presence events aside
    unless `events`)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            msg = await asyncio.wait_for(ws.recv(), left)
        except asyncio.TimeoutError:
            return
        if events or json.loads(msg).get("op") not in PRESENCE_EVENTS:
            raise AssertionError(f"unexpected frame: {msg}")


async def call(ws, cmd, timeout=5):
    """Sends `cmd` (with an id) and returns (reply, other frames seen meanwhile)."""
    await ws.send(json.dumps(cmd))
    others = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no reply to {cmd}; saw {others}")
        frame = await recv(ws, left)
        if frame.get("id") == cmd.get("id") and frame["op"] in ("ack", "err", "pong"):
            return frame, others
        others.append(frame)


async def sub(ws, ch, id=1):
    """Subscribes; the ack is v1's, or v1.1's with the channel's position
    (`ep`, `off`) in a namespace with history (the deploy/ templates give
    `room` history)."""
    reply, others = await call(ws, {"op": "sub", "ch": ch, "id": id})
    position = {k: reply[k] for k in ("ep", "off") if k in reply}
    assert reply == {"op": "ack", "id": id, **position}, reply
    assert len(position) in (0, 2), reply
    return others


def wait_until(pred, timeout=10, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


# ------------------------------------------------------------------ tokens

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(sub, secret, exp_in=3600, alg="HS256", extra=None):
    """An HS256 JWT made with Python's hmac (independent of the server's library)."""
    header = {"alg": alg, "typ": "JWT"}
    payload = {"sub": sub}
    if exp_in is not None:  # None: a token without exp
        payload["exp"] = int(time.time()) + exp_in
    payload.update(extra or {})
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    if alg == "none":
        return signing + "."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret.encode(), signing.encode(), digest).digest()
    return signing + "." + b64url(sig)

"""A scriptable HTTP backend for wsnode's hooks (integration tests).

A process (`python3 hook_backend.py --port P`) that tests drive through the
Backend class below (test_hooks.py's fixture stops it by PID whatever happens).

    POST /_control {"rules": {HOOK: RULE or [RULE, ...] or null}, "reset": true}
        sets (null: removes) the rules of the hooks named; "reset" clears the stats.
    GET /_stats -> {"calls": {HOOK: n}, "requests": [last 200], "in_flight": n,
                    "max_concurrent": n, "connections": n}

Any other POST is a hook call; its hook is the body's "hook" (else the
path's last segment). The first RULE of the hook whose "match" holds answers
(no rule: {"result":{}}):
    match    {PATH: VALUE}: every PATH resolves to VALUE (a string VALUE ending
             in "*" is a prefix; null: PATH absent)
    delay_ms wait before answering
    status   HTTP status (200)
    answer   JSON answer; strings "${PATH}" in it are replaced by what PATH
             resolves to (the JSON value when the string is just "${PATH}",
             its text when inside a longer string)
    raw      the answer body as it is (text), instead of answer
    close    true: close the connection without an answer
PATH: req.F.G (the request body's fields), cookie.NAME (from the forwarded
Cookie header), header.NAME (HTTP request headers), now, now+N, now-N (unix s).
"""
import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ABSENT = object()
_REF = re.compile(r"\$\{([^}]+)\}")


class State:
    """Rules and stats, shared by the handler threads under `lock`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules, self.in_flight = {}, 0
        self.reset()

    def reset(self):
        self.calls, self.requests = collections.Counter(), collections.deque(maxlen=200)
        self.max_concurrent, self.connections = self.in_flight, 0


STATE = State()


def resolve(path, req, headers):
    head, _, rest = path.partition(".")
    if head.startswith("now"):
        return int(time.time()) + int(head[3:] or 0)
    if head == "req":
        value = req
        for key in rest.split(".") if rest else []:
            if not isinstance(value, dict) or key not in value:
                return _ABSENT
            value = value[key]
        return value
    if head == "header":
        return headers.get(rest, _ABSENT)
    if head == "cookie":
        forwarded = (req.get("headers") or {}) if isinstance(req, dict) else {}
        cookie = next((v for k, v in forwarded.items() if k.lower() == "cookie"), "")
        for part in cookie.split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name == rest:
                return value
        return _ABSENT
    raise ValueError(f"unknown path {path}")


def text(value):
    return "" if value is _ABSENT else value if isinstance(value, str) else json.dumps(value)


def fill(value, req, headers):
    if isinstance(value, dict):
        return {k: fill(v, req, headers) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, req, headers) for v in value]
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            got = resolve(whole.group(1), req, headers)
            return None if got is _ABSENT else got
        return _REF.sub(lambda m: text(resolve(m.group(1), req, headers)), value)
    return value


def matches(rule, req, headers):
    for path, want in (rule.get("match") or {}).items():
        got = resolve(path, req, headers)
        if want is None:
            ok = got is _ABSENT
        elif isinstance(want, str) and want.endswith("*"):
            ok = isinstance(got, str) and got.startswith(want[:-1])
        else:
            ok = got is not _ABSENT and got == want
        if not ok:
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    counted = False

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # /_stats
        with STATE.lock:
            stats = {"calls": dict(STATE.calls), "requests": list(STATE.requests),
                     "in_flight": STATE.in_flight, "max_concurrent": STATE.max_concurrent,
                     "connections": STATE.connections}
        self.reply(200, json.dumps(stats).encode())

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/_control":
            order = json.loads(raw)
            with STATE.lock:
                if order.get("reset"):
                    STATE.reset()
                for hook, rule in (order.get("rules") or {}).items():
                    if rule is None:
                        STATE.rules.pop(hook, None)
                    else:
                        STATE.rules[hook] = rule if isinstance(rule, list) else [rule]
            return self.reply(200, b"{}")
        try:
            req = json.loads(raw)
        except ValueError:
            req = raw.decode("utf-8", "replace")
        hook = req.get("hook") if isinstance(req, dict) else None
        hook = hook if isinstance(hook, str) else self.path.rstrip("/").rsplit("/", 1)[-1]
        headers = dict(self.headers.items())
        with STATE.lock:
            if not self.counted:
                self.counted = True
                STATE.connections += 1
            STATE.calls[hook] += 1
            STATE.requests.append({"hook": hook, "path": self.path, "body": req,
                                   "raw": raw.decode("utf-8", "replace"), "headers": headers,
                                   "t": time.time()})
            STATE.in_flight += 1
            STATE.max_concurrent = max(STATE.max_concurrent, STATE.in_flight)
            rules = list(STATE.rules.get(hook) or [])
        try:
            rule = next((r for r in rules if matches(r, req, headers)), {})
            time.sleep(rule.get("delay_ms", 0) / 1000)
            if rule.get("close"):
                self.close_connection = True
                return
            answer = fill(rule.get("answer", {"result": {}}), req, headers)
            body = rule["raw"].encode() if "raw" in rule else json.dumps(answer).encode()
            self.reply(rule.get("status", 200), body)
        finally:
            with STATE.lock:
                STATE.in_flight -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


# ------------------------------------------------------------ for the tests

class Backend:
    """The backend as a process on a free loopback port (or `port`)."""

    def __init__(self, workdir, port=None):
        from harness import free_port
        self.port = port or free_port()
        self.log_path = os.path.join(str(workdir), f"hook-backend-{self.port}.log")
        self.proc = None

    def url(self, hook):
        return f"http://127.0.0.1:{self.port}/hooks/{hook}"

    def start(self, timeout=10):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                                          "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hook backend exited with {self.proc.returncode}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hook backend did not come up")

    def stop(self):
        """SIGTERM by PID (SIGKILL after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _http(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def rules(self, reset=False, **rules):
        """Sets the rules of the hooks named (hook=RULE, [RULE, ...] or None)."""
        self._http("POST", "/_control", {"rules": rules, "reset": reset})

    def stats(self):
        return self._http("GET", "/_stats")

    def bodies(self, hook):
        """The bodies of the last calls of `hook` (oldest first)."""
        return [r["body"] for r in self.stats()["requests"] if r["hook"] == hook]

    def calls(self, hook):
        return self.stats()["calls"].get(hook, 0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    Server(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Handler).serve_forever()

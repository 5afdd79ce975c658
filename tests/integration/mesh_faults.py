"""N wsnode processes whose mesh links each go through a test-controlled
TCP relay (relay.py), for partition tests.

Why the relays are per (listener, speaker) pair: a node's SUB socket
connects to every peer's XPUB, and everything node A tells node B (published
messages, heartbeats, history and presence service messages) flows over the
TCP connection B's SUB opened to A's XPUB; B's subscriptions flow back on
that same connection. So node B's `[mesh] peers` lists, for each peer A, the
port of its own relay R(B<-A), which forwards to A's real mesh port:

    R(B<-A).TO_CLIENT  = A -> B (what B hears from A)
    R(B<-A).TO_TARGET  = B -> A subscriptions (ZeroMQ's SUB -> XPUB)

`one_way(A, B)` blackholes R(B<-A).TO_CLIENT only (B's subscriptions still
reach A); `isolate`/`bridge` blackhole both relays of a pair both ways.
Relays outlive node restarts (`kill`/`start` keep ports and config).
"""
import os
import contextlib
import json
import time

from harness import SANITIZER_REPORTS, Node, free_port, wait_until
from relay import BOTH, TO_CLIENT, Relay

DEFAULTS = {
    "mesh": {"heartbeat_ms": 500},
    # a long run (scripts/chaos) must not see its first messages expire (ttl 5 min by default)
    "namespace": [{"name": "room", "history_size": 5000, "recovery_max": 1000,
                   "history_ttl_ms": 3600000}],
    "history": {"timeout_ms": 3000},
    "api": {"timeout_ms": 5000},
    "limits": {"messages_per_second": 0},
}


def _merge(base, extra):
    out = {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in base.items()}
    for k, v in (extra or {}).items():
        if isinstance(v, dict):
            out.setdefault(k, {}).update(v)
        else:
            out[k] = v
    return out


class FaultyCluster:
    def __init__(self, tmp_path, n=3, sections=None, blackhole="blackhole"):
        """`blackhole` is the relay mode a cut uses: "blackhole" (bytes
        dropped; the connection is closed on heal) or "stall" (bytes kept
        and delivered on heal, as TCP would after a short partition)."""
        self.t0 = time.monotonic()
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.cut_mode = blackhole
        self.mesh_port = {i: free_port() for i in self.ids}
        self.relays = {}  # (listener, speaker) -> Relay
        self.deaf = set()  # (listener, speaker): the listener cannot hear the speaker
        self.nodes = {}
        self.log_lines = []
        for dst in self.ids:
            for src in self.ids:
                if src != dst:
                    self.relays[(dst, src)] = Relay(self.mesh_port[src], name=f"R({dst}<-{src})")
        cfg = _merge(DEFAULTS, sections)
        if os.environ.get("WSNODE_LOG_LEVEL"):  # e.g. debug, to follow ownership and fills
            cfg = _merge(cfg, {"log": {"level": os.environ["WSNODE_LOG_LEVEL"]}})
        for i in self.ids:
            mine = _merge(cfg, {
                "node": {"id": i},
                "mesh": dict(cfg.get("mesh", {}),
                             bind=f"tcp://127.0.0.1:{self.mesh_port[i]}",
                             peers=[f"tcp://127.0.0.1:{self.relays[(i, s)].port}"
                                    for s in self.ids if s != i]),
            })
            self.nodes[i] = Node(tmp_path / i, mine)
        for i in self.ids:
            self.nodes[i].start()
        self.say("started " + ", ".join(
            f"{i} pid {self.nodes[i].pid} http {self.nodes[i].port} mesh {self.mesh_port[i]}"
            for i in self.ids))
        self.wait_connected()

    # ------------------------------------------------------------ views
    def say(self, text):
        line = f"[faults +{time.monotonic() - self.t0:6.1f}s] {text}"
        self.log_lines.append(line)
        print(line, flush=True)

    def node(self, i):
        return self.nodes[i]

    def running(self):
        return [n for n in self.nodes.values() if n.proc and n.proc.poll() is None]

    def alive_peers(self, i):
        """Peers `i` reports alive in /readyz (None when it does not answer)."""
        try:
            status, body, _ = self.nodes[i].http("GET", "/readyz", timeout=2)
        except OSError:
            return None
        if status != 200:
            return None
        return sorted(p["node"] for p in json.loads(body).get("peers", []) if p["alive"])

    def wait_connected(self, timeout=20):
        """Every running node hears every running node it is not cut from."""
        up = [n.id for n in self.running()]

        def ok():
            return all(self.alive_peers(i) == sorted(s for s in up if s != i
                                                     and (i, s) not in self.deaf)
                       for i in up)
        t = time.monotonic()
        if not wait_until(ok, timeout, 0.1):
            raise AssertionError("mesh not connected: " + "; ".join(
                f"{i} hears {self.alive_peers(i)}" for i in up))
        self.say(f"mesh as expected after {time.monotonic() - t:.1f}s")

    # ------------------------------------------------------------ faults
    def _deafen(self, listener, speaker, both_ways):
        """`listener` stops hearing `speaker` (relay R(listener<-speaker))."""
        r = self.relays[(listener, speaker)]
        r.set(BOTH if both_ways else TO_CLIENT, self.cut_mode)
        self.deaf.add((listener, speaker))

    def isolate(self, i):
        for other in self.ids:
            if other != i:
                self._deafen(i, other, True)
                self._deafen(other, i, True)
        self.say(f"isolate {i} ({self.cut_mode} both ways on all its links)")

    def bridge(self, a, b):
        """`a` and `b` cannot hear each other; both still hear the others."""
        self._deafen(a, b, True)
        self._deafen(b, a, True)
        self.say(f"bridge: {a} and {b} cut from each other")

    def one_way(self, src, dst):
        """`dst` cannot hear `src`; everything else flows (`src` still hears
        `dst`, and `dst`'s subscriptions still reach `src`)."""
        self._deafen(dst, src, False)
        self.say(f"one-way loss {src} -> {dst}")

    def slow(self, src, dst, ms):
        """What `dst` hears from `src` arrives `ms` late (each chunk)."""
        self.relays[(dst, src)].set(TO_CLIENT, "slow", ms=ms)
        self.say(f"slow {src} -> {dst} by {ms} ms")

    def heal_all(self):
        for r in self.relays.values():
            r.set(BOTH, "pass")
        self.deaf.clear()
        self.say("heal all links")

    def reset_links(self, i):
        for (a, b), r in self.relays.items():
            if i in (a, b):
                r.reset()
        self.say(f"reset every connection of {i}")

    def kill(self, i):
        n = self.nodes[i]
        n.expect_nonzero_exit = True
        pid = n.pid
        n.kill()
        self.say(f"kill -9 {i} (pid {pid})")

    def start(self, i, wait=True):
        n = self.nodes[i]
        n.start()
        self.say(f"start {i} (pid {n.pid})")
        if wait:
            self.wait_connected()

    def relay_stats(self):
        return {f"{a}<-{b}": dict(r.stats) for (a, b), r in self.relays.items()}

    # ------------------------------------------------------------ the end
    def finish(self):
        """Stops every node by PID (SIGTERM, then SIGKILL), closes the
        relays; returns problems found (bad exits, sanitizer reports)."""
        problems = []
        for i, n in self.nodes.items():
            if n.proc is None:
                continue
            pid = n.pid
            try:
                rc = n.stop(timeout=20)
            except Exception as e:  # noqa: BLE001 - reported, then killed below
                rc = f"did not stop: {e}"
            n.kill()
            if rc not in (0, None) and not n.expect_nonzero_exit:
                problems.append(f"{i} (pid {pid}) exited with {rc}")
            log = n.log_text()
            problems += [f"{i}: {x}" for x in SANITIZER_REPORTS if x in log]
        for r in self.relays.values():
            r.close()
        self.say("stopped nodes " + ", ".join(f"{i}={n.pid if n.proc else None}"
                                              for i, n in self.nodes.items())
                 + " and relays")
        return problems


@contextlib.contextmanager
def faulty_cluster(tmp_path, **kwargs):
    """A FaultyCluster that is stopped (by PID) whatever happens; a failure
    to start stops what did start."""
    c = FaultyCluster.__new__(FaultyCluster)
    try:
        c.__init__(tmp_path, **kwargs)
    except BaseException:
        _stop_partial(c)
        raise
    try:
        yield c
    finally:
        problems = c.finish()
    assert not problems, problems


def _stop_partial(c):
    for n in getattr(c, "nodes", {}).values():
        n.kill() if n.proc else None
    for r in getattr(c, "relays", {}).values():
        r.close()

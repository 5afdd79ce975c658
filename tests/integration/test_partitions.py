"""Partitions of the mesh (issue 27) under load: every mesh link goes
through a relay (mesh_faults.py) that cuts, one-way drops or slows it while
4 publishers (POST /api/publish with idempotency keys, retried) and 12
WebSocket subscribers (v1.1 positions and recovery) run on 3 nodes.

After the faults heal and the cluster is quiet, the invariants of
docs/protocol.md v1.1 and docs/operations.md "History and recovery" are
checked; every failed one is listed together, with the numbers, so that a
run tells the whole story. PARTITION_SECONDS (default 8) sets each cut's
length; PARTITION_CUT=stall keeps cut bytes instead of dropping them;
PARTITION_LAYOUT=grouped puts each channel's subscribers on one node.
"""
import asyncio
import collections
import json
import os
import random
import threading
import time

import pytest
import websockets

from harness import _open_clients, recv, run, wait_until
from mesh_faults import faulty_cluster

SECONDS = float(os.environ.get("PARTITION_SECONDS", "8"))
CUT = os.environ.get("PARTITION_CUT", "blackhole")
CHANNELS = ["room:p1", "room:p2", "room:p3"]
MAX_RESYNCS_PER_CUT = 5


@pytest.fixture
def cluster(tmp_path):
    with faulty_cluster(tmp_path, blackhole=CUT) as c:
        yield c


class Book:
    """What the publishers were told (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {ch: {} for ch in CHANNELS}  # ch -> off -> key
        self.offs_of_key = collections.defaultdict(set)  # (ch, key) -> offs
        self.double = []  # an offset acknowledged for two keys
        self.counts = collections.Counter()
        self.slowest = 0.0  # longest time from a key's first try to its ack
        self.stale = []  # history reads behind an ack that came before them

    def ack(self, ch, off, key, took):
        with self.lock:
            prev = self.acked[ch].setdefault(off, key)
            if prev != key:
                self.double.append(f"{ch} off {off}: {prev} and {key}")
            self.offs_of_key[(ch, key)].add(off)
            self.counts["acknowledged"] += 1
            self.slowest = max(self.slowest, took)

    def count(self, what):
        with self.lock:
            self.counts[what] += 1


def publisher(i, cluster, book, stop):
    rng = random.Random(i)
    n = 0
    while not stop.is_set():
        ch, key = CHANNELS[n % len(CHANNELS)], f"p{i}-{n}"
        n += 1
        book.count("published")
        t0 = time.monotonic()
        while True:  # the same key until acknowledged: retries are idempotent
            node = rng.choice(cluster.running())
            try:
                status, body, _ = node.publish(ch, {"k": key}, idem=key, timeout=6)
            except OSError:
                status, body = None, b""
            if status == 200:
                book.ack(ch, json.loads(body)["off"], key, time.monotonic() - t0)
                break
            book.count(f"failed {status}")
            if time.monotonic() - t0 > 30:
                book.count("gave up")
                break
            time.sleep(0.1)
        time.sleep(0.05)


def reader(cluster, book, stop):
    """Reads positions (history, limit 0) through random nodes during the
    faults: a read that starts after an ack of offset N and answers less
    than N is unfenced (a node serving a stale copy it no longer owns)."""
    rng = random.Random(99)
    while not stop.is_set():
        ch, node = rng.choice(CHANNELS), rng.choice(cluster.running())
        with book.lock:
            before = max(book.acked[ch], default=0)
        try:
            status, h = node.history(ch, limit=0)
        except (OSError, ValueError):
            status, h = None, None
        book.count(f"read {status}")
        if status == 200 and h["off"] < before:
            with book.lock:
                book.stale.append((time.monotonic(), f"{node.id} {ch}: off {h['off']} "
                                                     f"after ack of {before}"))
        time.sleep(0.1)


class Sub:
    """One WebSocket client of one channel on one node. It resubscribes with
    `since` on `resync` or a lost socket, and keeps what it was told:
    messages by (epoch, off), and the ranges a `recovered:false` ack said
    it would not get."""

    def __init__(self, node, ch, name):
        self.node, self.ch, self.name = node, ch, name
        self.ep, self.last, self.start = None, 0, None
        self.got = {}  # (ep, off) -> data
        self.told = []  # (ep, first, last): offsets it was told are skipped
        self.problems = []
        self.resync_at = []
        self.last_msg_at = None
        self.counts = collections.Counter()

    async def run(self, stop):
        while not stop.is_set():
            try:
                await self.session(stop)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                self.counts["reconnect " + type(e).__name__] += 1
            if not stop.is_set():
                await asyncio.sleep(0.2)

    async def session(self, stop):
        ws = await websockets.connect(self.node.ws_url(self.name), close_timeout=1,
                                      open_timeout=5)
        _open_clients.append(ws)
        try:
            hello = await recv(ws, 5)
            assert hello["op"] == "hello", hello
            await self.subscribe(ws)
            while not stop.is_set():
                try:
                    m = await recv(ws, 1)
                except asyncio.TimeoutError:
                    continue
                if m["op"] == "resync":
                    self.resync_at.append(time.monotonic())
                    await self.subscribe(ws)
                elif m["op"] == "msg":
                    self.take(m, "live")
        finally:
            await ws.close()

    async def subscribe(self, ws):
        while True:
            cmd = {"op": "sub", "ch": self.ch, "id": 1}
            if self.ep is not None:
                cmd["since"] = {"ep": self.ep, "off": self.last}
            await ws.send(json.dumps(cmd))
            while True:
                m = await recv(ws, 15)
                if m["op"] != "msg":
                    break
                self.take(m, "before its ack")  # allowed by v1's sub contract
            if m["op"] == "ack":
                break
            self.counts["sub err"] += 1  # history out of reach: retry
            await asyncio.sleep(0.3)
        self.acked(m)

    def acked(self, m):
        ep, off = m["ep"], m["off"]
        if self.ep is None:
            self.ep, self.last, self.start = ep, off, (ep, off)
            return
        if m.get("recovered") is True:
            self.counts["recovered"] += 1
            if ep != self.ep or off < self.last:
                self.problems.append(("backwards", f"recovered ack {ep}/{off} after {self.ep}/{self.last}"))
            return
        self.counts["not recovered"] += 1
        if ep == self.ep:
            if off < self.last:
                self.problems.append(("backwards", f"ack off {off} < {self.last} received, ep {ep}"))
            self.told.append((ep, self.last + 1, off))
        else:
            self.counts["new epoch"] += 1
        self.ep, self.last = ep, max(off, self.last) if ep == self.ep else off

    def take(self, m, when):
        off, data = m["off"], m["data"]
        self.counts["delivered"] += 1
        prev = self.got.get((self.ep, off))
        if prev is not None and prev != data:
            self.problems.append(("backwards", f"off {off} again with other data ({when})"))
        elif off <= self.last:
            self.problems.append(("order", f"repeat of {off} after {self.last} ({when})"))
        elif off != self.last + 1:
            self.problems.append(("order", f"silent hole: {off} after {self.last} ({when})"))
        self.got.setdefault((self.ep, off), data)
        self.last_msg_at = time.monotonic()
        self.last = max(self.last, off)

    def is_told(self, ep, off):
        return any(e == ep and a <= off <= b for e, a, b in self.told)


def history_views(cluster, ch, timeout=20):
    """Each node's answer to POST /api/history (retried while unavailable)."""
    views = {}
    for n in cluster.running():
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, h = n.history(ch, limit=5000)
            except (OSError, ValueError):
                status, h = None, None
            if status == 200 or time.monotonic() > deadline:
                views[n.id] = h if status == 200 else None
                break
            time.sleep(0.3)
    return views


def scenario(cluster, name, faults):
    """Runs the load around `faults(cut)` (which calls `cut(label)` as each
    fault starts), heals, lets things settle, then checks and reports."""
    book, stop_pub = Book(), threading.Event()
    nodes = cluster.running()
    # spread: every channel has subscribers on every node; grouped: each
    # channel's only on one node (a node whose channel nobody else follows)
    grouped = os.environ.get("PARTITION_LAYOUT") == "grouped"
    subs = [Sub(nodes[i % len(nodes)],
                CHANNELS[(i if grouped else i // len(nodes)) % len(CHANNELS)], f"s{i}")
            for i in range(12)]
    cuts = []

    def cut(label):
        cuts.append((time.monotonic(), label))

    async def body():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in subs]
        assert await asyncio.to_thread(wait_until, lambda: all(s.ep for s in subs), 20), \
            [s.name for s in subs if not s.ep]
        pubs = [threading.Thread(target=publisher, args=(i, cluster, book, stop_pub))
                for i in range(4)]
        pubs.append(threading.Thread(target=reader, args=(cluster, book, stop_pub)))
        for p in pubs:
            p.start()
        try:
            await asyncio.sleep(1)
            await asyncio.to_thread(faults, cut)
            cut("healed")
            await asyncio.to_thread(cluster.heal_all)
            await asyncio.to_thread(cluster.wait_connected, 30)
            await asyncio.sleep(2)
        finally:
            stop_pub.set()
            for p in pubs:
                await asyncio.to_thread(p.join, 60)
        top = {ch: max(book.acked[ch], default=0) for ch in CHANNELS}
        await asyncio.to_thread(wait_until, lambda: all(s.last >= top[s.ch] for s in subs), 15)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    run(body(), timeout=SECONDS * 8 + 200)
    check(cluster, name, book, subs, cuts)


def check(cluster, name, book, subs, cuts):
    fail = collections.defaultdict(list)
    fail["offset acknowledged for two keys"] += book.double
    fail["key acknowledged at two offsets"] += [
        f"{ch} {k}: {sorted(o)}" for (ch, k), o in book.offs_of_key.items() if len(o) > 1]
    def phase(t):
        return next((label for t0, label in reversed(cuts) if t0 <= t), "before faults")
    fail["reads fenced (extra check)"] += [f"{text} ({phase(t)})" for t, text in book.stale]
    final_ep = {}
    for ch in CHANNELS:
        views = history_views(cluster, ch)
        eps = {i: v["ep"] for i, v in views.items() if v}
        fail["history answers on every node"] += [f"{ch} {i}: none" for i, v in views.items()
                                                  if v is None]
        if len(set(eps.values())) > 1:
            fail["history agrees across nodes"].append(f"{ch} epochs {eps}")
        final_ep[ch] = next(iter(eps.values()), None)
        seen = {}
        for i, v in views.items():
            for p in (v or {}).get("pubs", []):
                if seen.setdefault(p["off"], (i, p["data"]))[1] != p["data"]:
                    fail["history agrees across nodes"].append(
                        f"{ch} off {p['off']}: {seen[p['off']]} vs {i} {p['data']}")
            held = {p["off"]: p["data"] for p in (v or {}).get("pubs", [])}
            for off, key in sorted(book.acked[ch].items()):
                if v is not None and held.get(off) != {"k": key}:
                    fail["acknowledged in history"].append(
                        f"{ch} off {off} key {key} via {i}: {held.get(off)}")
    stuck = []
    for s in subs:
        for kind, text in s.problems:
            label = {"order": "delivered in order", "backwards": "never backwards"}[kind]
            fail[label].append(f"{s.name}@{s.node.id}: {text}")
        ep = final_ep[s.ch]
        missing = [off for off, key in sorted(book.acked[s.ch].items())
                   if (ep, off) not in s.got and not s.is_told(ep, off)
                   and not (s.start and s.start[0] == ep and off <= s.start[1])]
        wrong = [off for off, key in book.acked[s.ch].items()
                 if s.got.get((ep, off), {"k": key}) != {"k": key}]
        if missing:
            stuck.append(s.name)
            fail["every acknowledged message or told"].append(
                f"{s.name}@{s.node.id} {s.ch}: {len(missing)} missing, first {missing[:3]}, "
                f"last position {s.last}, last msg during "
                f"{phase(s.last_msg_at) if s.last_msg_at else None}")
        if wrong:
            fail["every acknowledged message or told"].append(f"{s.name}: wrong data at {wrong[:3]}")
    marks = [t for t, _ in cuts] + [float("inf")]
    per_cut = [max(sum(marks[k] <= t < marks[k + 1] for t in s.resync_at) for s in subs)
               for k in range(len(cuts))]
    for (t, label), worst in zip(cuts, per_cut):
        if worst > MAX_RESYNCS_PER_CUT:
            fail["resyncs per cut"].append(f"{label}: a subscriber resynced {worst} times")

    total = collections.Counter()
    for s in subs:
        total.update(s.counts)
    resyncs = [len(s.resync_at) for s in subs]
    print(f"\n== {name} ({CUT}, cuts of {SECONDS:g}s)")
    print(f"publish: {dict(book.counts)}; slowest ack {book.slowest:.1f}s; top offsets "
          f"{ {ch: max(book.acked[ch], default=0) for ch in CHANNELS} }")
    print(f"subscribers: delivered {total['delivered']}, recovered {total['recovered']}, "
          f"not recovered {total['not recovered']}, resyncs max {max(resyncs)} / total "
          f"{sum(resyncs)}, per cut (max) {dict(zip([c[1] for c in cuts], per_cut))}, "
          f"stuck {len(stuck)}/12, other {dict((k, v) for k, v in total.items() if k not in ('delivered', 'recovered', 'not recovered'))}")
    keys = ("history_takeovers_total", "history_handovers_total", "history_new_epochs_total",
            "history_unavailable_total", "mesh_gaps_total", "mesh_subscribe_timeouts_total",
            "history_filled_total", "history_fill_failures_total", "mesh_received_total",
            "mesh_peers_lost_total")
    for n in cluster.running():
        m = n.metrics()
        print(f"metrics {n.id}: " + ", ".join(f"{k.rsplit('_total', 1)[0]} {m.get('wsnode_' + k, 0):g}"
                                             for k in keys))
    failed = {k: v for k, v in fail.items() if v}
    for k, v in failed.items():
        print(f"FAILED {k}: {len(v)} x, e.g. {v[:4]}")
    print(f"RESULT {name}: " + ("all invariants hold" if not failed else
                                "failed: " + ", ".join(failed)))
    assert not failed, {k: v[:5] for k, v in failed.items()}


# ------------------------------------------------------------------ scenarios

def test_isolate_each_node_in_turn(cluster):
    def faults(cut):
        for i in cluster.ids:
            cut(f"isolate {i}")
            cluster.isolate(i)
            time.sleep(SECONDS)
            cluster.heal_all()
            cluster.wait_connected(30)
            time.sleep(1)
    scenario(cluster, "isolate each node in turn", faults)


def test_bridge_n2_n3_cannot_hear_each_other(cluster):
    def faults(cut):
        cut("bridge n2|n3")
        cluster.bridge("n2", "n3")
        time.sleep(SECONDS)
    scenario(cluster, "bridge (n2, n3 cut, both hear n1)", faults)


def test_one_way_loss_n1_to_n2(cluster):
    def faults(cut):
        cut("one-way n1->n2")
        cluster.one_way("n1", "n2")
        time.sleep(SECONDS)
    scenario(cluster, "one-way loss n1 -> n2", faults)


def test_slow_link_n1_n2(cluster):
    ms = int(os.environ.get("PARTITION_SLOW_MS", "400"))

    def faults(cut):
        cut(f"slow n1<->n2 {ms}ms")
        cluster.slow("n1", "n2", ms)
        cluster.slow("n2", "n1", ms)
        time.sleep(SECONDS)
    scenario(cluster, f"slow link n1 <-> n2 ({ms} ms)", faults)

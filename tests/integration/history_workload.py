"""The history workload of the fault tests: keyed publishers and recovering
subscribers of a 3-node cluster behind nginx (test_history_cluster.py's
kill -9 chaos, test_rolling_restart.py's rolling restart). Subscribers use
Python's websockets (not ours) through nginx."""
import asyncio
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request

import websockets

from harness import _open_clients, recv, run, wait_until


class FaultLog:
    """What a workload's fault thread did, when."""

    def __init__(self):
        self.faults = []    # a node hurt (killed, stopped, cut)
        self.restarts = []  # a node back


def api_publish(port, ch, data, key=None, timeout=5):
    body = {"ch": ch, "data": data}
    if key is not None:
        body["key"] = key
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/publish",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return None, None


async def open_ws(url):
    ws = await websockets.connect(url, close_timeout=1, open_timeout=5)
    _open_clients.append(ws)
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert hello["op"] == "hello"
    return ws, hello



class Subscriber:
    """One client of one channel through nginx: reconnects with `since`
    whenever it loses its socket or gets `resync`; records every offset."""

    def __init__(self, url, ch, name):
        self.url, self.ch, self.name = url, ch, name
        self.ep = None
        self.last = 0
        self.data = {}  # off -> data
        self.problems = []
        self.reconnects = 0
        self.recovered = 0
        self.resyncs = 0
        self.epochs = set()
        self.why = {}  # reconnect reasons
        self.live_since = None  # when the current subscription was acked (None: not live)
        self.lost_at = None  # when the last session was lost
        self.rehome = []  # seconds from losing a session to the sub acked again

    async def run(self, stop):
        while not stop.is_set():
            try:
                await self.session(stop)
            except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException) as e:
                name = type(e).__name__ + str(getattr(e, "status_code", ""))
                self.why[name] = self.why.get(name, 0) + 1
            if not stop.is_set():
                self.reconnects += 1
                await asyncio.sleep(0.2)

    async def session(self, stop):
        try:
            ws, _ = await open_ws(self.url)
        except BaseException:
            self.lost_at = self.lost_at or time.monotonic()
            raise
        try:
            await self.subscribe(ws)
            while not stop.is_set():
                try:
                    m = await recv(ws, 1)
                except asyncio.TimeoutError:
                    continue
                if m["op"] == "resync":
                    self.resyncs += 1
                    self.live_since = None
                    await self.subscribe(ws)
                elif m["op"] == "msg":
                    self.take(m)
        finally:
            self.live_since = None
            self.lost_at = self.lost_at or time.monotonic()
            await ws.close()

    async def subscribe(self, ws):
        cmd = {"op": "sub", "ch": self.ch, "id": 1}
        if self.ep is not None:
            cmd["since"] = {"ep": self.ep, "off": self.last}
        await ws.send(json.dumps(cmd))
        while True:
            m = await recv(ws, 10)
            if m["op"] == "msg":  # from before: an earlier subscription's tail
                self.take(m)
                continue
            break
        if m["op"] == "err":  # history unavailable for now: try again
            await asyncio.sleep(0.3)
            return await self.subscribe(ws)
        assert m["op"] == "ack", m
        now = time.monotonic()
        self.live_since = now
        if self.lost_at is not None:
            self.rehome.append(now - self.lost_at)
            self.lost_at = None
        self.epochs.add(m["ep"])
        if self.ep is None:
            self.ep, self.last = m["ep"], m["off"]
        elif m.get("recovered") is True:
            self.recovered += 1
        else:
            self.problems.append(f"not recovered: {m}")
            self.ep, self.last = m["ep"], m["off"]

    def take(self, m):
        off = m["off"]
        if off <= self.last:
            self.problems.append(f"duplicate {off} after {self.last}")
        elif off != self.last + 1:
            self.problems.append(f"hole: {off} after {self.last}")
        self.data[off] = m["data"]
        self.last = max(self.last, off)


def history_workload(cluster, duration, faults, fault_name="kill", nats_kills=False):
    """8 keyed publishers (HTTP API, any node, retried elsewhere when one
    is down) and 30 subscribers through nginx, recovering with `since`,
    while `faults(faults_log)` runs in a thread (it appends to
    faults_log.faults when it hurts a node, .restarts when it brings one
    back; and returns when it is done, which ends the publishing). Then
    checks that every acknowledged message reached every subscriber, in
    order, once, and prints what happened. Returns the counts."""
    channels = ["room:c1", "room:c2", "room:c3"]
    log = FaultLog()
    fault_times = log.faults
    restart_times = log.restarts
    stop_pub = threading.Event()
    acked = {ch: {} for ch in channels}  # ch -> off -> key
    ack_times = {ch: [] for ch in channels}  # when each publish was acknowledged
    counts = {"published": 0, "acknowledged": 0, "retries": 0}
    lock = threading.Lock()

    def publisher(i):
        rng = random.Random(i)
        n = 0
        while not stop_pub.is_set():
            ch = channels[n % len(channels)]
            key = f"p{i}-{n}"
            n += 1
            with lock:
                counts["published"] += 1
            deadline = time.monotonic() + 30
            refused = set()  # nodes that refused this publish's connection
            while time.monotonic() < deadline:
                node = rng.choice([n for n in cluster.nodes if n.id not in refused] or
                                  cluster.nodes)
                status, reply = api_publish(node.port, ch, {"k": key}, key=key, timeout=4)
                if status is None and len(refused) < len(cluster.nodes) - 1:
                    # a dead node: another at once, as nginx would do
                    refused.add(node.id)
                    with lock:
                        counts["retries"] += 1
                    continue
                if status == 200:
                    with lock:
                        prev = acked[ch].get(reply["off"])
                        assert prev in (None, key), f"{ch} off {reply['off']}: {prev} and {key}"
                        acked[ch][reply["off"]] = key
                        ack_times[ch].append(time.monotonic())
                        counts["acknowledged"] += 1
                    break
                with lock:
                    counts["retries"] += 1
                time.sleep(0.1)
            time.sleep(0.025)  # 8 publishers: about 200 msgs/s in total

    on_nats = os.environ.get("WSNODE_BACKBONE") == "nats"
    nats_kill_times = []

    def nats_chaos():
        """On NATS: SIGKILL of a random nats-server twice (at 2/5 and 4/5 of
        the run, between node kills), each restarted 5 s later."""
        rng = random.Random(11)
        t0 = time.monotonic()
        for at in (duration * 2 / 5 + 2.5, duration * 4 / 5 + 2.5):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if stop_pub.is_set():
                return
            i = rng.randrange(1, len(cluster.state["nats"]) + 1)
            nats_kill_times.append(time.monotonic())
            cluster.run("nats-kill", str(i))
            time.sleep(5)
            cluster.run("nats-start", str(i))

    subs = [Subscriber(cluster.ws_url(f"s{i}"), channels[i % 3], f"s{i}") for i in range(30)]

    async def body():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for s in subs]
        assert await asyncio.to_thread(wait_until, lambda: all(s.ep for s in subs), 20)
        pubs = [threading.Thread(target=publisher, args=(i,)) for i in range(8)]
        for p in pubs:
            p.start()
        nats_thread = threading.Thread(target=nats_chaos) if on_nats and nats_kills else None
        if nats_thread:
            nats_thread.start()
        try:
            await asyncio.to_thread(faults, log)
        finally:
            if nats_thread:
                await asyncio.to_thread(nats_thread.join, 30)
            stop_pub.set()
            for p in pubs:
                await asyncio.to_thread(p.join, 40)
        # no tail exemption: 2 s after the last acknowledged publish, every
        # subscriber that has been live since holds every acknowledged message
        quiet_from = time.monotonic()
        top = {ch: max(acked[ch], default=0) for ch in channels}
        await asyncio.sleep(2)
        for s in subs:
            if s.live_since is not None and s.live_since <= quiet_from:
                tail_checked.append(s.name)
                assert s.last >= top[s.ch], (s.name, f"at {s.last} of {top[s.ch]} after 2 s")
        # the others were told (their session or subscription ended): they recover
        await asyncio.to_thread(
            wait_until, lambda: all(s.last >= top[s.ch] for s in subs), 30)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    tail_checked = []
    run(body(), timeout=duration + 120)
    delivered = sum(len(s.data) for s in subs)
    gaps = {ch: max((b - a for a, b in zip(t, t[1:])), default=0.0) for ch, t in ack_times.items()}
    rehome = sorted(x for s in subs for x in s.rehome)
    med = rehome[len(rehome) // 2] if rehome else 0.0
    # per kill: the longest wait, over the channels, for the first ack after it
    outages = []
    for k in fault_times:
        waits = [min((t for t in ts if t > k), default=k + 30) - k for ts in ack_times.values()]
        outages.append(max(waits))
    outages.sort()
    if nats_kill_times:
        nats_outages = sorted(
            max(min((t for t in ts if t > k), default=k + 30) - k for ts in ack_times.values())
            for k in nats_kill_times)
        print(f"nats-server kills: {len(nats_kill_times)}; every channel acknowledged again "
              f"within: " + ", ".join(f"{x:.2f} s" for x in nats_outages))
    if outages:
        print(f"after each {fault_name}, every channel acknowledged again within: median "
              f"{outages[len(outages) // 2]:.2f} s, max {outages[-1]:.2f} s "
              f"({len(outages)} {fault_name}s)")
    def since_last(events, t):
        past = [t - e for e in events if e <= t]
        return f"{min(past):.2f} s" if past else "-"
    for ch, ts in ack_times.items():
        if len(ts) > 1:
            g, start = max((b - a, a) for a, b in zip(ts, ts[1:]))
            print(f"{ch}: longest gap {g:.2f} s began at {time.time() - time.monotonic() + start:.3f} "
                  f"(epoch s), {since_last(fault_times, start)} after a {fault_name}, "
                  f"{since_last(restart_times, start)} after a restart")
    print("longest time without an ack per channel: "
          + ", ".join(f"{ch} {g:.2f} s" for ch, g in gaps.items()))
    print(f"re-homed subscribers: {len(rehome)}, from losing a session to the sub acked again "
          f"median {med:.2f} s, max {max(rehome, default=0.0):.2f} s; "
          f"{len(tail_checked)} of {len(subs)} live through the end held the tail within 2 s")
    m = [n.metrics() for n in cluster.nodes]
    takeovers = sum(x.get("wsnode_history_takeovers_total", 0) for x in m)
    print(f"chaos: {len(fault_times)} {fault_name}s; {counts['published']} published, "
          f"{counts['acknowledged']} acknowledged ({counts['retries']} retries); "
          f"{delivered} delivered to 30 subscribers; "
          f"{sum(s.reconnects for s in subs)} reconnects, {sum(s.recovered for s in subs)} "
          f"recovered, {sum(s.resyncs for s in subs)} resyncs; take-overs {takeovers:.0f}")
    why = {}
    for s in subs:
        for k, v in s.why.items():
            why[k] = why.get(k, 0) + v
    print(f"reconnect reasons: {why}")
    assert len(nats_kill_times) == 2 or not (on_nats and nats_kills)
    for s in subs:
        assert not s.problems, (s.name, s.problems[:5])
        assert len(s.epochs) == 1, (s.name, s.epochs)
        offs = sorted(s.data)
        assert offs == list(range(1, len(offs) + 1)), (s.name, "offsets not contiguous")
        for off, key in acked[s.ch].items():
            assert off in s.data, (s.name, f"acknowledged {off} missing")
            assert s.data[off] == {"k": key}, (s.name, off, s.data[off], key)
    counts["faults"] = len(fault_times)
    return counts

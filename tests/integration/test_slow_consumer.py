"""A client that stops reading is closed (1013) or dropped; the others get
every message; the server's memory stays bounded."""
import asyncio
import http.client
import json
import threading
import time

from harness import SANITIZED, connect, recv, run, sub, wait_until
from rawws import RawClient

TOTAL_BYTES = 50 << 20
PAYLOAD = "x" * 32000  # within the default limits.max_data_bytes (32 KiB)


def test_stalled_reader_is_dropped_and_others_get_everything(make_node):
    node = make_node(ws={"max_queue_bytes": 1 << 20})
    count = TOTAL_BYTES // len(PAYLOAD)

    # our own raw client: subscribes, then never reads again
    slow = RawClient(node.port, "/ws?user=slow", rcvbuf=4096)
    slow.recv_frame()  # hello
    slow.send_text('{"op":"sub","ch":"firehose","id":1}')
    assert json.loads(slow.recv_frame()[1]) == {"op": "ack", "id": 1}

    state = {"received": 0, "published": 0, "max_rss": 0, "error": None}
    rss_before = node.rss_kib()

    def publisher():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
            deadline = time.monotonic() + 120
            for i in range(count):
                while state["published"] - state["received"] > 16:  # stay near the good reader
                    if time.monotonic() > deadline:
                        raise TimeoutError("good reader stalled")
                    time.sleep(0.001)
                body = json.dumps({"ch": "firehose", "data": {"i": i, "p": PAYLOAD}})
                conn.request("POST", "/api/publish", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 200
                state["published"] += 1
                if i % 50 == 0:
                    state["max_rss"] = max(state["max_rss"], node.rss_kib())
            conn.close()
        except Exception as e:  # reported by the main thread
            state["error"] = e

    async def go():
        good, _ = await connect(node, "good", max_size=1 << 20)
        await sub(good, "firehose")
        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        for i in range(count):
            msg = await recv(good, timeout=30)
            assert msg["data"]["i"] == i, "the good subscriber missed or reordered a message"
            state["received"] += 1
        t.join(timeout=30)
        assert state["error"] is None, state["error"]
    try:
        run(go(), timeout=240)
        m = node.metrics()
        assert m['wsnode_dropped_total{reason="slow_consumer"}'] > 0
        # the slow one is closed: after the close timeout at the latest
        assert wait_until(lambda: node.metrics()["wsnode_connections"] == 0, timeout=15)
        assert node.metrics()["wsnode_queued_bytes"] == 0
        grown_mib = (state["max_rss"] - rss_before) / 1024
        print(f"published {count} x {len(PAYLOAD)} B; RSS before {rss_before} KiB, "
              f"max during {state['max_rss']} KiB (+{grown_mib:.1f} MiB)")
        # An unbounded queue would hold all 50 MiB for the stalled client.
        bound = 40 if SANITIZED else 24
        assert grown_mib < bound, f"server RSS grew by {grown_mib:.1f} MiB"
        # the slow client, reading now, finds the 1013 close (or a reset)
        assert slow.recv_until_close() in (1013, None)
    finally:
        slow.close()

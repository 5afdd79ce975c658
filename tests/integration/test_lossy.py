"""Lossy namespaces (danmaku): a viewer that cannot keep up loses comments,
counted as wsnode_dropped_total{reason="lossy"}, instead of being closed;
it gets new comments once it reads again, and the server's memory stays
bounded. The same stall on a channel of another namespace still closes
with 1013."""
import http.client
import json
import time

from harness import SANITIZED, wait_until
from rawws import RawClient

TOTAL_BYTES = 50 << 20
PAYLOAD = "x" * 16000


def publish_all(node, ch, count):
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    for i in range(count):
        body = json.dumps({"ch": ch, "data": {"i": i, "p": PAYLOAD}})
        conn.request("POST", "/api/publish", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.close()


def stalled_viewer(node, ch, user):
    """Our raw client: subscribes, then does not read (a 4 KiB receive buffer)."""
    viewer = RawClient(node.port, f"/ws?user={user}", rcvbuf=4096, timeout=30)
    viewer.recv_frame()  # hello
    viewer.send_text(json.dumps({"op": "sub", "ch": ch, "id": 1}))
    assert json.loads(viewer.recv_frame()[1]) == {"op": "ack", "id": 1}
    return viewer


def test_stalled_danmaku_viewer_drops_comments_and_stays(make_node):
    node = make_node(ws={"max_queue_bytes": 256 << 10, "ping_interval_ms": 120000},
                     namespace=[{"name": "danmaku", "lossy": True}])
    count = TOTAL_BYTES // len(PAYLOAD)
    viewer = stalled_viewer(node, "danmaku:live", "viewer")
    rss_before = node.rss_kib()
    started = time.monotonic()
    publish_all(node, "danmaku:live", count)
    rss_after = node.rss_kib()
    m = node.metrics()
    dropped = m['wsnode_dropped_total{reason="lossy"}']
    print(f"lossy: {count} comments ({count * len(PAYLOAD) >> 20} MiB) in "
          f"{time.monotonic() - started:.1f} s; dropped for the stalled viewer: {int(dropped)}; "
          f"RSS {rss_before} -> {rss_after} KiB")
    assert dropped > count / 2, "most comments should have been skipped for the stalled viewer"
    assert m['wsnode_dropped_total{reason="slow_consumer"}'] == 0
    assert m['wsnode_closed_total{code="1013"}'] == 0
    assert m["wsnode_connections"] == 1
    if not SANITIZED:
        assert rss_after - rss_before < 64 << 10, "memory grew with what the viewer did not read"

    # it reads again: first what the server still held for it, in order...
    seen = []
    deadline = time.monotonic() + 30
    viewer.sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            opcode, payload = viewer.recv_frame()
        except TimeoutError:
            break
        seen.append(json.loads(payload)["data"]["i"])
    assert seen == sorted(seen), "comments arrived out of order"
    # ...then a new comment
    viewer.sock.settimeout(10)
    body = json.dumps({"ch": "danmaku:live", "data": {"i": -1, "p": "new"}})
    assert node.http("POST", "/api/publish", body)[0] == 200
    opcode, payload = viewer.recv_frame()
    assert opcode == 1 and json.loads(payload)["data"]["i"] == -1
    viewer.close()


def test_the_same_stall_on_a_plain_channel_closes_with_1013(make_node):
    node = make_node(ws={"max_queue_bytes": 256 << 10, "ping_interval_ms": 120000},
                     namespace=[{"name": "danmaku", "lossy": True}])
    viewer = stalled_viewer(node, "feed:live", "viewer")
    count = (8 << 20) // len(PAYLOAD)
    publish_all(node, "feed:live", count)
    assert wait_until(lambda: node.metrics()['wsnode_closed_total{code="1013"}'] == 1, 10)
    m = node.metrics()
    assert m['wsnode_dropped_total{reason="lossy"}'] == 0
    assert m['wsnode_dropped_total{reason="slow_consumer"}'] > 0
    code = viewer.recv_until_close()
    assert code in (1013, None), code  # None: the socket was cut before the close frame was read

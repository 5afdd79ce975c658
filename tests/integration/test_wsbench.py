"""wsbench against a real node: a bounded smoke run of each scenario that
must lose nothing (a few hundred connections)."""
import json
import os
import subprocess

from harness import WSNODE

WSBENCH = os.environ.get("WSBENCH_BIN", os.path.join(os.path.dirname(WSNODE), "wsbench"))


def bench(node, tmp_path, *args):
    out = tmp_path / "r.json"
    if out.exists():
        out.unlink()
    r = subprocess.run([WSBENCH, *args, "--target", f"ws://127.0.0.1:{node.port}", "--quiet",
                        "--json", str(out), "--server-pid", str(node.pid), "--threads", "1"],
                       capture_output=True, text=True, timeout=120)
    assert out.exists(), r.stderr
    res = json.loads(out.read_text().splitlines()[0])
    assert r.returncode == 0, (res, r.stderr)
    return res


def test_fanout_smoke_loses_nothing(make_node, tmp_path):
    node = make_node(limits={"messages_per_second": 0})
    # enough deliveries for the node to use several 10 ms CPU ticks (with
    # coalescing, 30,000 took less than one)
    r = bench(node, tmp_path, "fanout", "-n", "300", "-m", "1000", "--size", "200")
    assert r["connections"] == 300 and r["connect_failures"] == 0
    assert r["published"] == 1000
    assert r["delivered"] == r["expected"] == 300000
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["errors"] == 0
    assert r["latency_us"]["p50"] > 0 and r["latency_us"]["max"] >= r["latency_us"]["p99"]
    assert r["server_cpu_s"] > 0 and r["delivered_per_server_cpu_s"] > 0
    # the same through the HTTP API, at a fixed rate
    r = bench(node, tmp_path, "fanout", "-n", "100", "-m", "50", "--rate", "100", "--http-publish")
    assert r["delivered"] == 5000 and r["lost"] == 0


def test_delivery_bound_and_write_counters(make_node, tmp_path):
    """--bound delivery keeps at most --window messages not yet delivered to
    every subscriber, so no socket can get more than that per read or per
    write; the client-side counters and the node's write counters agree."""
    node = make_node(limits={"messages_per_second": 0})
    before = node.metrics()
    r = bench(node, tmp_path, "fanout", "-n", "200", "-m", "1000", "--size", "100",
              "--window", "16", "--bound", "delivery")
    after = node.metrics()
    assert r["bound"] == "delivery"
    assert r["delivered"] == r["expected"] == 200000
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["errors"] == 0
    assert r["client_reads"] > 0 and r["client_read_bytes"] >= 100 * r["delivered"]
    assert 1 <= r["deliveries_per_client_read"] <= 16
    assert r["client_us_per_delivery"] > 0
    frames = after["wsnode_messages_out_total"] - before["wsnode_messages_out_total"]
    writes = after["wsnode_socket_writes_total"] - before["wsnode_socket_writes_total"]
    sent = after["wsnode_bytes_out_total"] - before["wsnode_bytes_out_total"]
    assert frames >= 200000 and sent >= 100 * frames
    assert 0 < writes <= frames and frames / writes <= 16


def test_idle_danmaku_and_chat_smoke(make_node, tmp_path):
    node = make_node(limits={"messages_per_second": 0})
    r = bench(node, tmp_path, "idle", "-n", "400")
    assert r["connections"] == 400
    assert r["server_rss_after"] > r["server_rss_before"] > 0
    assert len(r["rss_curve"]) >= 2
    r = bench(node, tmp_path, "danmaku", "-n", "300", "--rooms", "10", "--publishers", "4",
              "--rate", "100", "--duration", "1")
    assert r["published"] > 50 and r["lost"] == 0 and r["duplicates"] == 0
    assert r["delivered"] == r["expected"]
    r = bench(node, tmp_path, "chat", "--pairs", "50", "--rate", "200", "--duration", "1")
    assert r["published"] > 100 and r["delivered"] == r["published"] and r["lost"] == 0


def test_plan_answers_how_many_nodes(make_node, tmp_path):
    node = make_node(limits={"messages_per_second": 0})
    # big enough for /proc's 10 ms CPU ticks and for RSS pages to move: the
    # node now spends under 10 ms on 10,000 deliveries
    idle = bench(node, tmp_path, "idle", "-n", "1000")
    fan = bench(node, tmp_path, "fanout", "-n", "200", "-m", "1000")
    assert fan["server_cpu_s"] > 0 and idle["rss_per_connection"] > 0
    (tmp_path / "i.json").write_text(json.dumps(idle) + "\n")
    (tmp_path / "f.json").write_text(json.dumps(fan) + "\n")
    r = subprocess.run([WSBENCH, "plan", "--users", "50000", "--rate", "0.1", "--fanout", "100",
                        "--idle", str(tmp_path / "i.json"), "--fanout-result",
                        str(tmp_path / "f.json")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout.strip().splitlines()[-1])
    assert plan["nodes"] >= 1
    assert plan["nodes"] >= plan["nodes_cpu"] and plan["nodes"] >= plan["nodes_memory"]

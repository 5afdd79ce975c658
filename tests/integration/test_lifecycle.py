"""Start-up checks, command line, and the graceful drain on SIGTERM."""
import json
import os
import signal
import subprocess
import time

import websockets

from harness import WSNODE, call, connect, free_port, recv, run, toml_text, wait_until
from rawws import RawClient


def wsnode(*args, timeout=20):
    return subprocess.run([WSNODE, *args], capture_output=True, text=True, timeout=timeout)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_version_help_and_check_config(tmp_path):
    r = wsnode("--version")
    assert r.returncode == 0 and r.stdout.startswith("wsnode ")
    r = wsnode("--help")
    assert r.returncode == 0 and "--check-config" in r.stdout and "--config" in r.stdout
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = wsnode("--config", os.path.join(root, "config.toml"), "--check-config")
    assert r.returncode == 0, r.stderr
    assert wsnode("--no-such-flag").returncode != 0


def test_bad_configs_exit_2_naming_the_key(tmp_path):
    cases = {
        "unknown key": ("[ws]\nmax_mesage_bytes = 10\n", "ws.max_mesage_bytes"),
        "wrong type": ("[ws]\nmax_message_bytes = \"big\"\n", "ws.max_message_bytes"),
        "bad address": ("[http]\nlisten = \"127.0.0.1:http\"\n", "http.listen"),
        "bad mesh": ("[mesh]\nbind = \"127.0.0.1:7000\"\n", "mesh.bind"),
        "dev mode in public": ("[http]\nlisten = \"0.0.0.0:8080\"\n", "auth.secret"),
        "syntax": ("[node\n", "line 1"),
    }
    for name, (text, needle) in cases.items():
        path = write(tmp_path, "bad.toml", text)
        for extra in (["--check-config"], []):
            r = wsnode("--config", path, *extra)
            assert r.returncode == 2, (name, r.stderr)
            assert needle in r.stderr, (name, r.stderr)
    r = wsnode("--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "missing.toml" in r.stderr
    unreadable = write(tmp_path, "unreadable.toml", "")
    os.chmod(unreadable, 0)
    if os.geteuid() != 0:  # root reads anything
        assert wsnode("--config", unreadable).returncode == 2
    assert wsnode("--config", str(tmp_path)).returncode == 2  # a directory


def test_port_in_use_fails_clearly(node, tmp_path):
    cfg = write(tmp_path, "dup.toml", toml_text({"http": {"listen": f"127.0.0.1:{node.port}"}}))
    r = wsnode("--config", cfg)
    assert r.returncode == 1
    assert "cannot listen" in r.stderr and str(node.port) in r.stderr


def test_sigterm_closes_sessions_with_1001_and_exits_0(node):
    async def go():
        clients = [await connect(node, f"u{i}") for i in range(5)]
        node.proc.send_signal(signal.SIGTERM)
        for ws, _ in clients:
            try:
                await recv(ws)
                raise AssertionError("expected a close")
            except websockets.ConnectionClosed as e:
                assert e.rcvd.code == 1001
    run(go())
    assert node.proc.wait(timeout=15) == 0
    log = node.log_text()
    assert "draining 5 connections" in log and "stopped after" in log


def test_draining_node_is_unready_and_refuses_upgrades(make_node):
    node = make_node(ws={"close_timeout_ms": 2000}, node={"drain_timeout_ms": 10000})
    # a client that never answers the close handshake keeps the node draining
    stuck = RawClient(node.port, "/ws?user=stuck")
    try:
        assert stuck.status == 101
        node.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: node.http("GET", "/readyz")[0] == 503, timeout=5)
        ready = json.loads(node.http("GET", "/readyz")[1])
        assert ready["ready"] is False and ready["draining"] is True
        assert node.http("GET", "/healthz")[0] == 200

        async def refused():
            try:
                await websockets.connect(node.ws_url("late"))
            except websockets.InvalidStatusCode as e:
                return e.status_code
            return 101
        import asyncio
        assert asyncio.run(refused()) == 503
        t0 = time.monotonic()
        assert node.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 5  # the close timeout ended the stuck session
        assert stuck.recv_until_close() == 1001
    finally:
        stuck.close()


def test_drain_bound_is_honoured(make_node):
    node = make_node(ws={"close_timeout_ms": 30000}, node={"drain_timeout_ms": 1000})
    stuck = [RawClient(node.port, f"/ws?user=s{i}") for i in range(3)]
    try:
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 5
        assert "drain bound reached with 3 connections left" in node.log_text()
    finally:
        for c in stuck:
            c.close()


def test_sigint_also_drains(node):
    async def go():
        ws, _ = await connect(node, "a")
        reply, _ = await call(ws, {"op": "ping", "id": 1})
        assert reply["op"] == "pong"
        node.proc.send_signal(signal.SIGINT)
        try:
            await recv(ws)
        except websockets.ConnectionClosed as e:
            assert e.rcvd.code == 1001
    run(go())
    assert node.proc.wait(timeout=15) == 0


def test_mesh_port_in_use_fails_clearly(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        cfg = write(tmp_path, "mesh.toml", toml_text({
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "mesh": {"bind": f"tcp://127.0.0.1:{taken}"}}))
        r = wsnode("--config", cfg)
    assert r.returncode == 1
    assert "mesh: cannot bind" in r.stderr and str(taken) in r.stderr

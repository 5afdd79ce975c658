"""The HTTP side of the listener: health, readiness, metrics, API errors,
static files, limits."""
import json
import socket

from harness import ROOT


def test_health_and_readiness(node):
    status, body, _ = node.http("GET", "/healthz")
    assert status == 200 and body == b"ok\n"
    status, body, headers = node.http("GET", "/readyz")
    assert status == 200 and headers["Content-Type"] == "application/json"
    ready = json.loads(body)
    assert ready["ready"] is True and ready["node"] == "n1" and ready["draining"] is False
    assert ready["peers"] == []


def test_metrics_exposition_has_the_documented_names(node):
    status, body, headers = node.http("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    for name in ("wsnode_connections", "wsnode_messages_in_total", "wsnode_messages_out_total",
                 'wsnode_dropped_total{reason="slow_consumer"}', "wsnode_mesh_peers",
                 "wsnode_mesh_received_total", "wsnode_mesh_gaps_total",
                 "process_resident_memory_bytes", "wsnode_queued_bytes"):
        assert f"\n{name} " in text, name
    assert "# TYPE wsnode_connections gauge" in text
    assert "# TYPE wsnode_messages_in_total counter" in text
    assert node.metrics()["process_resident_memory_bytes"] > 1e6


def test_unknown_paths_and_wrong_methods(node):
    assert node.http("GET", "/nope")[0] == 404
    assert node.http("GET", "/api/nope")[0] == 404
    status, _, headers = node.http("GET", "/api/publish")
    assert status == 405 and headers["Allow"] == "POST"
    status, _, headers = node.http("POST", "/healthz", "")
    assert status == 405 and "GET" in headers["Allow"]
    assert node.http("DELETE", "/")[0] == 405
    status, _, headers = node.http("GET", "/ws?user=a")
    assert status == 426 and headers["Upgrade"] == "websocket"


def test_api_bad_bodies_get_400_with_a_json_error(node):
    for body, code in [("{", "bad_json"), ("[]", "bad_request"), ('{"ch":"a"}', "bad_request"),
                       ('{"data":1}', "bad_request"), ('{"ch":"a b","data":1}', "bad_channel"),
                       ('{"ch":"a","data":"' + "x" * 40000 + '"}', "too_large")]:
        status, resp, headers = node.http("POST", "/api/publish", body)
        assert status == 400, body
        assert headers["Content-Type"] == "application/json"
        assert json.loads(resp)["error"] == code, body
    status, resp, _ = node.http("POST", "/api/send", '{"to":"bad user","data":1}')
    assert status == 400 and json.loads(resp)["error"] == "bad_request"


def test_request_limits(node):
    status, _, _ = node.http("POST", "/api/publish", "x" * (2 << 20))
    assert status == 413
    # an oversized header block
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 431")
    # garbage instead of HTTP
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 hello\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert node.http("GET", "/healthz")[0] == 200


def test_static_files_and_no_traversal(node):
    status, body, headers = node.http("GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    with open(f"{ROOT}/web/index.html", "rb") as f:
        assert body == f.read()
    assert node.http("HEAD", "/index.html")[0] == 200
    assert node.http("GET", "/missing.js")[0] == 404
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        for path in (b"/../config.toml", b"/%2e%2e/config.toml", b"/..%2fconfig.toml",
                     b"/web/../../etc/passwd", b"/.git/config"):
            s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(65536)
            assert head.startswith(b"HTTP/1.1 404") or head.startswith(b"HTTP/1.1 400"), path


def test_keep_alive_serves_several_requests(node):
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        for _ in range(3):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b"ok\n"):
                data += s.recv(4096)
            assert data.startswith(b"HTTP/1.1 200")


def raw_upgrade(port, version="13", key="dGhlIHNhbXBsZSBub25jZQ=="):
    """Sends an upgrade request byte for byte; returns the response head."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET /ws?user=a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                  f"Upgrade: websocket\r\nSec-WebSocket-Version: {version}\r\n"
                  f"Sec-WebSocket-Key: {key}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk
            head += chunk
        return head


def test_bad_websocket_handshakes_get_clear_http_errors(node):
    head = raw_upgrade(node.port, version="8")
    assert head.startswith(b"HTTP/1.1 426") and b"Sec-WebSocket-Version: 13\r\n" in head
    head = raw_upgrade(node.port, key="short")
    assert head.startswith(b"HTTP/1.1 400")
    # good clients are upgraded, with the RFC 6455 accept value
    head = raw_upgrade(node.port)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head

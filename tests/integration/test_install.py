"""`cmake --install` of the build under test (DESTDIR, nothing outside the
test's folder): the FHS layout the Debian package is made of, the shipped
config validated and run from the installed files, and the unit's
promises checked against that config. The package itself is built and
installed in a fresh Debian 12 root by scripts/package-check (a developer's
tool: it needs root and debootstrap)."""
import os
import re
import shutil
import signal
import subprocess
import urllib.request

import pytest

from harness import ROOT, WSNODE, free_port, wait_until

BUILD = os.path.dirname(os.path.abspath(WSNODE))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    dest = tmp_path_factory.mktemp("install")
    if not os.path.exists(os.path.join(BUILD, "cmake_install.cmake")):
        pytest.skip(f"{BUILD} is not a CMake build folder")
    r = subprocess.run(["cmake", "--install", BUILD], env=dict(os.environ, DESTDIR=str(dest)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    yield dest
    shutil.rmtree(dest, ignore_errors=True)  # large binaries: not kept


def prefix_of(tree):
    """The install prefix under the tree (/usr for the package, /usr/local by default)."""
    for p in ("usr/local", "usr"):
        if os.path.exists(os.path.join(tree, p, "bin", "wsnode")):
            return os.path.join(tree, p)
    raise AssertionError(f"no bin/wsnode under {tree}")


def test_layout(tree):
    pre = prefix_of(tree)
    for f in ("bin/wsnode", "bin/wsbench"):
        assert os.access(os.path.join(pre, f), os.X_OK), f
    for f in ("share/wsnode/web/index.html", "share/wsnode/web/wsnode.js",
              "share/wsnode/grafana/wsnode.json", "share/wsnode/prometheus/wsnode-alerts.yml",
              "share/doc/wsnode/README.md", "share/doc/wsnode/docs/operations.md"):
        assert os.path.isfile(os.path.join(pre, f)), f
    config = os.path.join(tree, "etc/wsnode/config.toml")
    assert os.stat(config).st_mode & 0o777 == 0o640  # it holds the secrets
    assert os.path.isfile(os.path.join(tree, "lib/systemd/system/wsnode.service"))
    with open(os.path.join(ROOT, "deploy/debian/conffiles")) as f:
        assert f.read().split() == ["/etc/wsnode/config.toml"]


def unit_values(tree):
    out = {}
    with open(os.path.join(tree, "lib/systemd/system/wsnode.service")) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, v = line.strip().split("=", 1)
                out[k] = v
    return out


def test_unit_matches_the_shipped_config(tree):
    unit = unit_values(tree)
    with open(os.path.join(tree, "etc/wsnode/config.toml")) as f:
        drain_ms = int(re.search(r"^drain_timeout_ms\s*=\s*(\d+)", f.read(), re.M).group(1))
    assert int(unit["TimeoutStopSec"]) * 1000 > drain_ms + 5000  # SIGTERM drains first
    assert unit["ExecStart"] == "/usr/bin/wsnode --config /etc/wsnode/config.toml"
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["KillSignal"] == "SIGTERM"
    assert unit["User"] == "wsnode" and unit["Restart"] == "on-failure"
    assert int(unit["LimitNOFILE"]) >= 100000
    for k in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert unit[k] == "yes", k
    assert unit["ProtectSystem"] == "strict"
    assert unit["StateDirectory"] == "wsnode"  # [history] state_dir = /var/lib/wsnode


def test_installed_node_runs_the_shipped_config(tree, tmp_path):
    pre = prefix_of(tree)
    wsnode = os.path.join(pre, "bin/wsnode")
    shipped = os.path.join(tree, "etc/wsnode/config.toml")
    r = subprocess.run([wsnode, "--config", shipped, "--check-config"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stderr and "[auth]" in r.stdout
    # the same config, pointed at this tree and a free port (the package's
    # own paths are checked in a fresh root by scripts/package-check)
    port = free_port()
    with open(shipped) as f:
        text = f.read()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    text = text.replace("/usr/share/wsnode/web", os.path.join(pre, "share/wsnode/web"))
    text = text.replace('"/var/lib/wsnode"', f'"{tmp_path}"')
    config = tmp_path / "config.toml"
    config.write_text(text)
    log = open(tmp_path / "wsnode.log", "wb")
    proc = subprocess.Popen([wsnode, "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                    return resp.status, resp.read()
            except OSError:
                return None, b""
        assert wait_until(lambda: get("/healthz")[0] == 200, timeout=20)
        status, body = get("/")
        assert status == 200 and b"wsnode" in body  # the installed web client
        proc.send_signal(signal.SIGHUP)  # what the unit's ExecReload sends
        assert wait_until(lambda: b'wsnode_config_reloads_total{result="ok"} 1'
                          in get("/metrics")[1], timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

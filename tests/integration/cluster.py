"""A 3-node cluster behind nginx for tests, driven through scripts/cluster
(so that the script and the deploy/ templates are tested too). Its backbone
is WSNODE_BACKBONE's: the ZeroMQ mesh (default) or, with "nats", as many
nats-servers as nodes (`scripts/cluster up N --nats`). `append`: a file of
extra TOML (e.g. [[namespace]] tables) added to every node's config
(`scripts/cluster up --append FILE`)."""
import json
import os
import signal
import subprocess
import sys

from harness import ROOT, SANITIZER_REPORTS, WSNODE, Node
from natsd import BACKBONE

SCRIPT = os.path.join(ROOT, "scripts", "cluster")


class Cluster:
    def __init__(self, run_dir, n=3, sets=(), backbone=None, append=None):
        self.dir = str(run_dir)
        self.n = n
        self.backbone = backbone or BACKBONE
        args = ["up", str(n), "--port", "0"] + (["--nats"] if self.backbone == "nats" else [])
        for s in sets:
            args += ["--set", s]
        if append is not None:
            args += ["--append", os.path.abspath(str(append))]
        try:
            self.run(*args)
        except Exception:
            self.run("down", check=False)  # what started before the failure, by PID
            raise
        self.reload()

    def run(self, *args, check=True):
        env = dict(os.environ, WSNODE_BIN=WSNODE)
        r = subprocess.run([sys.executable, SCRIPT, *args, "--dir", self.dir], env=env,
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"scripts/cluster {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r

    def reload(self):
        with open(os.path.join(self.dir, "cluster.json")) as f:
            self.state = json.load(f)
        self.nodes = [self.node_view(x) for x in self.state["nodes"]]
        self.port = self.state["nginx"]["port"]
        # nats-servers (--nats): {"id", "client", "route", "http", "pid", ...}
        self.nats = self.state.get("nats", [])

    @staticmethod
    def node_view(x):
        """A harness.Node bound to an already running node (for http/metrics)."""
        node = Node.__new__(Node)
        node.port = x["http"]
        node.id = x["id"]
        node.log_path = x["log"]
        node.proc = None
        node.expect_nonzero_exit = True
        node.pid_value = x["pid"]
        return node

    def ws_url(self, user):
        return f"ws://127.0.0.1:{self.port}/ws?user={user}"

    def node(self, node_id):
        return next(n for n in self.nodes if n.id == node_id)

    def index(self, node_id):
        return [n.id for n in self.nodes].index(node_id) + 1

    def kill(self, node_id):
        self.run("kill", str(self.index(node_id)))

    def stop(self, node_id):
        self.run("stop", str(self.index(node_id)))

    def start(self, node_id):
        self.run("start", str(self.index(node_id)))
        self.reload()

    def status(self):
        return json.loads(self.run("status", "--json").stdout)

    # nats-server I (1-based; --nats only): kill -9, SIGTERM, start again
    # with the same ports and data dir (waits until it is routed again)
    def nats_kill(self, i):
        self.run("nats-kill", str(i))
        self.reload()

    def nats_stop(self, i):
        self.run("nats-stop", str(i))
        self.reload()

    def nats_start(self, i):
        self.run("nats-start", str(i))
        self.reload()

    def finish(self):
        """Stops the cluster (what scripts/cluster leaves running is killed by
        PID, and fails the test), then looks for sanitizer reports in the
        nodes' logs."""
        leftover = self.down()
        for pid in leftover:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        assert not leftover, f"scripts/cluster down left {leftover} running"
        for n in self.nodes:
            with open(n.log_path, errors="replace") as f:
                log = f.read()
            for needle in SANITIZER_REPORTS:
                assert needle not in log, f"{n.id}: {needle}"

    def down(self):
        self.run("down", check=False)
        self.reload()
        return [p for p in [x["pid"] for x in self.state["nodes"]] + [self.state["nginx"]["pid"]]
                + [x["pid"] for x in self.nats] if p]

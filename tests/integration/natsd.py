"""nats-servers for tests that start their nodes themselves (harness.Node)
rather than through scripts/cluster: N servers of one routed JetStream
cluster on free loopback ports, stopped by PID whatever happens. The
processes, configs (deploy/nats-server.conf.template) and readiness checks
are scripts/cluster_nats.py's, the same code as `scripts/cluster up --nats`.

    with nats_servers(tmp_path, 3) as ns:
        node = Node(tmp_path / "n1", {**sections, **ns.node_sections(0)})

WSNODE_BACKBONE ("mesh" by default, or "nats") says which backbone the
multi-node tests run on (tests/CMakeLists.txt runs some of them on both).
"""
import contextlib
import os
import signal
import sys

from harness import ROOT, free_port

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import cluster_nats  # noqa: E402

BACKBONE = os.environ.get("WSNODE_BACKBONE", "mesh")
if BACKBONE not in ("mesh", "nats"):
    raise RuntimeError(f"WSNODE_BACKBONE={BACKBONE!r}: 'mesh' or 'nats'")


def on_nats():
    """True when the multi-node tests run on NATS (WSNODE_BACKBONE=nats)."""
    return BACKBONE == "nats"


class NatsServers:
    """`n` nats-servers under `workdir` (nats1.conf, nats1.log, nats1-data, ...),
    started and ready (routed, JetStream up) when the constructor returns."""

    def __init__(self, workdir, n=3, timeout=30):
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        # harness.free_port: never a port already given to a node of this run
        self.servers = cluster_nats.plan(n, self.dir, lambda i, base: free_port())
        for x in self.servers:
            cluster_nats.start(x)
        cluster_nats.wait_ready(self.servers, timeout)

    def urls(self, first=0):
        """Client URLs, server `first` (0-based) first."""
        return cluster_nats.client_urls(self.servers, first)

    def node_sections(self, first=0, replicas=None):
        """harness.Node config sections for a node on these servers ([mesh]
        bind and peers must stay empty: a config with both is refused)."""
        return {"backbone": {"kind": "nats"},
                "nats": {"servers": self.urls(first % len(self.servers)),
                         "replicas": replicas or min(3, len(self.servers))}}

    # ------------------------------------------------------------ faults (1-based)
    def kill(self, i):
        """kill -9 server `i`; its ports and data stay for `start`."""
        cluster_nats.signal_server(self.servers[i - 1], signal.SIGKILL)

    def stop(self, i):
        cluster_nats.signal_server(self.servers[i - 1], signal.SIGTERM)

    def start(self, i, timeout=30):
        """Starts server `i` again (same ports and data dir) and waits until it
        is routed to the others (and JetStream ready, while a majority runs)."""
        cluster_nats.start(self.servers[i - 1])
        cluster_nats.wait_ready(self.servers, timeout)

    def pids(self):
        return [x["pid"] for x in self.servers if cluster_nats.alive(x["pid"])]

    def finish(self):
        """Stops every server (SIGTERM, SIGKILL after 10 s); returns problems."""
        pids = self.pids()
        if cluster_nats.stop_all(self.servers, 10):
            return []
        return [f"nats-server needed SIGKILL (pids {pids}); see the logs in {self.dir}"]


@contextlib.contextmanager
def nats_servers(workdir, n=3, **kwargs):
    """NatsServers stopped by PID whatever happens, also when starting fails
    halfway (the servers that did start)."""
    ns = NatsServers.__new__(NatsServers)
    try:
        ns.__init__(workdir, n, **kwargs)
    except BaseException:
        cluster_nats.stop_all(getattr(ns, "servers", []), 5)
        raise
    try:
        yield ns
    finally:
        problems = ns.finish()
    assert not problems, problems

"""nats-servers for tests that start their nodes themselves (harness.Node)
rather than through scripts/cluster: N servers of one routed JetStream
cluster on free loopback ports, stopped by PID whatever happens. The
processes, configs (deploy/nats-server.conf.template) and readiness checks
are scripts/cluster_nats.py's, the same code as `scripts/cluster up --nats`.

    with nats_servers(tmp_path, 3) as ns:
        node = Node(tmp_path / "n1", {**sections, **ns.node_sections(0)})

WSNODE_BACKBONE ("mesh" by default, or "nats") says which backbone the
tests run on (tests/CMakeLists.txt runs some of them on both): the
multi-node ones through cluster.py, and the single nodes of conftest's
make_node on one nats-server shared by the session (SessionNats).
"""
import atexit
import contextlib
import itertools
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


class SessionNats:
    """One nats-server (JetStream, no cluster: replicas = 1) for the single
    nodes of a test session on NATS (conftest's make_node with
    WSNODE_BACKBONE=nats). Started by the first node that asks for it, in
    the directory `make_dir()` gives; stopped by PID by `finish` (conftest,
    at the end of the session, also when tests failed) or at interpreter
    exit (atexit), whichever comes first.

    Every node gets its own [nats] subject_prefix ("t1", "t2", ...), so its
    subjects and streams (<prefix>_H_<namespace>, <prefix>_K_<namespace>)
    are its own: nodes of different tests never see each other's messages
    or history. The prefix is in the node's config file, so a node stopped
    and started again (Node.stop, Node.start) finds its history again."""

    def __init__(self, make_dir):
        self._make_dir = make_dir
        self._servers = None
        self._failed = None
        self._prefixes = (f"t{i}" for i in itertools.count(1))

    def node_sections(self):
        """[backbone] and [nats] tables for a new node (starts the server
        on the first call)."""
        if self._failed is not None:
            raise RuntimeError(f"the session's nats-server did not start: {self._failed}")
        if self._servers is None:
            ns = NatsServers.__new__(NatsServers)
            self._servers = ns
            atexit.register(self.finish)
            try:
                ns.__init__(self._make_dir(), 1)
            except BaseException as e:
                self._failed = e
                self.finish()
                raise
        elif not self._servers.pids():
            raise RuntimeError("the session's nats-server is gone; see "
                               f"{self._servers.servers[0]['log']}")
        sections = self._servers.node_sections(0, replicas=1)
        sections["nats"]["subject_prefix"] = next(self._prefixes)
        return sections

    def streams(self, prefix):
        """{stream name: state} of the JetStream streams under subject prefix
        `prefix` (PREFIX_H_NS, PREFIX_K_NS), from the server's /jsz; a
        state has "messages", "first_seq", "last_seq", "num_subjects" (the
        channels, or keys, it holds; absent when none)."""
        status, body = cluster_nats.get_json(self._servers.servers[0],
                                             "/jsz?streams=true&config=true")
        assert status == 200, (status, body)
        return {s["name"]: s["state"]
                for account in body.get("account_details") or []
                for s in account.get("stream_detail") or []
                if s["name"].startswith(prefix + "_")}

    def finish(self):
        """Stops the server if it runs (SIGTERM, SIGKILL after 10 s);
        returns problems. Safe to call more than once."""
        ns, self._servers = self._servers, None
        atexit.unregister(self.finish)
        if ns is None:
            return []
        servers = getattr(ns, "servers", [])  # none if it failed in plan()
        pids = [x["pid"] for x in servers if cluster_nats.alive(x["pid"])]
        if cluster_nats.stop_all(servers, 10):
            return []
        return [f"nats-server needed SIGKILL (pids {pids}); see the logs in {ns.dir}"]


def single_node_sections(sections, session):
    """`sections` of a single node (conftest's make_node) on the session's
    nats-server when the tests run on NATS; as they are when not, or when
    the test chose the node's backbone itself ([backbone], or [mesh]
    bind/peers). A test's own [nats] keys win over the session's."""
    mesh = sections.get("mesh") or {}
    if not on_nats() or "backbone" in sections or mesh.get("bind") or mesh.get("peers"):
        return sections
    out = dict(sections)
    for name, keys in session.node_sections().items():
        out[name] = {**keys, **(sections.get(name) or {})}
    return out

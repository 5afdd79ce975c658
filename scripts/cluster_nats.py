"""The NATS half of scripts/cluster (`up N --nats`): N nats-server processes
forming one routed JetStream cluster on loopback, each with its own ports,
config, data directory and log under the run directory, started and
stopped by PID. tests/integration/natsd.py uses it too, for tests that
start their nodes without scripts/cluster.

A server is a dict, kept as is in cluster.json's "nats" list:
  {"id": "nats1", "client": 4222, "route": 6222, "http": 8222, "pid": 1234,
   "config": ".../nats1.conf", "log": ".../nats1.log", "data": ".../nats1-data"}
(`client`: where nodes connect; `route`: the cluster port; `http`:
monitoring). Configs are rendered from deploy/nats-server.conf.template.
Nothing here writes cluster.json: the caller saves after each start.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NATS_SERVER = (os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server")
               or "/usr/sbin/nats-server")
CLUSTER_NAME = "wsnode"
# fixed ports (scripts/cluster --port P, P != 0): the NATS defaults, server i
# on 4221+i (clients), 6221+i (routes), 8221+i (monitoring)
BASES = {"client": 4221, "route": 6221, "http": 8221}


def plan(n, run_dir, pick):
    """Records for `n` servers with their configs written; `pick(i, base)`
    gives server i's port for a base of BASES (a free one, or base + i).
    A new cluster: data dirs left by an earlier run in `run_dir` are
    emptied (JetStream would keep that run's peers and streams); `start`
    of a planned server keeps its data."""
    servers = []
    for i in range(1, n + 1):
        name = f"nats{i}"
        servers.append({"id": name, **{k: pick(i, b) for k, b in BASES.items()}, "pid": None,
                        "config": os.path.join(run_dir, f"{name}.conf"),
                        "log": os.path.join(run_dir, f"{name}.log"),
                        "data": os.path.join(run_dir, f"{name}-data")})
        shutil.rmtree(servers[-1]["data"], ignore_errors=True)
    routes = "\n".join(f"    nats-route://127.0.0.1:{x['route']}" for x in servers)
    with open(os.path.join(ROOT, "deploy", "nats-server.conf.template")) as f:
        template = f.read()
    for x in servers:
        text = template
        for k, v in {"NAME": x["id"], "CLIENT_PORT": x["client"], "HTTP_PORT": x["http"],
                     "ROUTE_PORT": x["route"], "DATA_DIR": x["data"],
                     "CLUSTER_NAME": CLUSTER_NAME, "ROUTES": routes}.items():
            text = text.replace("{{" + k + "}}", str(v))
        if n == 1:  # alone: no cluster block, or JetStream waits for routes forever
            text = re.sub(r"\ncluster \{.*?\n\}\n", "\n", text, flags=re.S)
        with open(x["config"], "w") as f:
            f.write(text)
    return servers


def client_urls(servers, first):
    """The nodes' `[nats] servers`: server `first` (0-based) first, then the
    others in order (a node connects to its own server while it is up)."""
    order = servers[first:] + servers[:first]
    return [f"nats://127.0.0.1:{x['client']}" for x in order]


def backbone_toml(servers, first, replicas=None):
    """The `[backbone]` and `[nats]` tables of node `first` (0-based)."""
    replicas = replicas or min(3, len(servers))
    urls = ", ".join(f'"{u}"' for u in client_urls(servers, first))
    return ('[backbone]\nkind = "nats"\n\n'
            "# the nats-servers, this node's own first; history streams keep\n"
            "# `replicas` copies (an ack: a majority of them holds the message)\n"
            f"[nats]\nservers = [{urls}]\nreplicas = {replicas}\n\n"
            "# no bind or peers on NATS; heartbeat_ms, subscribe_timeout_ms,\n"
            "# unsubscribe_linger_ms and hwm (--set mesh.KEY=...) tune the node view\n"
            "[mesh]")


# ------------------------------------------------------------------ processes

def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie we started is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def reap(pid, timeout):
    """Waits for `pid` to end; SIGKILL after `timeout` s. True if it ended by itself."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    while alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    return False


def start(x):
    """Starts server `x` (its config, data and log as planned); sets x["pid"]."""
    if alive(x["pid"]):
        raise RuntimeError(f"{x['id']} is already running (pid {x['pid']})")
    os.makedirs(x["data"], exist_ok=True)
    with open(x["log"], "ab") as log:
        p = subprocess.Popen([NATS_SERVER, "-c", x["config"]], stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    x["pid"] = p.pid
    return p


def signal_server(x, sig, timeout=20):
    """Sends `sig` to server `x` and waits for it to end (SIGKILL after
    `timeout` s); returns False if it was not running or needed SIGKILL."""
    if not alive(x["pid"]):
        x["pid"] = None
        return False
    try:
        os.kill(x["pid"], sig)
    except ProcessLookupError:  # ended meanwhile
        pass
    clean = reap(x["pid"], timeout)
    x["pid"] = None
    return clean


def stop_all(servers, timeout=20):
    """SIGTERM to every running server, then waits (SIGKILL after `timeout`
    s); returns True if none needed SIGKILL."""
    pids = [x["pid"] for x in servers if alive(x["pid"])]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # ended meanwhile
            pass
    clean = all([reap(pid, timeout) for pid in pids])
    for x in servers:
        x["pid"] = None
    return clean


# ------------------------------------------------------------------ monitoring

def get_json(x, path, timeout=2):
    """(status, parsed body) of GET `path` on server `x`'s monitoring port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{x['http']}{path}", timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None
    except (OSError, ValueError):
        return None, None


def routed_to(x):
    """Server IDs `x` has a route to (None when it does not answer)."""
    status, body = get_json(x, "/routez")
    if status != 200:
        return None
    return {r.get("remote_id") for r in body.get("routes") or []}


def check(servers):
    """What is not ready yet among the running servers (empty when all
    answer, each has a route to every other running one, and, while a
    majority runs, /healthz says JetStream has its meta leader)."""
    running = [x for x in servers if alive(x["pid"])]
    ids = {}
    for x in running:
        status, varz = get_json(x, "/varz")
        if status != 200:
            return [f"{x['id']} does not answer on 127.0.0.1:{x['http']}"]
        ids[x["id"]] = varz["server_id"]
    missing = []
    for x in running:
        want = {ids[y["id"]] for y in running if y is not x}
        have = routed_to(x) or set()
        if not want <= have:
            missing.append(f"{x['id']} has {len(have & want)} of {len(want)} routes")
    if missing or 2 * len(running) <= len(servers):
        return missing
    for x in running:
        status, body = get_json(x, "/healthz")
        if status != 200:
            missing.append(f"{x['id']} /healthz {status}: {body}")
    return missing


def wait_ready(servers, timeout=30):
    """Waits until `check` finds nothing; raises RuntimeError naming what is
    missing (or the server that died, with its log)."""
    deadline = time.monotonic() + timeout
    started = [x for x in servers if x["pid"]]
    while True:
        for x in started:
            if not alive(x["pid"]):
                raise RuntimeError(f"{x['id']} (pid {x['pid']}) died; see {x['log']}")
        missing = check(servers)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("nats-server not ready: " + "; ".join(missing)
                               + f" (logs: {os.path.dirname(servers[0]['log'])}/nats*.log)")
        time.sleep(0.1)


def status(x):
    """A row for `scripts/cluster status`."""
    up = alive(x["pid"])
    health = get_json(x, "/healthz")[0] if up else None
    routes = routed_to(x) if up else None
    return {"server": x["id"], "pid": x["pid"], "running": up, "client": x["client"],
            "route": x["route"], "http": x["http"], "healthz": health,
            "routes": None if routes is None else len(routes)}

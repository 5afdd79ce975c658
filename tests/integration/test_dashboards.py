"""The Grafana dashboard and the Prometheus alert rules (issue 32, part 5):
both parse, and every metric they name, every label they match or group on
and every label value they match exactly exists in a running node's
/metrics. A misspelt name or value in either file fails here."""
import json
import os
import re

import yaml

from harness import ROOT

DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "wsnode.json")
ALERTS = os.path.join(ROOT, "deploy", "prometheus", "wsnode-alerts.yml")

PROMETHEUS_MADE = {"up"}             # series Prometheus makes itself
TARGET_LABELS = {"job", "instance"}  # labels Prometheus adds to every scraped series
SEVERITIES = {"critical", "warning", "info"}

# ---------------------------------------------------------------- /metrics

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def exposition(text):
    """{name: {label: {values}}} for every name /metrics exposes: the names
    of its samples, and the names of families announced by a TYPE line
    without samples yet (for a histogram: its _bucket, _sum and _count, not
    the bare family name, which is no series in Prometheus)."""
    names = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            parts = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}
            for suffix in parts.get(kind, ("",)):
                names.setdefault(name + suffix, {})
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            labels = names.setdefault(m[1], {})
            for k, v in LABEL.findall(m[2] or ""):
                labels.setdefault(k, set()).add(v)
    return names


# ----------------------------------------------------------------- PromQL

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(r"(?<![a-zA-Z0-9_:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def parse(expr):
    """(metric names, [(name, [(label, op, value)])] selectors with matchers,
    grouping labels) of one PromQL expression. A name is an identifier that
    is not a keyword and not followed by "(" (a function)."""
    grouping = set()
    for m in GROUPING.finditer(expr):
        grouping |= {x.strip() for x in m[2].split(",") if x.strip()}
    rest = GROUPING.sub(" ", expr)  # "sum by (x) (...)": sum is then a function
    selectors = []
    for m in SELECTOR.finditer(rest):
        selectors.append((m[1], MATCHER.findall(m[2])))
    rest = SELECTOR.sub(lambda m: m[1] or "", rest)
    rest = re.sub(r"\[[^\]]*\]", "", rest)  # ranges: [5m], [$__rate_interval]
    rest = NUMBER.sub("", rest)
    names = set()
    for m in IDENT.finditer(rest):
        after = rest[m.end():].lstrip()
        if m[0] not in KEYWORDS and not after.startswith("("):
            names.add(m[0])
    assert all(s[0] in names for s in selectors if s[0]), expr
    return names, selectors, grouping


def problems(exprs, exposed):
    """What in `exprs` (PromQL, or Grafana's label_values(metric, label))
    does not exist in `exposed`; and the metric names checked."""
    out = []
    checked = set()
    for expr in exprs:
        label_query = None
        lv = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*", expr)
        if lv:
            expr, label_query = lv[1], lv[2]
        names, selectors, grouping = parse(expr)
        checked |= names
        for name in names:
            if name not in exposed and name not in PROMETHEUS_MADE:
                out.append(f"{name}: not in /metrics ({expr})")
        known = set(TARGET_LABELS) | {"le"}
        for name in names & exposed.keys():
            known |= exposed[name].keys()
        for label in grouping | ({label_query} if label_query else set()):
            if label not in known:
                out.append(f"label {label}: on none of {sorted(names)} ({expr})")
        for name, matchers in selectors:
            if name not in exposed:
                continue
            labels = exposed[name]
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in labels:
                    out.append(f"{name}{{{label}}}: no such label ({expr})")
                    continue
                wanted = []
                if op == "=":
                    wanted = [value]
                elif op == "=~" and re.fullmatch(r"[a-zA-Z0-9_|+.]+", value):
                    wanted = value.split("|")
                for v in wanted:
                    if v not in labels[label]:
                        out.append(f'{name}{{{label}="{v}"}}: no such value, have '
                                   f"{sorted(labels[label])} ({expr})")
    return out, checked


# ------------------------------------------------------------------ files

def dashboard_exprs(dashboard):
    """Every PromQL expression of the dashboard: panel targets (in rows
    too) and the query variables."""
    exprs = []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("expr"), str):
                exprs.append(x["expr"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(dashboard["panels"])
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


def load_dashboard():
    with open(DASHBOARD) as f:
        d = json.load(f)
    assert d["title"] and d["uid"] and d["schemaVersion"] >= 36
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    panels = [p for p in d["panels"] if p["type"] != "row"]
    panels += [p for r in d["panels"] if r["type"] == "row" for p in r.get("panels", [])]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for p in panels:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]
        assert "$instance" in "".join(t["expr"] for t in p["targets"]), p["title"]
    return d, len(panels)


def load_rules():
    with open(ALERTS) as f:
        doc = yaml.safe_load(f)
    rules = [r for g in doc["groups"] for r in g["rules"]]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    for r in rules:
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}, r["alert"]
        assert re.fullmatch(r"\d+[smh]", r["for"]), r["alert"]
        assert r["labels"]["severity"] in SEVERITIES, r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
    return rules


# ------------------------------------------------------------------ tests

def test_dashboard_and_alerts_name_only_exported_metrics(make_node):
    # Everything render_prometheus prints is unconditional today; the node
    # still runs a history and presence namespace so that metrics printed
    # only with them would be there.
    node = make_node(namespace=[{"name": "room", "history_size": 100, "presence": True}])
    status, body, _ = node.http("GET", "/metrics")
    assert status == 200
    exposed = exposition(body.decode())
    assert "wsnode_dropped_total" in exposed and "wsnode_hook_duration_seconds_bucket" in exposed
    assert "wsnode_hook_duration_seconds" not in exposed

    dashboard, panel_count = load_dashboard()
    rules = load_rules()
    dash_exprs = dashboard_exprs(dashboard)
    rule_exprs = [r["expr"] for r in rules]
    found, checked = problems(dash_exprs + rule_exprs, exposed)
    assert not found, "\n".join(found)
    wsnode_names = {n for n in checked if n.startswith("wsnode_")}
    # the extraction misses nothing a plain search for wsnode_ names finds
    plain = {m for e in dash_exprs + rule_exprs for m in re.findall(r"\bwsnode_[a-z0-9_]+", e)}
    assert plain == wsnode_names
    assert len(wsnode_names) >= 50 and panel_count >= 20 and len(rules) >= 10
    print(f"checked {len(checked)} metric names ({len(wsnode_names)} wsnode_*) in "
          f"{len(dash_exprs)} dashboard and {len(rule_exprs)} alert expressions against "
          f"{len(exposed)} names in /metrics")

    # The check itself catches what it is there for.
    for bad in ['rate(wsnode_conections_opened_total[5m])',
                'wsnode_dropped_total{reason="slow_consumers"}',
                'wsnode_hook_calls_total{result=~"ok|timed_out"}',
                'wsnode_closed_total{cause="1013"}',
                'sum by (reasons) (rate(wsnode_dropped_total[5m]))',
                'wsnode_hook_duration_seconds > 1',
                "label_values(wsnode_connection, instance)"]:
        assert problems([bad], exposed)[0], bad

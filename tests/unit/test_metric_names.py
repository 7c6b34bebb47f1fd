"""Every series BenchHub exports follows Prometheus's naming rules, and the Grafana dashboard
in docs/ graphs only series that exist.

The names are collected from the real registries: the hub's collector and each service's
metrics object (what ``/hub/metrics`` and ``/services/<name>/metrics`` serve), and JupyterHub's
own series (its module registers them in the default registry the hub serves).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import jupyterhub.metrics  # noqa: F401  (registers JupyterHub's series in the default registry)
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from bench_spawner.hub_metrics import HubMetrics
from benchhub.checkpoint_metrics import CheckpointMetrics
from benchhub.stop_reasons import STOP_REASONS
from hub_services.clusters.metrics import ClusterMetrics
from hub_services.egress.metrics import EgressMetrics
from hub_services.lifecycle.metrics import LifecycleMetrics
from hub_services.mounts.metrics import MountMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
# labels that would name a person or a workspace, or carry unbounded values
FORBIDDEN_LABELS = {"user", "username", "workspace", "name", "owner", "server", "host", "project"}
# words in a name that call for a base-unit suffix
UNIT_WORDS = {"duration": "_seconds", "time": "_seconds", "bytes": "_bytes", "size": "_bytes"}
SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def benchhub_registries(tmp_path) -> dict[str, CollectorRegistry]:
    hub = CollectorRegistry()
    hub.register(HubMetrics(catalogue=lambda: (("small",), ("jupyterlab",)), spawners=list))
    controller = SimpleNamespace(records={}, views={})
    return {
        "hub": hub,
        "lifecycle": LifecycleMetrics().registry,
        "checkpoints": CheckpointMetrics().registry,
        "egress": EgressMetrics(tmp_path).registry,
        "clusters": ClusterMetrics(controller).registry,
        "mounts": MountMetrics().registry,
    }


def families(tmp_path) -> dict[str, object]:
    found = {}
    for registry in benchhub_registries(tmp_path).values():
        for family in registry.collect():
            found[family.name] = family
    return found


def naming_problems(families) -> list[str]:
    """Each way a family breaks the rules (https://prometheus.io/docs/practices/naming/)."""
    problems = []
    for family in families:
        name = family.name
        if not re.fullmatch(r"benchhub_[a-z][a-z0-9_]*", name):
            problems.append(f"{name}: not benchhub_<snake_case>")
        if not family.documentation:
            problems.append(f"{name}: no help text")
        samples = {s.name for s in family.samples}
        if family.type == "counter" and not samples <= {f"{name}_total", f"{name}_created"}:
            problems.append(f"{name}: a counter's samples must end in _total: {samples}")
        if family.type != "counter" and name.endswith("_total"):
            problems.append(f"{name}: only counters end in _total")
        if family.type == "histogram" and not name.endswith(("_seconds", "_bytes")):
            problems.append(f"{name}: a histogram observes seconds or bytes; say which")
        for word, suffix in UNIT_WORDS.items():
            if word in name.split("_") and not name.endswith(suffix):
                problems.append(f"{name}: has {word!r}, so it ends in {suffix}")
        for sample in family.samples:
            labels = set(sample.labels) - {"le"}
            if labels & FORBIDDEN_LABELS:
                problems.append(f"{name}: label(s) {sorted(labels & FORBIDDEN_LABELS)}")
            if not all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in labels):
                problems.append(f"{name}: label names must be snake_case: {labels}")
    return problems


def test_every_benchhub_series_follows_the_naming_rules(tmp_path):
    assert not naming_problems(families(tmp_path).values())


def test_the_naming_rules_catch_what_they_are_meant_to():
    """The same rules on made-up bad series (so a passing run above means something)."""
    registry = CollectorRegistry()
    Counter("benchhub_spawns", "x", ["user"], registry=registry).labels("ann").inc()
    Histogram("benchhub_spawn_duration", "x", registry=registry)
    Gauge("benchhub_store_size", "x", registry=registry)
    Gauge("benchhub_stops_total", "x", registry=registry)
    Gauge("jupyterhub_like", "", registry=registry)
    problems = "\n".join(naming_problems(registry.collect()))
    for expected in (
        "benchhub_spawns: label(s) ['user']",
        "benchhub_spawn_duration: a histogram observes seconds or bytes",
        "benchhub_spawn_duration: has 'duration', so it ends in _seconds",
        "benchhub_store_size: has 'size', so it ends in _bytes",
        "benchhub_stops_total: only counters end in _total",
        "jupyterhub_like: not benchhub_<snake_case>",
        "jupyterhub_like: no help text",
    ):
        assert expected in problems


def exported(tmp_path) -> dict[str, set[str]]:
    """Every series name a dashboard may use -> its label names: BenchHub's and JupyterHub's
    (sample names included: _bucket, _count, _sum, _total)."""
    names: dict[str, set[str]] = {}
    sources = [*benchhub_registries(tmp_path).values(), REGISTRY]
    for registry in sources:
        for family in registry.collect():
            if not family.name.startswith(("benchhub_", "jupyterhub_")):
                continue
            labels = (
                set().union(*(set(s.labels) for s in family.samples)) if family.samples else set()
            )
            for sample_name in {family.name, *(s.name for s in family.samples)}:
                names.setdefault(sample_name, set()).update(labels)
            if family.type == "counter":
                names.setdefault(f"{family.name}_total", set()).update(labels)
    return names


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # a collapsed row keeps its panels inside
    return found


METRIC = re.compile(r"\b((?:benchhub|jupyterhub)_[a-z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def test_every_dashboard_expression_names_series_we_export_with_their_labels(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported(tmp_path)
    problems, used = [], set()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            found = METRIC.findall(expr)
            if not found:
                problems.append(f"{panel['title']}: {expr!r} names no BenchHub/JupyterHub series")
            labels_here = {"le", "job", "instance"}
            for name, matchers in found:
                used.add(name)
                if name not in known:
                    problems.append(f"{panel['title']}: {name} is not exported")
                    continue
                labels_here |= known[name]
                for label in MATCHER.findall(matchers or ""):
                    if label not in known[name]:
                        problems.append(f"{panel['title']}: {name} has no label {label}")
            for group in GROUPING.findall(expr):
                for label in filter(None, (part.strip() for part in group.split(","))):
                    if label not in labels_here:
                        problems.append(f"{panel['title']}: groups by unknown label {label}")
    assert not problems, "\n".join(problems)
    graphed = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in used}
    for family in families(tmp_path):  # and every BenchHub figure is on the dashboard
        assert family in graphed, f"{family} is not on the dashboard"


@pytest.mark.parametrize(
    "expr", ["sum(benchhub_no_such_series)", 'benchhub_workspaces_running{user="x"}']
)
def test_the_dashboard_check_refuses_what_is_not_exported(tmp_path, expr):
    known = exported(tmp_path)
    name, matchers = METRIC.findall(expr)[0]
    assert name not in known or any(label not in known[name] for label in MATCHER.findall(matchers))


def test_the_metrics_doc_explains_every_series_and_every_stop_reason(tmp_path):
    text = (REPO / "docs" / "metrics.md").read_text()
    for name, family in families(tmp_path).items():
        shown = f"{name}_total" if family.type == "counter" else name
        assert f"`{shown}`" in text, shown
    for reason in STOP_REASONS:
        assert f"| `{reason}` |" in text, reason

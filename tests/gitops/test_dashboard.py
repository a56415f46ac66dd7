"""The Grafana dashboard (deploy/grafana/cu-reconciler.json) queries only exported metrics.

The controller's metric names are a contract (docs/gitops.md "Metrics"). When the controller's
registry module exists it is the source of truth; until then, the contract list below is.
Every PromQL expression is scanned for ``cu_*`` identifiers; histogram series suffixes
(``_bucket``, ``_sum``, ``_count``) map to their histogram.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "cu-reconciler.json"

CONTRACT = frozenset(
    {
        "cu_reconcile_duration_seconds",
        "cu_reconcile_total",
        "cu_objects_applied_total",
        "cu_pool_capacity_cu",
        "cu_pool_guaranteed_cu",
        "cu_pool_admitted_cu",
        "cu_tenant_guaranteed_cu",
        "cu_tenant_admitted_cu",
        "cu_pending_claims",
        "cu_revision_info",
        "cu_git_fetch_errors_total",
        "cu_factor_table_age_seconds",
        "cu_factor_drift_alarms",
        "cu_pool_cost_per_hour",
        "cu_pool_cost_per_cu_hour",
        "cu_tenant_guaranteed_cost_per_month",
        "cu_tenant_in_use_cost_per_month",
        "cu_tenant_cost_per_million_tokens",
        "cu_guarantee_window_info",
        "cu_guarantee_next_edge_timestamp_seconds",
    }
)
_SUFFIXES = ("_bucket", "_sum", "_count")


def exported() -> frozenset[str]:
    """Metric names the controller exports: its registry when present, else the contract."""
    try:
        metrics = importlib.import_module("reconciler.controller.metrics")
    except ModuleNotFoundError:
        return CONTRACT
    # One registry per process: the controller's Metrics dataclass builds its own.
    registry = metrics.Metrics().registry
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":  # the family drops _total; the exposed series has it
            names.add(f"{family.name}_total")
        for sample in family.samples:
            names.add(sample.name)
    return frozenset(names)


def _expressions(node: Any) -> list[str]:
    out = []
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            out.append(node["expr"])
        if node.get("type") == "query" and isinstance(node.get("definition"), str):
            out.append(node["definition"])  # a query variable's PromQL
        for value in node.values():
            out += _expressions(value)
    elif isinstance(node, list):
        for value in node:
            out += _expressions(value)
    return out


def used(expr: str) -> set[str]:
    names = set(re.findall(r"\bcu_[a-z0-9_]+\b", expr))
    out = set()
    for name in names:
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        out.add(base if base in CONTRACT or name not in CONTRACT else name)
    return out


def test_every_query_uses_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = _expressions(dashboard)
    assert len(expressions) >= 10
    known = exported()
    seen: set[str] = set()
    for expr in expressions:
        names = used(expr)
        assert names, f"query without a cu_ metric: {expr}"
        unknown = {n for n in names if n not in known and f"{n}_total" not in known}
        assert not unknown, f"{expr} uses metrics the controller does not export: {unknown}"
        seen |= names
    assert seen == set(CONTRACT), f"not shown: {set(CONTRACT) - seen}"


def test_the_scanner_catches_an_unknown_metric() -> None:
    assert used("rate(cu_made_up_total[5m])") == {"cu_made_up_total"}
    assert used("histogram_quantile(0.9, cu_reconcile_duration_seconds_bucket)") == {
        "cu_reconcile_duration_seconds"
    }


def test_panels_have_unique_ids_and_a_cluster_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert "cluster" in {v["name"] for v in dashboard["templating"]["list"]}


def _samples(text: str) -> list[Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def test_the_cluster_flag_labels_every_series_the_dashboard_filters() -> None:
    """``cuctl run --cluster NAME`` is the one source of the ``cluster`` label: every exported
    series carries it; without the flag none does, and the dashboard's "All" matches."""
    from prometheus_client.exposition import generate_latest

    metrics = importlib.import_module("reconciler.controller.metrics")
    labelled = metrics.Metrics(cluster="dc-east")
    plain = metrics.Metrics()
    for m in (labelled, plain):
        m.reconcile_total.labels("Succeeded").inc()
        m.set_revision("applied", "abc")
        m.set_figures(
            {
                "pools": [
                    {
                        "name": "train",
                        "capacityCU": 8,
                        "guaranteedCU": 4,
                        "admittedCU": 2,
                        "pendingClaims": 1,
                    }
                ]
            }
        )
    samples = _samples(generate_latest(labelled.registry).decode())
    assert samples and all(s.labels.get("cluster") == "dc-east" for s in samples)
    assert {s.name for s in samples} >= {"cu_reconcile_total", "cu_pool_capacity_cu"}
    assert not any(
        "cluster" in s.labels for s in _samples(generate_latest(plain.registry).decode())
    )
    dashboard = json.loads(DASHBOARD.read_text())
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "cluster")
    assert variable["allValue"] == ".*" and variable["includeAll"]
    filtered = [e for e in _expressions(dashboard) if 'cluster=~"$cluster"' in e]
    assert filtered, "the dashboard filters on the label the controller exports"


def test_the_fleet_sets_the_cluster_flag_and_a_service_monitor_scrapes_it() -> None:
    from ruamel.yaml import YAML

    root = DASHBOARD.parents[1]
    docs = list(YAML(typ="safe").load_all((root / "argocd/fleet/applicationset.yaml").read_text()))
    appset = next(d for d in docs if d["kind"] == "ApplicationSet")
    patches = appset["spec"]["template"]["spec"]["source"]["kustomize"]["patches"]
    deployment = next(p for p in patches if p["target"]["kind"] == "Deployment")
    (op,) = YAML(typ="safe").load(deployment["patch"])
    assert op == {
        "op": "add",
        "path": "/spec/template/spec/containers/0/args/-",
        "value": "--cluster={{.name}}",
    }
    (monitor,) = YAML(typ="safe").load_all((root / "monitoring/servicemonitor.yaml").read_text())
    (service,) = YAML(typ="safe").load_all((root / "service.yaml").read_text())
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    ports = {p["name"] for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True, "our cluster label wins over a target label"


def test_the_service_monitor_scrapes_the_engine_exporter_too() -> None:
    """Engine mode (deploy/engine): the exporter's Service is selected by the same
    ServiceMonitor, on its `metrics` port, and selects only the exporter's Pods (never the
    controller's, whose Service selects app.kubernetes.io/name: cu-reconciler)."""
    from ruamel.yaml import YAML

    root = DASHBOARD.parents[1]
    (monitor,) = YAML(typ="safe").load_all((root / "monitoring/servicemonitor.yaml").read_text())
    docs = list(YAML(typ="safe").load_all((root / "engine/exporter.yaml").read_text()))
    service = next(d for d in docs if d["kind"] == "Service")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (controller_service,) = YAML(typ="safe").load_all((root / "service.yaml").read_text())
    assert not controller_service["spec"]["selector"].items() <= pod_labels.items()


def test_cost_and_window_series_carry_the_figures_and_the_cluster_label() -> None:
    """The cost panels and the window panels read series the controller fills from the same
    cost report and schedule the preview prints (docs/costs.md, docs/peaks-and-troughs.md)."""
    import datetime as dt

    from prometheus_client.exposition import generate_latest

    from reconciler.plan import costs, schedule

    metrics = importlib.import_module("reconciler.controller.metrics")
    m = metrics.Metrics(cluster="dc-east")
    report = costs.CostReport(
        "EUR",
        (costs.PoolCost("train", 4, 0, 10.0, 400.0, 0.025),),
        (costs.TenantCost("search", "train", 100.0, 50.0, 1825.0, 912.5),),
        (costs.TokenCost("search", "train", "decode", 0.42, 3.6e6, 60.0, "llama-70b"),),
    )
    edge = dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)
    windows = schedule.Schedule(
        edge - dt.timedelta(hours=1),
        (schedule.Scheduled("search", "train", "UTC", 100.0, (), None, 100.0, edge),),
    )
    m.set_costs(report)
    m.set_windows(windows)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in _samples(generate_latest(m.registry).decode())
        if s.name.startswith(("cu_pool_cost", "cu_tenant_", "cu_guarantee"))
    }
    pool = (("cluster", "dc-east"), ("currency", "EUR"), ("pool", "train"))
    tenant = (("cluster", "dc-east"), ("currency", "EUR"), ("pool", "train"), ("tenant", "search"))
    assert got[("cu_pool_cost_per_cu_hour", pool)] == 0.025
    assert got[("cu_pool_cost_per_hour", pool)] == 10.0
    assert got[("cu_tenant_guaranteed_cost_per_month", tenant)] == 1825.0
    assert got[("cu_tenant_in_use_cost_per_month", tenant)] == 912.5
    tokens = (
        ("cluster", "dc-east"),
        ("currency", "EUR"),
        ("pool", "train"),
        ("tenant", "search"),
        ("workload_class", "decode"),
    )
    assert got[("cu_tenant_cost_per_million_tokens", tokens)] == 0.42
    window = (("cluster", "dc-east"), ("pool", "train"), ("tenant", "search"), ("window", ""))
    assert got[("cu_guarantee_window_info", window)] == 1.0
    assert got[("cu_guarantee_next_edge_timestamp_seconds", (("cluster", "dc-east"),))] == (
        edge.timestamp()
    )
    # No DeviceCosts any more: the cost series go, none is left stale.
    m.set_costs(None)
    assert not [s for s in _samples(generate_latest(m.registry).decode()) if "cost" in s.name]

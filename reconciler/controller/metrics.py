"""Prometheus metrics of the controller, in a registry of its own, and the HTTP endpoints.

Names are a contract (the Grafana dashboard and Argo CD health checks read them). One
registry per process (not the global default) so tests and several controllers in one
process do not collide, and so only our series are exported.

The ``cluster`` label comes from one place: ``cuctl run --cluster NAME`` (the fleet
ApplicationSet sets it per cluster). It is a constant label on every exported series, so one
Prometheus can tell clusters apart (the dashboard's ``$cluster``); without the flag no series
carries it and the dashboard's "All" (``.*``) still matches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import Metric

from reconciler.controller import httpserver
from reconciler.plan import costs, schedule


class _ConstantLabels:
    """A collector that re-exports another registry's samples with constant labels added."""

    def __init__(self, inner: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._inner = inner
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            if not self._labels:
                yield family
                continue
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                s._replace(labels={**self._labels, **s.labels}) for s in family.samples
            ]
            yield labelled


@dataclass
class Metrics:
    cluster: str | None = None
    """``cuctl run --cluster``: the constant ``cluster`` label of every series (None: none)."""
    registry: CollectorRegistry = field(init=False)
    """What ``/metrics`` exports: the series below, labelled with ``cluster``."""

    def __post_init__(self) -> None:
        r = CollectorRegistry()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(
            _ConstantLabels(r, {"cluster": self.cluster} if self.cluster else {})
        )
        self.reconcile_duration = Histogram(
            "cu_reconcile_duration_seconds",
            "Duration of one reconcile, by result.",
            ["result"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.reconcile_total = Counter(
            "cu_reconcile_total", "Reconciles, by result (a Reason).", ["result"], registry=r
        )
        self.objects_applied = Counter(
            "cu_objects_applied_total",
            "Objects written, by kind and action (created, configured, replaced, deleted).",
            ["kind", "action"],
            registry=r,
        )
        self.pool_capacity = Gauge("cu_pool_capacity_cu", "CU published.", ["pool"], registry=r)
        self.pool_guaranteed = Gauge(
            "cu_pool_guaranteed_cu", "CU guaranteed to tenants.", ["pool"], registry=r
        )
        self.pool_admitted = Gauge("cu_pool_admitted_cu", "CU admitted.", ["pool"], registry=r)
        self.tenant_guaranteed = Gauge(
            "cu_tenant_guaranteed_cu", "A tenant's guaranteed CU.", ["tenant", "pool"], registry=r
        )
        self.tenant_admitted = Gauge(
            "cu_tenant_admitted_cu", "A tenant's admitted CU.", ["tenant", "pool"], registry=r
        )
        self.pending_claims = Gauge(
            "cu_pending_claims", "Claims not admitted.", ["pool"], registry=r
        )
        self.revision_info = Gauge(
            "cu_revision_info",
            "1 for the desired (newest fetched) and the applied revision.",
            ["kind", "revision"],
            registry=r,
        )
        self.git_fetch_errors = Counter(
            "cu_git_fetch_errors_total", "Failed fetches of the Git source.", registry=r
        )
        self.factor_table_age = Gauge(
            "cu_factor_table_age_seconds",
            "Seconds since the last commit that changed a factor table.",
            registry=r,
        )
        self.factor_drift_alarms = Gauge(
            "cu_factor_drift_alarms",
            "Drift alarms in the newest factor write-back commit, by device model.",
            ["model"],
            registry=r,
        )

        self.condition = Gauge(
            "cu_condition",
            "1 for the CUSync's conditions as they are (kstatus: Ready, Reconciling, Stalled).",
            ["type", "status", "reason"],
            registry=r,
        )
        self.consecutive_failures = Gauge(
            "cu_reconcile_consecutive_failures",
            "Failed reconciles in a row (0 after a success); Stalled at the configured count.",
            registry=r,
        )
        self.suspended = Gauge(
            "cu_suspended", "1 while the CUSync's spec.suspend is true.", registry=r
        )
        self.apiserver_up = Gauge(
            "cu_apiserver_up",
            "0 while the apiserver (or etcd behind it) does not answer, else 1.",
            registry=r,
        )
        self.apiserver_up.set(1)
        self.apiserver_errors = Counter(
            "cu_apiserver_errors_total",
            "Requests to the apiserver that failed after the transport's retries.",
            registry=r,
        )
        self.observe_reads = Counter(
            "cu_observe_reads_total",
            "Reads of the cluster by reconciles, by source: cache (the watches' stores) or "
            "list (a full list: leading anew, the resync, or the stores not in step).",
            ["source"],
            registry=r,
        )
        self.apiserver_outage_seconds = Gauge(
            "cu_apiserver_last_outage_seconds",
            "Length of the last apiserver outage that ended.",
            registry=r,
        )
        self.fence_findings = Gauge(
            "cu_fence_findings", "Claims around the fence (not ours, tolerating it).", registry=r
        )
        self.shortfall = Gauge(
            "cu_promise_shortfall_cu",
            "CU promised but not deliverable now (guarantees, running pinned claims).",
            ["tenant", "pool"],
            registry=r,
        )

        # Showback (docs/costs.md): the figures `cuctl plan` shows, from the same functions.
        self.pool_cost_per_hour = Gauge(
            "cu_pool_cost_per_hour",
            "What a pool's priced devices cost per hour (DeviceCosts).",
            ["pool", "currency"],
            registry=r,
        )
        self.pool_cost_per_cu_hour = Gauge(
            "cu_pool_cost_per_cu_hour",
            "A pool's cost per CU-hour: its devices' cost over the CU it can sell.",
            ["pool", "currency"],
            registry=r,
        )
        self.tenant_guaranteed_cost = Gauge(
            "cu_tenant_guaranteed_cost_per_month",
            "What a tenant's guaranteed CU in force costs per month (730 h).",
            ["tenant", "pool", "currency"],
            registry=r,
        )
        self.tenant_in_use_cost = Gauge(
            "cu_tenant_in_use_cost_per_month",
            "What the CU admitted to a tenant costs per month (730 h).",
            ["tenant", "pool", "currency"],
            registry=r,
        )
        self.tenant_token_cost = Gauge(
            "cu_tenant_cost_per_million_tokens",
            "What a million tokens of a workload class cost a tenant in a pool, at the class's "
            "p99 target with the CU fully used (pools that sell atSLO factors).",
            ["tenant", "pool", "workload_class", "currency"],
            registry=r,
        )
        # Peaks and troughs (docs/peaks-and-troughs.md).
        self.guarantee_window = Gauge(
            "cu_guarantee_window_info",
            "1 for the guarantee window in force per scheduled tenant and pool "
            '(window="" when none: the base guarantee holds).',
            ["tenant", "pool", "window"],
            registry=r,
        )
        self.guarantee_next_edge = Gauge(
            "cu_guarantee_next_edge_timestamp_seconds",
            "Unix time of the next guarantee window edge (0: none), when the controller "
            "reconciles again without a commit.",
            registry=r,
        )

    def set_costs(self, report: costs.CostReport | None) -> None:
        """Cost gauges from the plan's cost report (all cleared when none is declared)."""
        for gauge in (
            self.pool_cost_per_hour,
            self.pool_cost_per_cu_hour,
            self.tenant_guaranteed_cost,
            self.tenant_in_use_cost,
            self.tenant_token_cost,
        ):
            gauge.clear()
        if report is None:
            return
        cur = report.currency
        for p in report.pools:
            self.pool_cost_per_hour.labels(p.pool, cur).set(p.cost_per_hour)
            if p.cost_per_cu_hour is not None:
                self.pool_cost_per_cu_hour.labels(p.pool, cur).set(p.cost_per_cu_hour)
        for t in report.tenants:
            self.tenant_guaranteed_cost.labels(t.tenant, t.pool, cur).set(t.guaranteed_per_month)
            self.tenant_in_use_cost.labels(t.tenant, t.pool, cur).set(t.in_use_per_month)
        for c in report.tokens:
            self.tenant_token_cost.labels(c.tenant, c.pool, c.workload_class, cur).set(
                c.per_million
            )

    def set_windows(self, windows: schedule.Schedule) -> None:
        self.guarantee_window.clear()
        for row in windows.rows:
            self.guarantee_window.labels(row.tenant, row.pool, row.in_force or "").set(1)
        edge = windows.next_edge
        self.guarantee_next_edge.set(edge.timestamp() if edge is not None else 0)

    def set_conditions(self, status: Mapping[str, Any]) -> None:
        self.condition.clear()
        for c in status.get("conditions") or ():
            self.condition.labels(c.get("type"), c.get("status"), c.get("reason")).set(1)

    def set_audit(self, status: Mapping[str, Any]) -> None:
        """Gauges of what the plan found in the cluster (from any reconcile that planned)."""
        self.fence_findings.set(len(status.get("fenceFindings") or ()))
        self.set_shortfalls(status)

    def set_shortfalls(self, status: Mapping[str, Any]) -> None:
        """CU not deliverable per tenant and pool, from a ``shortfalls`` list."""
        self.shortfall.clear()
        totals: dict[tuple[str, str], float] = {}
        for x in status.get("shortfalls") or ():
            key = (str(x["tenant"]), str(x["pool"]))
            totals[key] = totals.get(key, 0.0) + float(x["promisedCU"]) - float(x["deliverableCU"])
        for (tenant, pool), cu in totals.items():
            self.shortfall.labels(tenant, pool).set(cu)

    def set_revision(self, kind: str, revision: str) -> None:
        """Exactly one series per kind: the old one is removed when the revision moves."""
        for labels in list(self._series(self.revision_info)):
            if labels.get("kind") == kind and labels.get("revision") != revision:
                self.revision_info.remove(kind, labels["revision"])
        self.revision_info.labels(kind=kind, revision=revision).set(1)

    @staticmethod
    def _series(metric: Any) -> list[dict[str, str]]:
        return [
            dict(sample.labels)
            for fam in metric.collect()
            for sample in fam.samples
            if sample.labels
        ]

    def set_figures(self, status: Mapping[str, Any]) -> None:
        """Gauges from the CUSync status figures (the same numbers users see there)."""
        for gauge in (
            self.pool_capacity,
            self.pool_guaranteed,
            self.pool_admitted,
            self.pending_claims,
            self.tenant_guaranteed,
            self.tenant_admitted,
        ):
            gauge.clear()
        for p in status.get("pools") or ():
            self.pool_capacity.labels(p["name"]).set(p["capacityCU"])
            self.pool_guaranteed.labels(p["name"]).set(p["guaranteedCU"])
            self.pool_admitted.labels(p["name"]).set(p["admittedCU"])
            self.pending_claims.labels(p["name"]).set(p["pendingClaims"])
        for t in status.get("tenants") or ():
            self.tenant_guaranteed.labels(t["name"], t["pool"]).set(t["guaranteedCU"])
            self.tenant_admitted.labels(t["name"], t["pool"]).set(t["admittedCU"])

    def set_engine_report(self, report: Mapping[str, Any]) -> None:
        """Gauges from a ``CUEngineStatus`` report (engine mode, ``cuctl export``): the same
        series a controller exports from its CUSync status, the render's revision as the
        applied one. Fence findings are not set: a render does not read the live cluster."""
        self.set_figures(report)
        self.set_shortfalls(report)
        self.set_revision("applied", str(report.get("revision", "")))

    def set_drift(self, alarms: Mapping[str, int]) -> None:
        self.factor_drift_alarms.clear()
        for model, count in alarms.items():
            self.factor_drift_alarms.labels(model).set(count)


LIMITS = httpserver.Limits(max_body=4096, max_connections=16)
"""Scrapes and probes are GETs without a body; a few at a time."""


def serve(
    metrics: Metrics,
    port: int,
    *,
    ready: Callable[[], bool],
    healthy: Callable[[], bool],
    host: str = "127.0.0.1",
    tls: httpserver.TLS | None = None,
) -> httpserver.Server:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on a daemon thread; return the server."""

    def handle(req: httpserver.Request) -> httpserver.Response:
        if req.path.startswith("/metrics"):
            return httpserver.Response(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
        if req.path.startswith("/healthz"):
            ok = healthy()
            return httpserver.Response(200 if ok else 500, b"ok\n" if ok else b"unhealthy\n")
        if req.path.startswith("/readyz"):
            ok = ready()
            return httpserver.Response(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
        return httpserver.Response(404, b"not found\n")

    return httpserver.start(handle, host, port, "metrics", LIMITS, tls)

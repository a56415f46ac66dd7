"""Shared set-up for tests with real kubelets: nodes, vendor slices, a desired state, apply.

Used by tests/integration/test_pods_*.py and bench/bench_kubelet.py. Objects are applied
with a server-side apply as the admin (the admission policy is left out, as in
tests/integration/test_plan_cluster.py: it would deny the admin's claims).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import cu_example as ex
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler import observe
from reconciler import plan as planning
from reconciler.devcluster import rawapi, workloads
from reconciler.model import kinds
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.observe import cluster

FIELD_MANAGER = "cu-reconciler-test"


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return kinds.of(obj["kind"]).object_path(meta["name"], meta.get("namespace") or "")


def desired_state(
    run: str, namespace: str, whole_nodes: str, frac_nodes: str, claims: Sequence[Any]
) -> st.DesiredState:
    """A Whole pool on nodes labelled ``cu-it=<whole_nodes>``, a Fractional one (minStep 5)
    on ``cu-it=<frac_nodes>``; both NVIDIA."""
    pools = (
        ex.pool(
            f"train-{run}",
            {
                "selector": {
                    "vendors": ["nvidia"],
                    "nodeSelector": {"matchLabels": {"cu-it": whole_nodes}},
                }
            },
        ),
        ex.pool(
            f"infer-{run}",
            {
                "selector": {
                    "vendors": ["nvidia"],
                    "nodeSelector": {"matchLabels": {"cu-it": frac_nodes}},
                },
                "sharing": {"mode": "Fractional", "minStep": 5},
            },
        ),
    )
    tenants = (ex.tenant("t", {"namespaces": [namespace], "priority": 10, "mayBorrow": True}),)
    base = ex.desired(pools=pools, tenants=tenants, claims=tuple(claims))
    return st.DesiredState(
        revision=base.revision,
        settings=ex.settings([namespace]),
        policy=base.policy,
        adapters=base.adapters,
        pools=base.pools,
        tenants=base.tenants,
        claims=base.claims,
        factor_tables=base.factor_tables,
    )


def _ours(obj: Mapping[str, Any], run: str, namespace: str) -> bool:
    meta = obj.get("metadata") or {}
    component = (meta.get("labels") or {}).get("cu-reconciler.io/component")
    return (
        run in json.dumps(obj) or meta.get("namespace") == namespace or component == "vendor-class"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Fixed:
    """A Source returning one read (so the live read's time and Leases are kept)."""

    raw: obs.RawObjects

    def read(self) -> obs.RawObjects:
        return self.raw


def plan(api: ApiClient, desired: st.DesiredState, run: str, namespace: str) -> planning.Plan:
    """Plan against the live cluster, with only this run's owned objects as the live side."""
    raw = cluster.Cluster(api).read()
    raw = dataclasses.replace(raw, owned=tuple(o for o in raw.owned if _ours(o, run, namespace)))
    return planning.plan(desired, observe.observe(Fixed(raw), desired))


def apply_plan(api: ApiClient, result: planning.Plan, run: str, namespace: str) -> list[str]:
    """Server-side apply this run's objects (no admission policy); return their paths."""
    made = []
    for obj in result.objects:
        if obj["kind"].startswith("Validating") or not _ours(obj, run, namespace):
            continue
        rawapi.request(
            api,
            "PATCH",
            object_path(obj),
            body=dict(obj),
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type=rawapi.APPLY_PATCH,
        )
        made.append(object_path(obj))
    return made


def pod(name: str, claim: str | None) -> dict[str, Any]:
    body = workloads.pod(name, claims={"cu": claim} if claim else None)
    body["spec"]["automountServiceAccountToken"] = False
    return body


def phase(api: ApiClient, namespace: str, name: str) -> str | None:
    try:
        return str(workloads.get(api, namespace, "Pod", name).get("status", {}).get("phase"))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_running(
    api: ApiClient, namespace: str, name: str, timeout: float = 120.0
) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        obj = workloads.get(api, namespace, "Pod", name)
        return obj if obj.get("status", {}).get("phase") == "Running" else None

    try:
        return workloads.wait_for(running, timeout=timeout, what=f"Pod {namespace}/{name} Running")
    except AssertionError:
        events = rawapi.request(
            api,
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            query={"fieldSelector": f"involvedObject.name={name}"},
        )
        msgs = [f"{e.get('reason')}: {e.get('message')}" for e in events.get("items", [])]
        raise AssertionError(f"Pod {name} not Running; events: {msgs}") from None


def wait_gone(api: ApiClient, namespace: str, name: str, timeout: float = 120.0) -> None:
    workloads.wait_for(
        lambda: phase(api, namespace, name) is None,
        timeout=timeout,
        what=f"Pod {namespace}/{name} deleted",
    )


def delete_pod(api: ApiClient, namespace: str, name: str) -> None:
    rawapi.delete(api, f"/api/v1/namespaces/{namespace}/pods/{name}")

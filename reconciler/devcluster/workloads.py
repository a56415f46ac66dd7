"""ResourceClaims and Pods that make kube-scheduler allocate devices, and waits on the outcome.

Allocation only happens while the scheduler places a Pod that references a claim, so a test
of "does this slice get allocated" is always: claim + Pod, then poll (with a deadline, never a
sleep) until the Pod is bound or the scheduler reports it unschedulable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler.devcluster import rawapi

T = TypeVar("T")
#: An image reference that no kubelet will ever pull: these Pods are only scheduled.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


class WaitTimeout(AssertionError):
    """A polled condition did not hold before the deadline; says what was last seen."""


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2, what: str = ""
) -> T:
    """Call ``probe`` until it returns something other than None/False; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what or probe}")
        time.sleep(interval)


FENCE_TOLERATION: Mapping[str, str] = {
    "key": "cu-reconciler.io/managed",
    "operator": "Exists",
    "effect": "NoSchedule",
}
"""Tolerates the default fence taint (ClusterSettings ``fence.taintKey``): what tests use to
show that a tenant may not take a fenced vendor device."""


def resource_claim(
    name: str,
    device_class: str,
    *,
    request: str = "gpu",
    selectors: Sequence[str] = (),
    capacity: Mapping[str, str] | None = None,
    count: int = 1,
    tolerations: Sequence[Mapping[str, str]] = (),
    namespace: str | None = None,
) -> dict[str, Any]:
    """A v1 ResourceClaim body with one ``exactly`` request."""
    exactly: dict[str, Any] = {"deviceClassName": device_class, "count": count}
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": s}} for s in selectors]
    if capacity:
        exactly["capacity"] = {"requests": dict(capacity)}
    if tolerations:
        exactly["tolerations"] = [dict(t) for t in tolerations]
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": metadata,
        "spec": {"devices": {"requests": [{"name": request, "exactly": exactly}]}},
    }


def pod(
    name: str,
    *,
    claims: Mapping[str, str] | None = None,
    templates: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod whose one container uses the given claims (ref name -> ResourceClaim name) and
    claim templates (ref name -> ResourceClaimTemplate name)."""
    refs = [{"name": ref, "resourceClaimName": c} for ref, c in (claims or {}).items()]
    refs += [{"name": ref, "resourceClaimTemplateName": t} for ref, t in (templates or {}).items()]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": PAUSE_IMAGE,
                    "resources": {"claims": [{"name": r["name"]} for r in refs]},
                }
            ],
            "resourceClaims": refs,
            "terminationGracePeriodSeconds": 0,
        },
    }


def create(api: ApiClient, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST a namespaced object (Pod, ResourceClaim, ResourceClaimTemplate) and return it."""
    return dict(rawapi.request(api, "POST", _collection(namespace, body), body=dict(body)))


def get(api: ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any]:
    path = {
        "Pod": f"/api/v1/namespaces/{namespace}/pods/{name}",
        "ResourceClaim": f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}",
    }[kind]
    return dict(rawapi.request(api, "GET", path))


def wait_scheduled(
    api: ApiClient, namespace: str, name: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Wait until the Pod is bound to a node; return the Pod."""

    def bound() -> dict[str, Any] | None:
        p = get(api, namespace, "Pod", name)
        return p if p["spec"].get("nodeName") else None

    return wait_for(bound, timeout=timeout, what=f"pod {namespace}/{name} to be scheduled")


def wait_unschedulable(
    api: ApiClient, namespace: str, name: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Wait until the scheduler marks the Pod unschedulable; return its PodScheduled condition."""

    def condition() -> dict[str, Any] | None:
        p = get(api, namespace, "Pod", name)
        for c in p.get("status", {}).get("conditions", []):
            if (
                c["type"] == "PodScheduled"
                and c["status"] == "False"
                and c.get("reason") == "Unschedulable"
            ):
                return dict(c)
        return None

    return wait_for(condition, timeout=timeout, what=f"pod {namespace}/{name} to be unschedulable")


def _collection(namespace: str, body: Mapping[str, Any]) -> str:
    kind = body["kind"]
    if kind == "Pod":
        return f"/api/v1/namespaces/{namespace}/pods"
    plural = {"ResourceClaim": "resourceclaims", "ResourceClaimTemplate": "resourceclaimtemplates"}[
        kind
    ]
    return f"/apis/resource.k8s.io/v1/namespaces/{namespace}/{plural}"


def force_delete_pods(api: ApiClient, namespace: str) -> int:
    """Delete every Pod of ``namespace`` at once (grace period 0); returns how many.

    Without a kubelet nothing ever confirms a bound Pod's termination, so an ordinary delete
    leaves it Terminating forever, with its ResourceClaims reserved and its namespace stuck.
    """
    pods = rawapi.request(api, "GET", f"/api/v1/namespaces/{namespace}/pods")["items"]
    for pod in pods:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
        try:
            rawapi.request(
                api,
                "DELETE",
                path,
                body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
    return len(pods)

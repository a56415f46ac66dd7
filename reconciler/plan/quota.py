"""Tenant limits Kubernetes enforces: a ResourceQuota on our DeviceClasses per namespace.

Kubernetes 1.37 quota counts DRA devices per DeviceClass in a namespace
(``<class>.deviceclass.resource.k8s.io/devices``, enforced at ResourceClaim creation; see
/work/shared/research/dra-and-apiserver.md, "ResourceQuota on DRA device classes"). It counts
devices, not CU, so the reconciler's admission still decides what fits a tenant's CU limit;
the quota then allows each managed namespace exactly the devices of what was admitted there:
every rendered ResourceClaim, and every ResourceClaimTemplate times its replicas. A Pod
beyond a template's replicas gets no claim (kube-controller-manager's create is refused
``exceeded quota``), so templates cannot take a tenant past its limit. Every pool class
appears in every managed namespace's quota, at 0 where nothing was admitted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.model import ownership

NAME = "cu-reconciler-limits"
REPLICAS_ANNOTATION = f"{ownership.PREFIX}/replicas"


def resource_name(device_class: str) -> str:
    return f"{device_class}.deviceclass.resource.k8s.io/devices"


def _devices(spec: Mapping[str, Any], classes: set[str]) -> dict[str, int]:
    """Devices one claim spec requests per class (a firstAvailable list: its largest)."""
    out: dict[str, int] = defaultdict(int)
    for request in (spec.get("devices") or {}).get("requests") or ():
        subs = [request["exactly"]] if "exactly" in request else request.get("firstAvailable", [])
        most: dict[str, int] = {}
        for sub in subs:
            name = sub.get("deviceClassName")
            if name in classes:
                most[name] = max(most.get(name, 0), int(sub.get("count", 1)))
        for name, n in most.items():
            out[name] += n
    return out


def build(
    objects: Iterable[Mapping[str, Any]],
    namespaces: Sequence[str],
    pool_classes: Sequence[str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One ResourceQuota per managed namespace from the rendered claims and templates."""
    classes = set(pool_classes)
    used: dict[str, dict[str, int]] = {ns: dict.fromkeys(pool_classes, 0) for ns in namespaces}
    for obj in objects:
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace", ""))
        if kind == "ResourceClaim":
            spec, times = obj.get("spec") or {}, 1
        elif kind == "ResourceClaimTemplate":
            spec = (obj.get("spec") or {}).get("spec") or {}
            times = int((meta.get("annotations") or {}).get(REPLICAS_ANNOTATION, "1"))
        else:
            continue
        for name, n in _devices(spec, classes).items():
            used.setdefault(ns, dict.fromkeys(pool_classes, 0))[name] += n * times
    return [
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": NAME,
                "namespace": ns,
                "labels": dict(sorted({**labels, ownership.COMPONENT_LABEL: "quota"}.items())),
                "annotations": dict(annotations),
            },
            "spec": {"hard": {resource_name(c): str(n) for c, n in sorted(used[ns].items())}},
        }
        for ns in sorted(used)
    ]

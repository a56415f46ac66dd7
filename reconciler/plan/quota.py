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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler.model import ownership

NAME = "cu-reconciler-limits"
REPLICAS_ANNOTATION = f"{ownership.PREFIX}/replicas"


def resource_name(device_class: str) -> str:
    return f"{device_class}.deviceclass.resource.k8s.io/devices"


def _devices(spec: Mapping[str, Any]) -> dict[str, int]:
    """Devices one claim spec requests per class (a firstAvailable list: its largest)."""
    out: dict[str, int] = defaultdict(int)
    for request in (spec.get("devices") or {}).get("requests") or ():
        subs = [request["exactly"]] if "exactly" in request else request.get("firstAvailable", [])
        most: dict[str, int] = {}
        for sub in subs:
            name = str(sub.get("deviceClassName"))
            most[name] = max(most.get(name, 0), int(sub.get("count", 1)))
        for name, n in most.items():
            out[name] += n
    return out


Requested = tuple[str, tuple[tuple[str, int], ...]] | None
"""A claim's or template's namespace and the devices it takes per class (None: neither)."""


def requested(obj: Mapping[str, Any]) -> Requested:
    """What one object adds to the quotas :func:`build` writes (every class it names)."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    if kind == "ResourceClaim":
        spec, times = obj.get("spec") or {}, 1
    elif kind == "ResourceClaimTemplate":
        spec = (obj.get("spec") or {}).get("spec") or {}
        times = int((meta.get("annotations") or {}).get(REPLICAS_ANNOTATION, "1"))
    else:
        return None
    return str(meta.get("namespace", "")), tuple(
        (name, n * times) for name, n in _devices(spec).items()
    )


def build(
    objects: Iterable[Mapping[str, Any]],
    namespaces: Sequence[str],
    pool_classes: Sequence[str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    per_object: Callable[[Mapping[str, Any]], Requested] = requested,
) -> list[dict[str, Any]]:
    """One ResourceQuota per managed namespace from the rendered claims and templates.
    ``per_object`` is :func:`requested`, or the same remembered per object."""
    classes = set(pool_classes)
    used: dict[str, dict[str, int]] = {ns: dict.fromkeys(pool_classes, 0) for ns in namespaces}
    for obj in objects:
        found = per_object(obj)
        if found is None:
            continue
        ns, taken = found
        for name, n in taken:
            if name in classes:
                used.setdefault(ns, dict.fromkeys(pool_classes, 0))[name] += n
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

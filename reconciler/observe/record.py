"""The committed snapshot: what a live cluster holds, as deterministic text for Git.

A GitOps engine renders from a commit alone, so the observed devices it plans against must be
committed too (``ClusterSettings.spec.layout.snapshot``). :func:`text` turns what a
:class:`~reconciler.observe.sources.Source` read into a ``kind: List`` whose bytes depend only
on what planning reads: the same cluster state gives the same file, so refreshing the snapshot
makes a commit only when something that matters changed. Dropped: server bookkeeping
(``resourceVersion``, ``uid``, ``managedFields``, timestamps), kubectl's and Argo CD's
annotations, Node status (heartbeats change it every few seconds). Kept: names, labels,
annotations, specs, and claim status (allocations are what admission must see).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from ruamel.yaml import YAML

from reconciler.model import observed as obs
from reconciler.model import ownership

HEADER = (
    "# Observed state of the cluster (Nodes, ResourceSlices, ResourceClaims and the objects\n"
    "# cu-reconciler owns), written by `cuctl snapshot --write`; do not edit by hand.\n"
    "# Not a cu-reconciler document: read as ClusterSettings.spec.layout.snapshot.\n"
)
_KIND_ORDER = (
    "Node",
    "ResourceSlice",
    "ResourceClaim",
    "ResourceClaimTemplate",
    "DeviceClass",
    "DeviceTaintRule",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
_DROP_META = (
    "resourceVersion",
    "uid",
    "managedFields",
    "creationTimestamp",
    "generation",
    "selfLink",
)
_DROP_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "argocd.argoproj.io/tracking-id",
)


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    kind = str(obj.get("kind", ""))
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _DROP_META}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS
    }
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    if "ownerReferences" in meta:
        meta["ownerReferences"] = [
            {k: v for k, v in ref.items() if k != "uid"} for ref in meta["ownerReferences"]
        ]
    out: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "kind": kind, "metadata": meta}
    if "spec" in obj:
        out["spec"] = obj["spec"]
    if kind == "ResourceClaim" and obj.get("status"):
        out["status"] = obj["status"]
    return out


def _order(obj: Mapping[str, Any]) -> tuple[int, str, str]:
    kind = str(obj.get("kind", ""))
    meta = obj.get("metadata") or {}
    rank = _KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER)
    return (rank, str(meta.get("namespace", "")), str(meta.get("name", "")))


def items(raw: obs.RawObjects) -> list[dict[str, Any]]:
    """Every object planning reads, cleaned and in a stable order (each object once)."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    # Of the candidates, only what wears our label: the admission policies read whole (for
    # repair) include other teams' policies, which have no place in our snapshot.
    owned = (o for o in raw.owned if ownership.is_owned(o))
    every: Iterable[Mapping[str, Any]] = (*raw.nodes, *raw.slices, *raw.claims, *owned)
    for obj in every:
        cleaned = _clean(obj)
        meta = cleaned["metadata"]
        seen[(cleaned["kind"], str(meta.get("namespace", "")), str(meta.get("name", "")))] = cleaned
    return sorted(seen.values(), key=_order)


def text(raw: obs.RawObjects) -> str:
    """The snapshot file's text: a header comment and a sorted ``kind: List``."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    buf = io.StringIO()
    yaml.dump({"apiVersion": "v1", "kind": "List", "items": items(raw)}, buf)
    return HEADER + buf.getvalue()

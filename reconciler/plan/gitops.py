"""The rendered target as a GitOps engine (Argo CD, Flux) applies it, rather than cuctl apply.

Three differences from what the reconciler writes, each because the engine compares or orders
the whole manifest itself:

- **No per-commit annotation.** The reconciler's diff ignores ``cu-reconciler.io/revision``,
  so that annotation only changes when the object is written anyway. An engine compares the
  manifest as rendered, so a per-commit value would mark every object OutOfSync on every
  commit. It is replaced by :data:`CONTENT_HASH_ANNOTATION`, a digest of the object's content:
  stable across commits that do not change the object, and a key to find the commit that
  produced a live object (``cuctl history --object``).
- **Sync waves** in the reconciler's apply order (:data:`reconciler.plan.target.KIND_ORDER`):
  the fence's admission policy and binding, then the taint rules, classes, slices, templates,
  claims. Argo CD applies one wave at a time and waits for it to be healthy; within a wave it
  orders by its own kind table and then by name, which would put claims before the policy.
- **Replace for immutable claims.** A ResourceClaim or template spec cannot be updated; Argo CD
  deletes and re-creates it only with ``Force=true,Replace=true``, Flux with its ``force``
  annotation. Re-creation follows any change of the rendered object, the charged-CU
  annotation included (decision, docs/gitops.md): a claim in use is pinned where it runs, so
  its charge and hash do not move on a node loss or return (tests/plan/test_one_truth.py); a
  claim not yet allocated, or a template, may be re-created when its charge moves: no Pod
  holds the one, and the other is read only when a Pod is created (claims already stamped
  from it stay). The annotation stays because "before" in every preview reads it back.

Pure: objects in, objects out.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import ownership
from reconciler.plan import admission, target
from reconciler.plan import report as rpt

CONTENT_HASH_ANNOTATION = f"{ownership.PREFIX}/content-hash"
SYNC_WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
SYNC_OPTIONS_ANNOTATION = "argocd.argoproj.io/sync-options"
REPLACE_OPTIONS = "Force=true,Replace=true"
"""Delete and re-create when the spec changed (Argo CD). The Application must also set
``ApplyOutOfSyncOnly=true``, or every sync would re-create every claim."""
FLUX_FORCE_ANNOTATION = "kustomize.toolkit.fluxcd.io/force"
"""Flux's per-object equivalent: re-create when an immutable field changed."""
IMMUTABLE_KINDS = frozenset({"ResourceClaim", "ResourceClaimTemplate"})

ENGINE_ANNOTATIONS = (
    CONTENT_HASH_ANNOTATION,
    FLUX_FORCE_ANNOTATION,
    SYNC_OPTIONS_ANNOTATION,
    SYNC_WAVE_ANNOTATION,
)
"""What :func:`for_engine` adds; the reconciler's own diff ignores them."""


def wave(kind: str) -> int:
    """The sync wave of a kind: its place in the apply order (unknown kinds go last)."""
    order = target.KIND_ORDER
    return order.index(kind) if kind in order else len(order)


def content_hash(obj: Mapping[str, Any]) -> str:
    """A digest of everything we render except the revision and the engine annotations."""
    body = copy.deepcopy(dict(obj))
    meta = body.get("metadata")
    if isinstance(meta, dict):
        annotations = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if k != ownership.REVISION_ANNOTATION and k not in ENGINE_ANNOTATIONS
        }
        meta["annotations"] = annotations
        if not annotations:
            del meta["annotations"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def for_engine(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``objects`` annotated for a GitOps engine, in the same order."""
    out: list[dict[str, Any]] = []
    for obj in objects:
        copied = copy.deepcopy(dict(obj))
        meta = copied.setdefault("metadata", {})
        annotations = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if k != ownership.REVISION_ANNOTATION
        }
        annotations[CONTENT_HASH_ANNOTATION] = content_hash(copied)
        kind = str(copied.get("kind", ""))
        annotations[SYNC_WAVE_ANNOTATION] = str(wave(kind))
        if kind in IMMUTABLE_KINDS:
            annotations[SYNC_OPTIONS_ANNOTATION] = REPLACE_OPTIONS
            annotations[FLUX_FORCE_ANNOTATION] = "Enabled"
        meta["annotations"] = dict(sorted(annotations.items()))
        out.append(copied)
    return out


STATUS_NAME = "cu-reconciler-engine-status"
"""The ConfigMap ``cuctl render --status`` adds: what an engine's render admitted, and why not."""
STATUS_LIMIT = 200
"""Pending claims and shortfalls listed one per line; the rest are counted."""


def _lines(items: list[str], limit: int) -> str:
    shown = items[:limit]
    if len(items) > limit:
        shown.append(f"… {len(items) - limit} more")
    return "".join(f"{line}\n" for line in shown)


def status_object(
    report: rpt.Report, revision: str, namespace: str, *, limit: int = STATUS_LIMIT
) -> dict[str, Any]:
    """The admission result of a render, as a ConfigMap the engine applies with the rest.

    With an engine applying the render there is no controller and so no CUSync status or
    metrics; this object is what the cluster then shows: the source revision, claim counts by
    status, every pending claim with its reason, every promise the devices cannot keep, and
    per-pool figures (the CUSync status's names: ``capacityCU``, ``admittedCU``,
    ``pendingClaims``). It changes with the revision, so exactly this one object is synced on
    every commit. Pure.
    """
    decisions = report.decisions
    counts = {s: sum(1 for d in decisions if d.status is s) for s in admission.Status}
    pending = [
        f"{d.namespace}/{d.claim} (tenant {d.tenant}, pool {d.pool}): {d.reason}"
        + (f": {d.message}" if d.message else "")
        for d in decisions
        if d.status is not admission.Status.ADMITTED
    ]
    per_pool = {p.name: 0 for p in report.pools}
    for d in decisions:
        if d.status is admission.Status.PENDING and d.pool in per_pool:
            per_pool[d.pool] += 1
    pools = [
        {
            "name": p.name,
            "capacityCU": rpt.milli_text(p.total_milli),
            "admittedCU": rpt.milli_text(p.admitted_milli),
            "pendingClaims": per_pool[p.name],
        }
        for p in sorted(report.pools, key=lambda p: p.name)
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": STATUS_NAME,
            "namespace": namespace,
            "labels": dict(ownership.MANAGED_BY),
        },
        "data": {
            "revision": revision,
            "admittedClaims": str(counts[admission.Status.ADMITTED]),
            "pendingClaims": str(counts[admission.Status.PENDING]),
            "preemptedClaims": str(counts[admission.Status.PREEMPTED]),
            "shortfalls": str(len(report.shortfalls)),
            "notAdmitted.txt": _lines(pending, limit),
            "shortfalls.txt": _lines([s.render() for s in report.shortfalls], limit),
            "pools.json": json.dumps(pools, ensure_ascii=False),
        },
    }

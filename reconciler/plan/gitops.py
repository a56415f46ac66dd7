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
from reconciler.plan import admission, figures, schedule, target
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
    """The sync wave of a kind: its place in the apply order. Kinds outside it (the kubelet
    plugin's driver-name ConfigMap) come after the claims, and the engine status after
    everything, alone, so it is applied last."""
    order = target.KIND_ORDER
    if kind == STATUS_KIND:
        return len(order) + 1
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


STATUS_API_VERSION = f"{ownership.PREFIX}/v1alpha1"
STATUS_KIND = "CUEngineStatus"
STATUS_NAME = "cu-reconciler-engine-status"
"""The object ``cuctl render --status`` adds: what an engine's render admitted, and why not."""
STATUS_LIMIT = 200
"""Claims not admitted listed one by one; the rest are counted."""
NEEDS_CHANGE = frozenset(
    {
        admission.Reason.UNKNOWN_TENANT,
        admission.Reason.UNKNOWN_POOL,
        admission.Reason.NAMESPACE_NOT_ALLOWED,
        admission.Reason.NO_QUOTA,
        admission.Reason.TOO_LARGE,
    }
)
"""Reasons no amount of waiting resolves: only a change to the repository admits the claim.
A claim pending for capacity (pool full, over its limit, reserved for guarantees) is the
admission rule working and waits; these make the engine status Degraded."""


def status_object(
    report: rpt.Report, revision: str, namespace: str, *, limit: int = STATUS_LIMIT
) -> dict[str, Any]:
    """The admission result of a render, as a ``CUEngineStatus`` the engine applies last.

    With an engine applying the render there is no controller and so no CUSync status or
    metrics; this object is what the cluster then shows: the source revision, claim counts,
    every claim not admitted with its reason, the promises the devices cannot keep, and the
    pool and tenant figures in the CUSync status's shape (:mod:`reconciler.plan.figures`), so
    ``cuctl export`` turns it into the controller's metric names and the Argo CD health check
    (deploy/argocd/resource_customizations) reads it. The figures live under ``report`` (not
    ``status``): an engine applies the whole object, and Argo CD ignores ``status`` when it
    compares. It changes with the revision, so exactly this object is synced on every commit.
    Pure.
    """
    decisions = report.decisions
    counts = {s: sum(1 for d in decisions if d.status is s) for s in admission.Status}
    not_admitted = [d for d in decisions if d.status is not admission.Status.ADMITTED]
    by_reason: dict[str, int] = {}
    for d in not_admitted:
        by_reason[str(d.reason)] = by_reason.get(str(d.reason), 0) + 1
    needs_change = sum(1 for d in not_admitted if d.reason in NEEDS_CHANGE)
    listed = sorted(not_admitted, key=lambda d: (d.reason not in NEEDS_CHANGE,))[:limit]
    entries = [
        {
            "namespace": d.namespace,
            "name": d.claim,
            "tenant": d.tenant,
            "pool": d.pool,
            "status": str(d.status),
            "reason": str(d.reason),
            "message": d.message,
            "needsChange": d.reason in NEEDS_CHANGE,
        }
        for d in listed
    ]
    windows: dict[str, Any] = {}
    if report.windows.rows:
        # Engine mode renders the window in force at render time: a nextWindowEdge in the
        # past says the render is stale (docs/peaks-and-troughs.md, "Engine mode"). Not the
        # render time itself: between two edges every render must be the same object.
        windows = {
            "nextWindowEdge": schedule.stamp(report.windows.next_edge) or "",
            "guaranteeWindows": schedule.text(report.windows)[1:][:limit],
        }
    return {
        "apiVersion": STATUS_API_VERSION,
        "kind": STATUS_KIND,
        "metadata": {
            "name": STATUS_NAME,
            "namespace": namespace,
            "labels": dict(ownership.MANAGED_BY),
        },
        "report": {
            "revision": revision,
            "claims": {
                "admitted": counts[admission.Status.ADMITTED],
                "pending": counts[admission.Status.PENDING],
                "preempted": counts[admission.Status.PREEMPTED],
                "needingChange": needs_change,
            },
            "notAdmittedByReason": dict(sorted(by_reason.items())),
            "notAdmitted": entries,
            "notAdmittedOmitted": len(not_admitted) - len(entries),
            "shortfalls": figures.shortfalls(report),
            **figures.pools_and_tenants(report),
            **windows,
        },
    }

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
  annotation.

Pure: objects in, objects out.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import ownership
from reconciler.plan import target

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

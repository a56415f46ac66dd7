"""Normalisers: rules that remove what must not count as a difference.

Each rule is one class with one method (gitops-engine ``diff/normalizer``), applied in order
by :func:`normalize` to a *copy* of both sides; compare never special-cases anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from reconciler.model import ownership
from reconciler.plan import gitops, managed

JsonObject = Mapping[str, Any]


class Normalizer(Protocol):
    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        """Edit ``obj`` in place; ``counterpart`` is the other side of the pair, if any."""


class ServerMetadata:
    """Fields the apiserver owns: identity, versions, managedFields, timestamps."""

    FIELDS = (
        "managedFields",
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generateName",
        "ownerReferences",
    )

    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for name in self.FIELDS:
                meta.pop(name, None)


class Status:
    """``status`` is written by controllers and the scheduler, never by us."""

    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        obj.pop("status", None)


class IgnoredAnnotations:
    """The Git revision (changes every commit), apply's digest of what it last sent, kubectl's
    last-applied copy, and what a GitOps engine's render adds (:mod:`reconciler.plan.gitops`)
    or the engine stamps (tracking id)."""

    KEYS = (
        ownership.REVISION_ANNOTATION,
        ownership.APPLIED_ANNOTATION,
        "kubectl.kubernetes.io/last-applied-configuration",
        "argocd.argoproj.io/tracking-id",
        *gitops.ENGINE_ANNOTATIONS,
    )

    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
            for key in self.KEYS:
                meta["annotations"].pop(key, None)


class ControllerFinalizers:
    """The DRA delete-protection finalizer that the scheduler adds to allocated claims."""

    KEYS = ("resource.kubernetes.io/delete-protection",)

    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("finalizers"), list):
            meta["finalizers"] = [f for f in meta["finalizers"] if f not in self.KEYS]


class OwnedFields:
    """A live object counts only for the fields our field manager applied.

    Apiserver defaults, admission mutations and fields other controllers add are not ours
    and never a difference (issue: live diff noise); fields *another manager* set on an
    object we own are drift, found separately by :func:`reconciler.plan.managed.foreign`.
    Runs first: it needs ``managedFields``, which :class:`ServerMetadata` removes.
    """

    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        stripped = managed.owned_view(obj, counterpart)
        obj.clear()
        obj.update(stripped)


class EmptyMetadataMaps:
    """``labels: {}``, ``annotations: {}`` and ``finalizers: []`` mean the same as absent."""

    def normalize(self, obj: dict[str, Any], counterpart: JsonObject | None) -> None:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            for name in ("labels", "annotations", "finalizers"):
                if name in meta and not meta[name]:
                    del meta[name]


DEFAULT_NORMALIZERS: tuple[Normalizer, ...] = (
    OwnedFields(),
    ServerMetadata(),
    Status(),
    IgnoredAnnotations(),
    ControllerFinalizers(),
    EmptyMetadataMaps(),
)


def normalize(
    obj: JsonObject,
    counterpart: JsonObject | None,
    normalizers: Sequence[Normalizer] = DEFAULT_NORMALIZERS,
) -> dict[str, Any]:
    # Copy on write: the rules only edit metadata's top-level maps and ``status`` in place;
    # OwnedFields replaces ``spec`` and metadata maps with projected copies. A full deep copy of
    # every object doubled the cost of a 10,000-device diff.
    out: dict[str, Any] = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, Mapping):
        meta = dict(meta)
        for name in ("labels", "annotations"):
            if isinstance(meta.get(name), Mapping):
                meta[name] = dict(meta[name])
        if isinstance(meta.get("finalizers"), list):
            meta["finalizers"] = list(meta["finalizers"])
        out["metadata"] = meta
    for rule in normalizers:
        rule.normalize(out, counterpart)
    return out

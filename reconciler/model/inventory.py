"""The inventory: the uids of the objects cu-reconciler created, kept where tenants cannot write.

Why: labels, annotations and field-manager names are written by whoever writes the object.
A tenant can create a ResourceClaim wearing ``app.kubernetes.io/managed-by: cu-reconciler``,
our source annotation and our field manager, or squat the name of a claim we generate.
If those marks made an object ours, the tenant could hide a claim from the fence audit and
from capacity accounting, make us delete or count its objects (the delete guard refusing
every reconcile), or wear our label on a vendor slice. So an object is ours only when its
**uid** is in this inventory: a ConfigMap per source repository (:func:`name`) in the
reconciler's namespace,
which only the reconciler's ServiceAccount may write (deploy/rbac.yaml), like the inventory
of a Flux Kustomization. A uid is assigned by the apiserver at creation and never reused,
so nobody can give their object one of ours.

Crash safety: apply records the subjects it is about to create (``pending``) before the
first create and the uids after the last write. An object at a pending name that carries
our marks is ours until that next write resolves it; a tenant would have to create it in
the moment between our two writes, the same race every create-if-absent over server-side
apply has (docs/apply.md).

Pure: parsing and rendering only; apply writes it, observe reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import ownership

PREFIX = "cu-reconciler-inventory-"
UIDS = "uids"
PENDING = "pending"


def name(source: str) -> str:
    """The inventory ConfigMap of the repository whose ClusterSettings is named ``source``."""
    return PREFIX + source


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def subject_of(obj: Mapping[str, Any]) -> str:
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped)."""
    meta = _meta(obj)
    ns, name = meta.get("namespace"), meta.get("name", "")
    return f"{obj.get('kind', '')}/{ns}/{name}" if ns else f"{obj.get('kind', '')}/{name}"


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("uid") or "")


@dataclass(frozen=True, slots=True)
class Inventory:
    """What one source repository created: uid → subject, and subjects being created."""

    source: str
    uids: Mapping[str, str]
    """uid → subject (the subject is for people reading the ConfigMap; the uid decides)."""
    pending: frozenset[str] = frozenset()
    stored: bool = True
    """Its ConfigMap exists. Before the first apply (or in engine mode, where Argo CD or
    Flux writes) it does not; read-only previews then let our marks decide."""

    def owns(self, obj: Mapping[str, Any]) -> bool:
        """The licence to update, delete or count ``obj`` as ours."""
        uid = uid_of(obj)
        if uid and uid in self.uids:
            return True
        return subject_of(obj) in self.pending and ownership.is_ours(obj, self.source)

    def recorded(
        self,
        created: Iterable[Mapping[str, Any]],
        deleted: Iterable[str],
        resolved: Iterable[Mapping[str, Any]] = (),
        pending: Iterable[str] = (),
    ) -> Inventory:
        """The inventory after a run created, deleted (uids) and resolved objects."""
        gone = set(deleted)
        uids = {u: s for u, s in self.uids.items() if u not in gone}
        for obj in (*created, *resolved):
            uid = uid_of(obj)
            if uid and uid not in gone:
                uids[uid] = subject_of(obj)
        return Inventory(self.source, uids, frozenset(pending))

    def adopting(self, objects: Iterable[Mapping[str, Any]]) -> Inventory:
        """This inventory with ``objects`` pending: those wearing our marks become ours and
        the next write records their uids (``cuctl apply --adopt``: an install made before
        the inventory, or one an engine wrote)."""
        subjects = {subject_of(o) for o in objects if ownership.is_ours(o, self.source)}
        return Inventory(self.source, self.uids, self.pending | subjects, self.stored)


def parse(data: Mapping[str, str] | None, source: str) -> Inventory:
    """The inventory of ``source`` from its ConfigMap's data (None, no ConfigMap: empty)."""
    stored = data is not None
    data = data or {}
    uids: dict[str, str] = {}
    for line in str(data.get(UIDS) or "").splitlines():
        uid, _, subject = line.strip().partition(" ")
        if uid:
            uids[uid] = subject
    pending = frozenset(
        line.strip() for line in str(data.get(PENDING) or "").splitlines() if line.strip()
    )
    return Inventory(source, uids, pending, stored)


def config_map(inventory: Inventory, namespace: str) -> dict[str, Any]:
    """The ConfigMap to apply, one line per object (``<uid> <subject>``), sorted by subject."""
    lines = sorted(inventory.uids.items(), key=lambda i: (i[1], i[0]))
    data = {
        UIDS: "".join(f"{u} {s}\n" for u, s in lines),
        PENDING: "".join(f"{p}\n" for p in sorted(inventory.pending)),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name(inventory.source),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/name": "cu-reconciler"},
        },
        "data": data,
    }

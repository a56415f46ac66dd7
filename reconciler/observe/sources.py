"""The observation seam: one Protocol, one method, so tests can pass plain lists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.model import observed as obs
from reconciler.model import ownership

OUR_KINDS = ownership.OUR_KINDS


WATCHED_WHOLE = frozenset({"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"})
"""Kinds read whole, not by our label: the fence's admission objects (cluster-scoped, few),
so a hand edit that strips our label is repaired rather than met by a name conflict."""


class Source(Protocol):
    def read(self) -> obs.RawObjects:
        """Everything observation needs, read once (a consistent-enough snapshot)."""


def classify(items: Iterable[Mapping[str, Any]]) -> obs.RawObjects:
    """Sort a flat list of objects into the RawObjects buckets (ConfigMaps: inventories)."""
    nodes, slices, claims, owned, leases = [], [], [], [], []
    found: dict[str, Mapping[str, str]] = {}
    for item in items:
        kind = item.get("kind")
        if kind == "ConfigMap":
            meta = item.get("metadata") or {}
            found[str(meta.get("name", ""))] = dict(item.get("data") or {})
        elif kind == "Lease":
            leases.append(item)
        elif kind == "Node":
            nodes.append(item)
        elif kind == "ResourceSlice":
            slices.append(item)
        elif kind == "ResourceClaim":
            claims.append(item)
        if kind in OUR_KINDS and (ownership.is_owned(item) or kind in WATCHED_WHOLE):
            owned.append(item)
    return obs.RawObjects(
        nodes=tuple(nodes),
        slices=tuple(slices),
        claims=tuple(claims),
        owned=tuple(owned),
        plugin_leases=tuple(leases),
        inventories=found or None,
    )


@dataclass(frozen=True, slots=True)
class InMemory:
    """A Source over a list of objects (tests, and ``plan --base`` reuse)."""

    items: tuple[Mapping[str, Any], ...]

    def read(self) -> obs.RawObjects:
        return classify(self.items)

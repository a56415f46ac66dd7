"""Pairing: the one function that aligns target and live objects.

Keyed by :class:`ObjectKey` (group, kind, namespace, name), like gitops-engine's
``sync/reconcile.go``: a key with no live object is a create, a key with no target is a
prune candidate. Nothing else in the diff matches objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler.plan import target as plan_target

JsonObject = Mapping[str, Any]


class ObjectKey(NamedTuple):
    """(group, kind, namespace, name); a tuple, so 50,000 of them are made and sorted fast."""

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: JsonObject) -> ObjectKey:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        meta = obj.get("metadata") or {}
        return cls(
            group,
            str(obj.get("kind", "")),
            str(meta.get("namespace") or ""),
            str(meta.get("name", "")),
        )

    @property
    def subject(self) -> str:
        """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped)."""
        if self.namespace:
            return f"{self.kind}/{self.namespace}/{self.name}"
        return f"{self.kind}/{self.name}"


class Pair(NamedTuple):
    """One key's target and live object (None where that side has none); a tuple, as
    there is one per object on every reconcile."""

    key: ObjectKey
    target: JsonObject | None
    live: JsonObject | None


@dataclass(slots=True)
class Order:
    """The keys of the last :func:`pair` in apply order, kept by the controller: an event
    rarely adds or removes a key (a lost node's slices are still live), and then the
    25,000 keys need not be sorted again."""

    keys: Set[ObjectKey] = frozenset()
    ordered: list[ObjectKey] = field(default_factory=list)


def pair(
    target: Iterable[JsonObject],
    live: Iterable[JsonObject],
    key_of: Callable[[JsonObject], ObjectKey] = ObjectKey.of,
    order: Order | None = None,
) -> tuple[Pair, ...]:
    """Align by key, in apply order (kind rank, namespace, name); duplicates are an error.
    ``key_of`` is :meth:`ObjectKey.of`, or the same remembered per object; ``order`` the
    last call's order (:class:`Order`)."""
    wanted: dict[ObjectKey, JsonObject] = {}
    for obj in target:
        key = key_of(obj)
        if key in wanted:
            raise ValueError(f"the target holds {key.subject} twice")
        wanted[key] = obj
    current: dict[ObjectKey, JsonObject] = {}
    for obj in live:
        current.setdefault(key_of(obj), obj)
    every = wanted.keys() | current.keys()
    if order is not None and every == order.keys:
        keys = order.ordered
    else:
        rank = plan_target.kind_rank
        keys = sorted(every, key=lambda k: (rank(k[1]), k[2], k[3], k[0]))
        if order is not None:
            order.keys, order.ordered = every, keys
    return tuple([Pair(k, wanted.get(k), current.get(k)) for k in keys])

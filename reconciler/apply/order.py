"""The order of writes.

Creates and updates go in the plan's kind order (admission policy and fence first, so no
published CU device is ever reachable without the fence; classes before slices; claims last).
Deletes go in reverse kind order and come *after* every apply: a ResourceSlice that leaves a
pool is pruned only once the pool's remaining slices carry the new generation, so the
scheduler always sees one complete generation. Upstream's ``syncPool`` deletes first because
its desired slices may be faulty; ours have all passed a server-side dry run before any write.
A replace (immutable ResourceClaim spec) is delete-then-create at the object's own place.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.diff import changeset as cs
from reconciler.plan import target

_WRITES = (cs.Action.CREATE, cs.Action.UPDATE, cs.Action.REPLACE)


def _rank(entry: cs.ChangeSetEntry) -> tuple[int, str, str]:
    kind = entry.key.kind
    rank = target.KIND_ORDER.index(kind) if kind in target.KIND_ORDER else len(target.KIND_ORDER)
    return (rank, entry.key.namespace, entry.key.name)


def writes(entries: Sequence[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """Creates, updates and replaces, in apply order."""
    return sorted((e for e in entries if e.action in _WRITES), key=_rank)


def prunes(entries: Sequence[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """Deletes of owned objects, in reverse apply order."""
    return sorted((e for e in entries if e.action is cs.Action.DELETE), key=_rank, reverse=True)

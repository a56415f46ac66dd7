"""The order of writes: waves, each a set of writes that may run in parallel.

Creates and updates go in the plan's kind order (admission policy and fence first, so no
published CU device is ever reachable without the fence; classes before slices; claims last).
Deletes go in reverse kind order and come *after* every apply: a ResourceSlice that leaves a
pool is pruned only once the pool's remaining slices carry the new generation, and a fence
rule is removed only after the slices that relied on it are gone. A DeviceTaintRule whose
device selector changes narrows the fence for the devices it stops selecting, so it is
written with the fence prunes, after the slice prunes, never before.
A replace (immutable ResourceClaim spec) is delete-then-create at the object's own place.
Within a wave, objects are independent (same kind, same step): apply may write them in
parallel, and a crash between two waves leaves the cluster fenced (tests/integration/
test_fence_faults.py stops after every single write to prove it).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from reconciler.diff import changeset as cs
from reconciler.plan import target

_WRITES = (cs.Action.CREATE, cs.Action.UPDATE, cs.Action.REPLACE)
FENCE_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "DeviceTaintRule")


def _rank(kind: str) -> int:
    return target.KIND_ORDER.index(kind) if kind in target.KIND_ORDER else len(target.KIND_ORDER)


def _key(entry: cs.ChangeSetEntry) -> tuple[int, str, str]:
    return (_rank(entry.key.kind), entry.key.namespace, entry.key.name)


def _selector(obj: object) -> object:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    return spec.get("deviceSelector") if isinstance(spec, dict) else None


def narrows_fence(entry: cs.ChangeSetEntry) -> bool:
    """An update of a DeviceTaintRule that changes which devices it taints."""
    return (
        entry.key.kind == "DeviceTaintRule"
        and entry.action is cs.Action.UPDATE
        and entry.before is not None
        and entry.after is not None
        and _selector(dict(entry.before)) != _selector(dict(entry.after))
    )


def writes(entries: Sequence[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """Creates, updates and replaces, in apply order (fence-narrowing updates excluded)."""
    return sorted((e for e in entries if e.action in _WRITES and not narrows_fence(e)), key=_key)


def prunes(entries: Sequence[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """Deletes of owned objects, in reverse apply order."""
    return sorted((e for e in entries if e.action is cs.Action.DELETE), key=_key, reverse=True)


def waves(entries: Sequence[cs.ChangeSetEntry]) -> list[list[cs.ChangeSetEntry]]:
    """Every change, as ordered waves of one kind and one step each."""
    out = [list(g) for _, g in groupby(writes(entries), key=lambda e: _rank(e.key.kind))]
    late = sorted((e for e in entries if narrows_fence(e)), key=_key)
    deletes = [list(g) for _, g in groupby(prunes(entries), key=lambda e: _rank(e.key.kind))]
    fence_rank = _rank("DeviceTaintRule")
    inserted = False
    for wave in deletes:
        if late and not inserted and _rank(wave[0].key.kind) <= fence_rank:
            out.append(late)
            inserted = True
        out.append(wave)
    if late and not inserted:
        out.append(late)
    return out

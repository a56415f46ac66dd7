"""The order of writes: waves, each a set of writes that may run in parallel.

Creates and updates go in the plan's kind order (admission policy and fence first, so no
published CU device is ever reachable without the fence; classes before slices; claims last).
Deletes go in reverse kind order and come *after* every apply: a ResourceSlice that leaves a
pool is pruned only once the pool's remaining slices carry the new generation, and a fence
rule is removed only after the slices that relied on it are gone. A DeviceTaintRule whose
device selector changes narrows the fence for the devices it stops selecting, so it is
written with the fence prunes, after the slice prunes, never before. An admission policy
update that drops a validation (a CU pool class leaves its list: a pool deleted, renamed or
merged) is written twice: first *widened* (the new validations plus the dropped ones) at
its place in the fence wave, so a new pool class is denied before it exists, then as the
target with the fence prunes, once no slice publishes a device of the dropped pool (the
fault-injection test found the gap: the narrowed policy went first and let tenants use the
old pool's class while its devices were still published).
A replace (immutable ResourceClaim spec) is delete-then-create at the object's own place.
Within a wave, objects are independent (same kind, same step): apply may write them in
parallel, and a crash between two waves leaves the cluster fenced (tests/integration/
test_fence_faults.py stops after every single write to prove it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import groupby

from reconciler.diff import changeset as cs
from reconciler.plan import target

_WRITES = (cs.Action.CREATE, cs.Action.UPDATE, cs.Action.REPLACE)
WIDENED = " (widened)"
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


def _validations(obj: object) -> list[object]:
    spec = obj.get("spec") if isinstance(obj, Mapping) else None
    found = spec.get("validations") if isinstance(spec, Mapping) else None
    return list(found) if isinstance(found, list) else []


def narrows_admission(entry: cs.ChangeSetEntry) -> bool:
    """An update of the admission policy that drops a validation it enforced (e.g. a CU
    pool class leaves the list of classes tenants may not use)."""
    if entry.key.kind != "ValidatingAdmissionPolicy" or entry.action is not cs.Action.UPDATE:
        return False
    if entry.before is None or entry.after is None:
        return False
    kept = _validations(entry.after)
    return any(v not in kept for v in _validations(entry.before))


def widened(entry: cs.ChangeSetEntry) -> cs.ChangeSetEntry:
    """The first of a narrowing policy update's two writes: the target policy that still
    enforces every validation the live one did (a request failing any one is denied, so
    this denies the union of old and new). The target itself goes in with the fence
    deletes, once no CU device the dropped validations protected is published."""
    assert entry.after is not None
    kept = _validations(entry.after)
    spec = dict(entry.after.get("spec") or {})
    spec["validations"] = [*kept, *(v for v in _validations(entry.before) if v not in kept)]
    return replace(entry, subject=f"{entry.subject}{WIDENED}", after={**entry.after, "spec": spec})


def object_subject(subject: str) -> str:
    """The object an entry's subject names (a widened first write names its object)."""
    return subject.removesuffix(WIDENED)


def narrows(entry: cs.ChangeSetEntry) -> bool:
    """A fence update that must wait until the CU slices it stops protecting are gone."""
    return narrows_fence(entry) or narrows_admission(entry)


def writes(entries: Sequence[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """Creates, updates and replaces, in apply order; a narrowing admission policy as its
    widened first write, a narrowing DeviceTaintRule not at all (both come late)."""
    early = [widened(e) if narrows_admission(e) else e for e in entries if e.action in _WRITES]
    return sorted((e for e in early if not narrows_fence(e)), key=_key)


def prunes(entries: Sequence[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """Deletes of owned objects, in reverse apply order."""
    return sorted((e for e in entries if e.action is cs.Action.DELETE), key=_key, reverse=True)


def waves(entries: Sequence[cs.ChangeSetEntry]) -> list[list[cs.ChangeSetEntry]]:
    """Every change, as ordered waves of one kind and one step each."""
    out = [list(g) for _, g in groupby(writes(entries), key=lambda e: _rank(e.key.kind))]
    # The late target write takes over no foreign fields: its widened write already did.
    late = sorted(
        (replace(e, foreign=()) if narrows_admission(e) else e for e in entries if narrows(e)),
        key=_key,
    )
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

"""The ChangeSet: the currency of preview, apply, events and tests (fluxcd/pkg ``ssa``).

One frozen :class:`ChangeSetEntry` per paired object with its :class:`Action` and a
field-level diff of the normalised objects. A changed immutable object is a ``replace``
(delete + create): ResourceClaim and ResourceClaimTemplate specs, and a ResourceSlice's
driver, pool name or node. A live object without a target becomes ``delete`` only when it
carries our owner label; anything else is left alone, whatever the caller passed.

Live objects are compared by the fields our manager applied (``OwnedFields``); fields that
*other* managers set on an owned object are drift too: the entry is an ``update`` listing
them as removals (``foreign``), and apply takes them over and removes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler import _gc
from reconciler.diff import normalize as norm
from reconciler.diff import pair as pairing
from reconciler.model import observed as obs
from reconciler.model import ownership
from reconciler.plan import facts, managed

JsonObject = Mapping[str, Any]

IMMUTABLE_SPEC_KINDS = frozenset({"ResourceClaim", "ResourceClaimTemplate"})
IMMUTABLE_FIELDS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "ResourceSlice": (("spec", "driver"), ("spec", "pool", "name"), ("spec", "nodeName")),
}


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    UNCHANGED = "unchanged"


class Op(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    CHANGE = "change"


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    op: Op
    old: Any = None
    new: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "op": str(self.op)}
        if self.op is not Op.ADD:
            out["old"] = self.old
        if self.op is not Op.REMOVE:
            out["new"] = self.new
        return out


@dataclass(frozen=True, slots=True)
class ChangeSetEntry:
    key: pairing.ObjectKey
    subject: str
    action: Action
    diff: tuple[FieldChange, ...] = ()
    before: JsonObject | None = None
    """The normalised live object (None for a create)."""
    after: JsonObject | None = None
    """The normalised target object (None for a delete)."""
    api_version: str = ""
    foreign: tuple[str, ...] = ()
    """``manager (operation): path`` for each field another manager set on the live object."""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": str(self.action),
            "apiVersion": self.api_version,
            "kind": self.key.kind,
            "namespace": self.key.namespace or None,
            "name": self.key.name,
            "diff": [c.to_json() for c in self.diff],
        }


@dataclass(frozen=True, slots=True)
class ChangeSet:
    entries: tuple[ChangeSetEntry, ...]

    @property
    def changes(self) -> tuple[ChangeSetEntry, ...]:
        return tuple(e for e in self.entries if e.action is not Action.UNCHANGED)

    @property
    def in_sync(self) -> bool:
        return not self.changes

    def count(self, action: Action) -> int:
        return sum(1 for e in self.entries if e.action is action)


def _segment(item: Any, index: int) -> str:
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        return f"[name={item['name']}]"
    return f"[{index}]"


def _keyed(items: Sequence[Any]) -> dict[str, Any] | None:
    """A list of uniquely named objects keyed by name, else None (compare by index)."""
    keys = [_segment(x, i) for i, x in enumerate(items)]
    if all(k.startswith("[name=") for k in keys) and len(set(keys)) == len(keys):
        return dict(zip(keys, items, strict=True))
    return None


def field_diff(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Leaf-level differences; lists of named objects are matched by name."""
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[FieldChange] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(FieldChange(sub, Op.ADD, new=new[key]))
            elif key not in new:
                out.append(FieldChange(sub, Op.REMOVE, old=old[key]))
            else:
                out.extend(field_diff(old[key], new[key], sub))
        return out
    if isinstance(old, list) and isinstance(new, list):
        old_keyed, new_keyed = _keyed(old), _keyed(new)
        if old_keyed is not None and new_keyed is not None:
            out = []
            order = list(old_keyed) + [k for k in new_keyed if k not in old_keyed]
            for seg in order:
                if seg not in new_keyed:
                    out.append(FieldChange(path + seg, Op.REMOVE, old=old_keyed[seg]))
                elif seg not in old_keyed:
                    out.append(FieldChange(path + seg, Op.ADD, new=new_keyed[seg]))
                else:
                    out.extend(field_diff(old_keyed[seg], new_keyed[seg], path + seg))
            return out
        out = []
        for i in range(max(len(old), len(new))):
            seg = f"{path}[{i}]"
            if i >= len(old):
                out.append(FieldChange(seg, Op.ADD, new=new[i]))
            elif i >= len(new):
                out.append(FieldChange(seg, Op.REMOVE, old=old[i]))
            else:
                out.extend(field_diff(old[i], new[i], seg))
        return out
    return [FieldChange(path, Op.CHANGE, old=old, new=new)]


def _get(obj: JsonObject, path: tuple[str, ...]) -> Any:
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _action(kind: str, before: JsonObject, after: JsonObject) -> Action:
    if before == after:
        return Action.UNCHANGED
    if kind in IMMUTABLE_SPEC_KINDS and before.get("spec") != after.get("spec"):
        return Action.REPLACE
    if any(_get(before, p) != _get(after, p) for p in IMMUTABLE_FIELDS.get(kind, ())):
        return Action.REPLACE
    return Action.UPDATE


def _stamped_in_sync(target: JsonObject, live: JsonObject) -> bool:
    """Live carries our digest of ``target``, we still own all of it, nobody else set a field."""
    stamp = managed.stamp_of(live)
    if stamp is None or stamp != managed.applied_digest(target):
        return False
    ours = managed.owned(live)
    return (
        ours is not None
        and managed.covers(ours, managed.fieldset_of(target))
        and not managed.foreign(live)
    )


@dataclass(slots=True)
class Memo:
    """The pairs found in sync by the last :func:`compute`, kept by the controller.

    A pair is the same pair again when its target is the same object (the planner keeps an
    unchanged object's identity: ``planning.Memo``) and its live object has the same uid
    and resourceVersion (the apiserver changes the version on every write, managedFields
    included); then it is still in sync, without digesting or reading managedFields again.
    The target is held, so its identity is never reused; a pair not seen is forgotten.
    """

    in_sync: dict[tuple[int, str, str], tuple[JsonObject, ChangeSetEntry]] = field(
        default_factory=dict
    )
    """(target identity, live uid, live version) → the target and its UNCHANGED entry."""
    reused: int = 0
    """Pairs of the last :func:`compute` known in sync from the one before."""
    keys: facts.Records = field(default_factory=lambda: facts.Records([pairing.ObjectKey.of]))
    """Each object's key, remembered while the object lives (planned or live objects are
    mostly the same objects from one reconcile to the next)."""
    order: pairing.Order = field(default_factory=pairing.Order)
    """The last pairing's keys in order."""


def compute(
    target: Iterable[JsonObject],
    live: Iterable[JsonObject],
    normalizers: Sequence[norm.Normalizer] = norm.DEFAULT_NORMALIZERS,
    memo: Memo | None = None,
) -> ChangeSet:
    """Pair, normalise and compare. Pure; the order is the apply order. ``memo`` only saves
    work (:class:`Memo`: it remembers the stamp check, which no normaliser takes part in)."""
    with _gc.paused():
        return _compute(target, live, normalizers, memo)


def _in_sync(
    p: pairing.Pair,
    api_version: str,
    memo: Memo | None,
    fresh: dict[tuple[int, str, str], tuple[JsonObject, ChangeSetEntry]],
) -> ChangeSetEntry | None:
    """The UNCHANGED entry when :func:`_stamped_in_sync` (None: compare the pair), remembered
    per (target object, live version) with its entry."""
    assert p.target is not None and p.live is not None
    uid, version, by_identity = obs.object_version(p.live)
    key = (id(p.target), uid, version)
    if memo is not None and not by_identity:
        hit = memo.in_sync.get(key)
        if hit is not None and hit[0] is p.target:
            memo.reused += 1
            fresh[key] = hit
            return hit[1]
    if not _stamped_in_sync(p.target, p.live):
        return None
    entry = ChangeSetEntry(p.key, p.key.subject, Action.UNCHANGED, api_version=api_version)
    if memo is not None and not by_identity:
        fresh[key] = (p.target, entry)
    return entry


def _compute(
    target: Iterable[JsonObject],
    live: Iterable[JsonObject],
    normalizers: Sequence[norm.Normalizer],
    memo: Memo | None = None,
) -> ChangeSet:
    entries = []
    fresh: dict[tuple[int, str, str], tuple[JsonObject, ChangeSetEntry]] = {}
    if memo is not None:
        memo.reused = 0
    if memo is not None:
        pairs = pairing.pair(target, live, memo.keys.fact(0), memo.order)
    else:
        pairs = pairing.pair(target, live)
    if memo is not None:
        memo.keys.turn()
    for p in pairs:
        if p.target is None:
            assert p.live is not None
            if not ownership.is_owned(p.live):
                continue
            before = norm.normalize(p.live, None, normalizers)
            entries.append(
                ChangeSetEntry(
                    key=p.key,
                    subject=p.key.subject,
                    action=Action.DELETE,
                    before=before,
                    api_version=str(p.live.get("apiVersion", "")),
                )
            )
            continue
        api_version = str(p.target.get("apiVersion", ""))
        if p.live is not None:
            # The live object holds exactly what we last applied and nobody else set a field:
            # in sync, without normalising either side (the no-op reconcile's hot path).
            same = _in_sync(p, api_version, memo, fresh)
            if same is not None:
                entries.append(same)
                continue
        after = norm.normalize(p.target, p.live, normalizers)
        if p.live is None:
            entries.append(
                ChangeSetEntry(
                    key=p.key,
                    subject=p.key.subject,
                    action=Action.CREATE,
                    diff=tuple(field_diff({}, after)),
                    after=after,
                    api_version=api_version,
                )
            )
            continue
        before = norm.normalize(p.live, p.target, normalizers)
        action = _action(p.key.kind, before, after)
        diff = field_diff(before, after) if action is not Action.UNCHANGED else []
        foreign = [
            (who, managed.render_path(path))
            for who, paths in managed.foreign(p.live).items()
            for path in paths
        ]
        if foreign and action is Action.UNCHANGED:
            action = Action.UPDATE
        stamp = managed.stamp_of(p.live)
        if action is Action.UNCHANGED and stamp is not None:
            digest = managed.applied_digest(p.target)
            if stamp != digest:
                action = Action.UPDATE
                diff.append(
                    FieldChange(
                        f"metadata.annotations[{ownership.APPLIED_ANNOTATION}]",
                        Op.CHANGE,
                        stamp,
                        digest,
                    )
                )
        diff += [FieldChange(path, Op.REMOVE, old=f"set by {who}") for who, path in foreign]
        entries.append(
            ChangeSetEntry(
                key=p.key,
                subject=p.key.subject,
                action=action,
                diff=tuple(diff),
                before=before,
                after=after,
                api_version=api_version,
                foreign=tuple(f"{who}: {path}" for who, path in foreign),
            )
        )
    if memo is not None:
        memo.in_sync = fresh
    return ChangeSet(tuple(entries))

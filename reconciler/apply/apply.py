"""``apply_all``: converge the cluster on a ChangeSet, all-or-nothing up to the first write.

The sequence is fixed and stated here because its order is the safety argument:

1. Refuse a plan the safety rule refused (mass deletion): nothing is written.
2. Server-side dry-run every write and every prune. Any rejection, or any field the
   apiserver would silently drop (a feature gate off), stops here: nothing is written.
3. Applies in kind order (fence before CU devices, classes before slices, claims last);
   a replace is delete-then-create.
4. Prunes in reverse kind order, owned objects only, with uid/resourceVersion
   preconditions; NotFound counts as deleted.

Unchanged objects are skipped, so a second run with no change writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler import errors
from reconciler.apply import order
from reconciler.apply import writer as writers
from reconciler.diff import changeset as cs
from reconciler.diff import pair
from reconciler.model import ownership

JsonObject = Mapping[str, Any]


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    REPLACED = "replaced"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    DRY_RUN = "dry-run"


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    dry_run: bool = False
    """Stop after step 2: validate everything with the apiserver, write nothing."""
    prune: bool = True
    """Delete owned objects that the target no longer holds."""


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    subject: str
    action: cs.Action
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class ApplyResult:
    entries: tuple[AppliedEntry, ...] = field(default_factory=tuple)

    @property
    def writes(self) -> int:
        """Objects created, configured, replaced or deleted: 0 for a no-op reconcile."""
        counted = {Outcome.CREATED, Outcome.CONFIGURED, Outcome.REPLACED, Outcome.DELETED}
        return sum(1 for e in self.entries if e.outcome in counted)


class DroppedFieldsError(errors.ApplyError):
    """The apiserver would store the object without fields we sent: a feature gate is off."""

    def __init__(self, subject: str, paths: list[str]) -> None:
        self.paths = paths
        super().__init__(
            f"the apiserver drops {', '.join(paths[:5])}"
            f"{' …' if len(paths) > 5 else ''}: enable the DRA feature gate for these fields "
            "on every component (kube-apiserver, kube-scheduler, kubelet)",
            subject=subject,
        )


def dropped_paths(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Leaf paths present in ``sent`` and absent from ``stored`` (values may be defaulted)."""
    if isinstance(sent, Mapping):
        if not isinstance(stored, Mapping):
            return [path or "."]
        out: list[str] = []
        for key in sorted(sent):
            sub = f"{path}.{key}" if path else str(key)
            if key not in stored:
                out.append(sub)
            else:
                out.extend(dropped_paths(sent[key], stored[key], sub))
        return out
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) < len(sent):
            return [path]
        return [p for i, item in enumerate(sent) for p in dropped_paths(item, stored[i], path)]
    return []


def _by_key(objects: Iterable[JsonObject]) -> dict[pair.ObjectKey, JsonObject]:
    return {pair.ObjectKey.of(o): o for o in objects}


def apply_all(
    writer: writers.Writer,
    changes: cs.ChangeSet,
    target: Iterable[JsonObject],
    live: Iterable[JsonObject],
    options: ApplyOptions = ApplyOptions(),
    *,
    refusal: str | None = None,
) -> ApplyResult:
    """Run the four steps in the module docstring; raise ApplyError before any write on trouble."""
    if refusal:
        raise errors.ApplyError(f"the plan was refused, nothing applied: {refusal}")
    wanted, current = _by_key(target), _by_key(live)
    writes = order.writes(changes.entries)
    prunes = order.prunes(changes.entries) if options.prune else []
    for entry in prunes:  # defence in depth: the diff already only prunes owned objects
        if not ownership.is_owned(current.get(entry.key, {})):
            raise errors.ApplyError(
                "refusing to delete an object we do not own", subject=entry.subject
            )

    for entry in writes:
        obj = wanted[entry.key]
        if entry.action is cs.Action.REPLACE:
            writer.delete(current[entry.key], dry_run=True)
            continue  # the object still exists, so a dry-run create would conflict
        stored = writer.apply(obj, dry_run=True)
        dropped = dropped_paths({"spec": obj.get("spec", {})}, {"spec": stored.get("spec", {})})
        if dropped:
            raise DroppedFieldsError(entry.subject, dropped)
    for entry in prunes:
        writer.delete(current[entry.key], dry_run=True)

    unchanged = [
        AppliedEntry(e.subject, e.action, Outcome.UNCHANGED)
        for e in changes.entries
        if e.action is cs.Action.UNCHANGED
    ]
    if options.dry_run:
        done = [AppliedEntry(e.subject, e.action, Outcome.DRY_RUN) for e in writes + prunes]
        return ApplyResult(tuple(done + unchanged))

    done = []
    for entry in writes:
        obj = wanted[entry.key]
        if entry.action is cs.Action.REPLACE:
            writer.delete(current[entry.key], dry_run=False)
            writer.apply(obj, dry_run=False)
            done.append(AppliedEntry(entry.subject, entry.action, Outcome.REPLACED))
            continue
        writer.apply(obj, dry_run=False)
        outcome = Outcome.CREATED if entry.action is cs.Action.CREATE else Outcome.CONFIGURED
        done.append(AppliedEntry(entry.subject, entry.action, outcome))
    for entry in prunes:
        writer.delete(current[entry.key], dry_run=False)
        done.append(AppliedEntry(entry.subject, entry.action, Outcome.DELETED))
    return ApplyResult(tuple(done + unchanged))

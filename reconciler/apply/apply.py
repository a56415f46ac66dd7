"""``apply_all``: converge the cluster on a ChangeSet, object by object, fence first.

The sequence is fixed and stated here because its order is the safety argument:

1. Refuse a plan the safety rule refused (mass deletion): nothing is written.
2. Ownership: an update, replace or delete touches only objects that are *ours*
   (:func:`reconciler.model.ownership.is_ours`: our field manager applied it, it carries our
   label and names our source repository); ResourceSlices of other drivers never. Anything
   else is a ``conflict`` for that object, never a takeover.
3. Pre-flight: a true server-side dry run of every update, replace and delete (dryRun in
   the DeleteOptions body), and of every create, except that of a kind with
   :data:`SAMPLE_FROM` creates or more (from scratch, a new pool) only the first of each
   *shape* (kind and the set of spec field paths) is dry-run, and one metadata-only list
   of that kind finds names already taken (``dry_run`` dry-runs every create). A create
   whose name is already taken is a conflict. A field the apiserver would
   silently drop (a feature gate off) stops everything: nothing is written. Dropping
   depends on the field, not its value, so one create per shape proves it for the rest;
   a create the apiserver refuses for its values fails at its write instead, alone, and
   the waves skip what depends on it as they would after a failed pre-flight. (From
   scratch this halves the requests: BENCHMARKS.md, issue 8.)
   An update whose dry run returns the live object unchanged (the diff saw a difference the
   apiserver's defaulting erases) is not written at all: the write would change nothing.
4. Waves (:mod:`reconciler.apply.order`): fence, classes, slices, templates, claims; then
   deletes in reverse; a fence update that narrows goes with the fence deletes (an
   admission policy dropping a validation is first written widened). Within a wave, up to
   ``concurrency`` writes run in parallel. An owned object on which other managers set
   fields (a hand edit) is repaired by a replace (PUT with its uid and resourceVersion as
   preconditions) to exactly the target, then its fields are handed to our Apply entry:
   whatever the edit was, even one server-side apply cannot merge away. A replace
   *action* (an immutable field changed in Git) is delete-then-create; the create waits
   up to ``quota_wait`` for a ResourceQuota that still counts the object just deleted.

Isolation: a failed or conflicting object fails alone, plus what depends on it (a fence
object → every CU slice write; a DeviceClass → the claims and templates naming it; a slice
write or delete → the fence deletes and narrowing fence updates); everyone else converges
and the result is ``partial``.
A write counts only when the object's resourceVersion changed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler import errors
from reconciler.apply import order
from reconciler.apply import writer as writers
from reconciler.diff import changeset as cs
from reconciler.diff import pair
from reconciler.model import driverconfig, ownership
from reconciler.model import inventory as inventories
from reconciler.plan import managed

JsonObject = Mapping[str, Any]


class Outcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    REPLACED = "replaced"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    DRY_RUN = "dry-run"
    CONFLICT = "conflict"
    """The object is not ours (a foreign object holds the name, or it lacks our marks)."""
    FAILED = "failed"
    """The apiserver refused the write (an immutable field, a validation error, …)."""
    SKIPPED = "skipped"
    """Not attempted: an object it depends on failed."""


PROBLEMS = frozenset({Outcome.CONFLICT, Outcome.FAILED, Outcome.SKIPPED})


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    dry_run: bool = False
    """Stop after the pre-flight: validate everything with the apiserver, write nothing."""
    prune: bool = True
    """Delete owned objects that the target no longer holds."""
    concurrency: int = 8
    """Parallel writes within one wave (the apiserver's priority and fairness queues them)."""
    quota_wait: float = 30.0
    """Seconds a replace's re-create retries while a ResourceQuota still counts the object
    it just deleted (the quota controller releases usage asynchronously)."""
    checkpoint: Callable[[], None] | None = None
    """Called before each write wave; raising :class:`reconciler.errors.WriterStopped`
    (the Lease lost, a signal) stops the apply there: :class:`Interrupted`."""


@dataclass(frozen=True, slots=True)
class AppliedEntry:
    subject: str
    action: cs.Action
    outcome: Outcome
    reason: str = ""
    changed: bool = False
    """The object's resourceVersion changed (created, deleted or modified) by this run."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    entries: tuple[AppliedEntry, ...] = field(default_factory=tuple)

    @property
    def writes(self) -> int:
        """Objects whose resourceVersion this run changed: 0 for a no-op reconcile (an
        object written twice, widened then narrowed, counts once)."""
        return len({order.object_subject(e.subject) for e in self.entries if e.changed})

    @property
    def problems(self) -> tuple[AppliedEntry, ...]:
        return tuple(e for e in self.entries if e.outcome in PROBLEMS)

    @property
    def partial(self) -> bool:
        """Some objects failed or were skipped; everything else converged."""
        return bool(self.problems)

    @property
    def changed(self) -> tuple[AppliedEntry, ...]:
        return tuple(e for e in self.entries if e.changed)


class Interrupted(errors.WriterStopped):
    """The apply stopped between two waves: ``result`` holds what was done, ``pending`` the
    subjects of the waves not started (nothing of them was sent)."""

    def __init__(self, cause: errors.WriterStopped, result: ApplyResult, pending: tuple[str, ...]):
        self.result = result
        self.pending = pending
        written = [e.subject for e in result.changed]
        shown = ", ".join(written[:10]) + (
            f" and {len(written) - 10} more" if len(written) > 10 else ""
        )
        super().__init__(
            f"{cause}; stopped before writing {len(pending)} more objects; "
            f"{result.writes} objects written before it" + (f" ({shown})" if written else "")
        )


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


def _meta(obj: JsonObject) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _version(obj: JsonObject) -> str:
    return str(_meta(obj).get("resourceVersion") or "")


def _managers(obj: JsonObject) -> list[str]:
    fields = _meta(obj).get("managedFields")
    entries = fields if isinstance(fields, list) else []
    return sorted({str(e.get("manager", "")) for e in entries if isinstance(e, Mapping)})


def _class_names(obj: Any) -> set[str]:
    """Every ``deviceClassName`` a claim or template spec names."""
    if isinstance(obj, Mapping):
        out = {str(v) for k, v in obj.items() if k == "deviceClassName"}
        for v in obj.values():
            out |= _class_names(v)
        return out
    if isinstance(obj, list):
        return set().union(*(_class_names(v) for v in obj)) if obj else set()
    return set()


@dataclass
class _Run:
    writer: writers.Writer
    wanted: dict[pair.ObjectKey, JsonObject]
    current: dict[pair.ObjectKey, JsonObject]
    source: str | None
    driver: str | None
    quota_wait: float = 0.0
    problems: dict[str, tuple[Outcome, str]] = field(default_factory=dict)
    """subject → (conflict/failed/skipped, reason)."""
    kinds: dict[str, cs.ChangeSetEntry] = field(default_factory=dict)
    staged: dict[str, JsonObject] = field(default_factory=dict)
    """subject → object, for the extra first write of a narrowing update (order.widened)."""
    settled: set[str] = field(default_factory=set)
    """Updates whose dry run returned the live object as it is: nothing to write."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    inventory: inventories.Inventory | None = None
    """What we created, by uid (None: our marks decide, as for a fake cluster)."""
    created: list[JsonObject] = field(default_factory=list)
    """What creates and replaces stored (with their uids), for the inventory."""
    deleted: list[str] = field(default_factory=list)
    """The uids of what deletes and replaces removed."""
    quota_raised: frozenset[str] = frozenset()
    """Namespaces whose ResourceQuota this run writes (before its claims, order.waves)."""

    def waits_for_quota(self, entry: cs.ChangeSetEntry) -> bool:
        """A claim created in a namespace whose quota this run raises first: the apiserver's
        quota admission reads the quota's ``status.hard``, which kube-controller-manager
        copies from ``spec.hard`` a moment later, so the create (and its dry run, made before
        the raise) may be refused "exceeded quota … limited: 0" although it fits."""
        return (
            entry.action is cs.Action.CREATE
            and entry.key.kind in ("ResourceClaim", "ResourceClaimTemplate")
            and entry.key.namespace in self.quota_raised
        )

    def object(self, entry: cs.ChangeSetEntry) -> JsonObject:
        """What ``entry`` writes: the target object, or its widened first step."""
        return self.staged.get(entry.subject) or self.wanted[entry.key]

    def remember(self, stored: JsonObject) -> None:
        with self.lock:
            self.created.append(stored)

    def forget(self, live: JsonObject) -> None:
        with self.lock:
            self.deleted.append(str(_meta(live).get("uid") or ""))

    def fail(self, subject: str, outcome: Outcome, reason: str) -> None:
        with self.lock:
            self.problems[subject] = (outcome, reason)

    def problem(self, subject: str) -> tuple[Outcome, str] | None:
        with self.lock:
            return self.problems.get(subject)

    def ours(self, obj: JsonObject) -> bool:
        if self.inventory is not None:
            return self.inventory.owns(obj)
        if self.source is None:
            return ownership.is_owned(obj) and "cu-reconciler" in _managers(obj)
        return ownership.is_ours(obj, self.source)

    def ownership_problem(self, entry: cs.ChangeSetEntry) -> str | None:
        if entry.action is cs.Action.CREATE:
            return None
        live = self.current[entry.key]
        if not self.ours(live):
            if self.inventory is not None:
                return (
                    "not ours: its uid is not in our inventory (labels and field managers "
                    f"do not make an object ours; managers: {', '.join(_managers(live))})"
                )
            return (
                "not ours: a live object needs our field manager, the "
                f"{ownership.MANAGED_BY_KEY} label and the {ownership.SOURCE_ANNOTATION} "
                f"annotation naming this repository (managers: {', '.join(_managers(live))})"
            )
        spec = live.get("spec")
        driver = spec.get("driver") if isinstance(spec, Mapping) else None
        if entry.key.kind == "ResourceSlice" and self.driver and driver != self.driver:
            return f"a ResourceSlice of driver {driver}, not ours ({self.driver})"
        return None

    def blocked(self, entry: cs.ChangeSetEntry) -> str | None:
        """Why ``entry`` must not be written, given the problems so far (isolation)."""
        kind = entry.key.kind
        with self.lock:
            failed = [self.kinds[s] for s in self.problems if s in self.kinds]
        if kind == "ResourceSlice" and entry.action is not cs.Action.DELETE:
            fence = [e.subject for e in failed if e.key.kind in order.FENCE_KINDS]
            if fence:
                return f"the fence is not in place ({fence[0]} failed)"
        if kind in order.FENCE_KINDS and (entry.action is cs.Action.DELETE or order.narrows(entry)):
            slices = [e.subject for e in failed if e.key.kind == "ResourceSlice"]
            if slices:
                return f"CU slices may still be published ({slices[0]} failed)"
        if kind in ("ResourceClaim", "ResourceClaimTemplate") and entry.after is not None:
            classes = {
                e.key.name
                for e in failed
                if e.key.kind == "DeviceClass" and e.action is not cs.Action.DELETE
            }
            named = _class_names(entry.after.get("spec")) & classes
            if named:
                return f"DeviceClass {sorted(named)[0]} failed"
        return None


def _name_taken(run: _Run, entry: cs.ChangeSetEntry) -> bool:
    """Record a conflict when something already holds the name a create wants."""
    holder = run.writer.get(run.object(entry))
    if holder is None:
        return False
    _conflict(run, entry, holder)
    return True


def _conflict(run: _Run, entry: cs.ChangeSetEntry, holder: JsonObject) -> None:
    run.fail(
        entry.subject,
        Outcome.CONFLICT,
        "the name is taken by an object we do not own "
        f"(field managers: {', '.join(_managers(holder)) or 'none'}); rename ours in Git or "
        "have its owner remove it",
    )


def _spec_paths(value: Any, path: str = "") -> Iterator[str]:
    """Every leaf path under ``value``, list positions left out (``spec.devices.name``);
    an empty map or list is a leaf too (a gate can drop it)."""
    if isinstance(value, Mapping) and value:
        for key, sub in value.items():
            yield from _spec_paths(sub, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list) and value:
        for item in value:
            yield from _spec_paths(item, path)
    else:
        yield path


def _shape(obj: JsonObject) -> tuple[str, str, frozenset[str]]:
    """What decides whether the apiserver drops a field: the kind, and which spec fields."""
    spec = obj.get("spec")
    return (str(obj.get("apiVersion")), str(obj.get("kind")), frozenset(_spec_paths(spec)))


SAMPLE_FROM = 32
"""Creates of one kind from which the pre-flight lists holders and samples shapes; fewer
are each dry-run (a list of every claim in a large cluster costs more than a few dry runs)."""


def _batched(creates: list[cs.ChangeSetEntry]) -> list[cs.ChangeSetEntry]:
    """The creates of kinds with at least :data:`SAMPLE_FROM` of them."""
    counts = Counter(e.key.kind for e in creates)
    return [e for e in creates if counts[e.key.kind] >= SAMPLE_FROM]


def _taken(run: _Run, creates: list[cs.ChangeSetEntry]) -> None:
    """Record a conflict for each create whose name an object already holds (not ours: ours
    would have been planned as an update), from one metadata-only list per kind."""
    for kind in sorted({e.key.kind for e in creates}):
        held = run.writer.holders(kind)
        for entry in (e for e in creates if e.key.kind == kind):
            meta = _meta(run.object(entry))
            holder = held.get((str(meta.get("namespace") or ""), str(meta.get("name", ""))))
            if holder is not None:
                _conflict(run, entry, {"metadata": holder})


def _sampled(run: _Run, creates: list[cs.ChangeSetEntry]) -> set[str]:
    """The first create of each shape: the ones the pre-flight dry-runs."""
    shapes: set[tuple[str, str, frozenset[str]]] = set()
    out = set()
    for entry in creates:
        shape = _shape(run.object(entry))
        if shape not in shapes:
            shapes.add(shape)
            out.add(entry.subject)
    return out


def _preflight(run: _Run, entry: cs.ChangeSetEntry) -> None:
    """Dry-run one change; record a conflict or failure; raise DroppedFieldsError."""
    if entry.action in (cs.Action.DELETE, cs.Action.REPLACE):
        # A replace's create is not dry-run: the object still exists, so it would conflict.
        run.writer.delete(run.current[entry.key], dry_run=True)
        return
    obj = run.object(entry)
    if entry.foreign:
        # The repair is a replace: dry-run it as one (an apply dry run would merge the
        # foreign fields and may be refused for what only the replace takes away).
        stored = run.writer.replace(managed.replacement(run.current[entry.key], obj), dry_run=True)
    else:
        try:
            stored = run.writer.apply(obj, dry_run=True)
        except writers.QuotaExceededError:
            if not run.waits_for_quota(entry):
                raise
            return  # measured against the quota this run raises first: the write waits
        except errors.ApplyError:
            if entry.action is not cs.Action.CREATE or not _name_taken(run, entry):
                raise
            return
    if entry.action is cs.Action.CREATE and _version(stored):
        _name_taken(run, entry)
        return
    dropped = dropped_paths({"spec": obj.get("spec", {})}, {"spec": stored.get("spec", {})})
    if dropped:
        raise DroppedFieldsError(entry.subject, dropped)
    if entry.action is cs.Action.UPDATE and not entry.foreign and stored == run.current[entry.key]:
        with run.lock:
            run.settled.add(entry.subject)


def _recreate(run: _Run, obj: JsonObject) -> JsonObject:
    """Create ``obj`` waiting out a stale quota (at most ``quota_wait``).

    After a delete (a replace), the quota is freed only when the quota controller has seen
    it (usually well under a second, longer on a busy control plane); after this run raised
    the namespace's quota, admission reads ``status.hard``, which that controller copies from
    ``spec.hard`` asynchronously. Until then the apiserver refuses the create "exceeded
    quota". Found by the fault-injection test (a replaced claim that was its namespace's
    whole device allowance) and by a node's return (issue 21 item 7: the quota raised and the
    claim admitted onto the returned devices created in one run).
    """
    deadline = time.monotonic() + run.quota_wait
    pause = 0.1
    while True:
        try:
            return run.writer.apply(obj, dry_run=False)
        except writers.QuotaExceededError:
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _write(run: _Run, entry: cs.ChangeSetEntry) -> AppliedEntry:
    """One real write; the outcome says whether the resourceVersion changed."""
    live = run.current.get(entry.key)
    if entry.action is cs.Action.DELETE:
        assert live is not None
        gone = run.writer.delete(live, dry_run=False)
        run.forget(live)
        return AppliedEntry(entry.subject, entry.action, Outcome.DELETED, changed=gone)
    obj = run.object(entry)
    if entry.action is cs.Action.REPLACE:
        assert live is not None
        gone = run.writer.delete(live, dry_run=False)
        run.forget(live)
        try:
            run.remember(_recreate(run, obj))
        except errors.ApplyError as exc:
            reason = f"deleted, but the re-create failed: {exc}"
            run.fail(entry.subject, Outcome.FAILED, reason)
            return AppliedEntry(entry.subject, entry.action, Outcome.FAILED, reason, gone)
        return AppliedEntry(entry.subject, entry.action, Outcome.REPLACED, changed=True)
    if entry.foreign and live is not None:
        # Replace first: the object is then exactly the target. The fields the replace
        # changed belong to our manager's Update entry; handing them to our Apply entry
        # (resourceVersion as precondition) lets the next diff see an object in sync.
        stored = run.writer.replace(managed.replacement(live, obj), dry_run=False)
        try:
            _hand_over(run, stored, obj)
        except errors.ApplyError as exc:
            reason = f"replaced, but handing its fields to our apply entry failed: {exc}"
            run.fail(entry.subject, Outcome.FAILED, reason)
            return AppliedEntry(entry.subject, entry.action, Outcome.FAILED, reason, True)
        return AppliedEntry(entry.subject, entry.action, Outcome.CONFIGURED, changed=True)
    stored = (
        dict(_recreate(run, obj))
        if run.waits_for_quota(entry)
        else run.writer.apply(obj, dry_run=False)
    )
    if entry.action is cs.Action.CREATE:
        run.remember(stored)
        return AppliedEntry(entry.subject, entry.action, Outcome.CREATED, changed=True)
    before = _version(run.current[entry.key])
    changed = _version(stored) != before
    outcome = Outcome.CONFIGURED if changed else Outcome.UNCHANGED
    return AppliedEntry(entry.subject, entry.action, outcome, changed=changed)


def _hand_over(run: _Run, stored: JsonObject, obj: JsonObject, attempts: int = 3) -> None:
    """Give our Apply entry the fields a replace changed; a status writer (the taint-rule
    controller records each new generation) may move the resourceVersion meanwhile, so a
    lost precondition is retried on the object read afresh."""
    for attempt in range(attempts):
        if not managed.foreign(stored):
            return
        fields = managed.take_over(stored, target=obj)
        try:
            run.writer.set_managed_fields(stored, fields, dry_run=False)
            return
        except errors.ApplyError:
            fresh = run.writer.get(stored)
            if fresh is None or attempt == attempts - 1:
                raise
            stored = fresh


@contextmanager
def _workers(concurrency: int) -> Iterator[Executor | None]:
    """One pool of threads for the whole run (pre-flight and every wave), None = serial."""
    if concurrency <= 1:
        yield None
        return
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="apply") as pool:
        yield pool


def _each(
    pool: Executor | None, wave: list[cs.ChangeSetEntry], fn: Callable[[cs.ChangeSetEntry], Any]
) -> list[Any]:
    """``fn`` over a wave on ``pool``; results in wave order, the whole wave done on return."""
    if pool is None or len(wave) <= 1:
        return [fn(e) for e in wave]
    return list(pool.map(fn, wave))


def apply_all(
    writer: writers.Writer,
    changes: cs.ChangeSet,
    target: Iterable[JsonObject],
    live: Iterable[JsonObject],
    options: ApplyOptions = ApplyOptions(),
    *,
    refusal: str | None = None,
    source: str | None = None,
    driver: str | None = None,
    inventory: inventories.Inventory | None = None,
    namespace: str = "cu-system",
) -> ApplyResult:
    """Run the steps in the module docstring.

    ``source`` is the repository's name in the source annotation (None: label and field
    manager only); ``driver`` the CU driver, the only one whose slices we ever touch.
    ``inventory`` (read from ``namespace``) decides what is ours and is written back: the
    subjects about to be created before the first write, the uids after the last.
    Raises ApplyError, before any write, for a refused plan or a dropped field; per-object
    trouble is in the result instead.
    """
    if refusal:
        raise errors.ApplyError(f"the plan was refused, nothing applied: {refusal}")
    entries = [
        e
        for e in changes.entries
        if e.action is not cs.Action.UNCHANGED
        and (options.prune or e.action is not cs.Action.DELETE)
    ]
    # Only what will be written is stamped (the digest is a hash of the whole object): an
    # in-sync reconcile of thousands of objects stamps none.
    writing = {e.key for e in entries}
    wanted: dict[pair.ObjectKey, JsonObject] = {
        k: managed.stamped(o) for k, o in _by_key(target).items() if k in writing
    }
    run = _Run(writer, wanted, _by_key(live), source, driver, options.quota_wait)
    run.inventory = inventory
    run.quota_raised = frozenset(
        e.key.namespace
        for e in entries
        if e.key.kind == "ResourceQuota" and e.action is not cs.Action.DELETE
    )
    waves = order.waves(entries)
    planned = [e for wave in waves for e in wave]
    run.kinds = {e.subject: e for e in planned}
    subjects = {e.subject for e in entries}
    run.staged = {
        e.subject: managed.stamped(e.after)
        for e in planned
        if e.subject not in subjects and e.after is not None
    }
    for entry in planned:
        problem = run.ownership_problem(entry)
        if problem:
            run.fail(entry.subject, Outcome.CONFLICT, problem)

    creates = [e for e in planned if e.action is cs.Action.CREATE and not run.problem(e.subject)]
    batch = [] if options.dry_run else _batched(creates)
    if batch:
        _taken(run, batch)
    unsampled = {e.subject for e in batch} - _sampled(run, batch)

    def preflight(entry: cs.ChangeSetEntry) -> None:
        if run.problem(entry.subject) or entry.subject in unsampled:
            return
        try:
            _preflight(run, entry)
        except DroppedFieldsError:
            raise
        except errors.ApplyError as exc:
            run.fail(entry.subject, Outcome.FAILED, str(exc))

    with _workers(options.concurrency) as pool:
        # Dry runs store nothing, so they need no wave order: one batch, no barriers.
        _each(pool, planned, preflight)
        if options.dry_run or inventory is None:
            return _write_waves(run, waves, pool, changes, options)
        _pending(run, inventory, namespace, planned)
        result = _write_waves(run, waves, pool, changes, options)
    return _driver_published(run, driver, namespace, _recorded(run, inventory, namespace, result))


def _driver_published(
    run: _Run, driver: str | None, namespace: str, result: ApplyResult
) -> ApplyResult:
    """Keep the plugin's ConfigMap (model/driverconfig.py) at the settings' driver name.

    Read first, so an unchanged name writes nothing; a failure is one failed entry (the
    objects are written, the plugin keeps its name and the plan reports any mismatch)."""
    if not driver:
        return result
    obj = driverconfig.config_map(driver, namespace)
    try:
        if driverconfig.driver_of(run.writer.get(obj)) == driver:
            return result
        run.writer.apply(obj, dry_run=False)
    except errors.ApplyError as exc:
        failed = AppliedEntry(
            writers.subject_of(obj),
            cs.Action.UPDATE,
            Outcome.FAILED,
            f"the kubelet plugin's driver name was not written ({exc}); the next run retries",
        )
        return ApplyResult((*result.entries, failed))
    return result


def _pending(
    run: _Run, inventory: inventories.Inventory, namespace: str, planned: list[cs.ChangeSetEntry]
) -> None:
    """Before the first write: record the subjects this run may create (crash safety)."""
    creating = {
        e.subject
        for e in planned
        if e.action in (cs.Action.CREATE, cs.Action.REPLACE) and not run.problem(e.subject)
    }
    if creating - inventory.pending:
        noted = inventories.Inventory(
            inventory.source, inventory.uids, inventory.pending | creating
        )
        run.writer.apply(inventories.config_map(noted, namespace), dry_run=False)


def _recorded(
    run: _Run, inventory: inventories.Inventory, namespace: str, result: ApplyResult
) -> ApplyResult:
    """After the last write: record the uids created, forget the deleted, resolve pending."""
    resolved = [o for o in run.current.values() if inventories.uid_of(o) not in inventory.uids]
    # A create that failed without an answer from the apiserver (a timeout, a 5xx) may have
    # been stored: its subject stays pending. One the apiserver refused (4xx) was not.
    unknown = {
        e.subject
        for e in result.entries
        if e.action in (cs.Action.CREATE, cs.Action.REPLACE)
        and e.outcome is Outcome.FAILED
        and "HTTP 4" not in e.reason
    }
    after = inventory.recorded(run.created, run.deleted, resolved, unknown)
    if after == inventory:
        return result
    obj = inventories.config_map(after, namespace)
    try:
        run.writer.apply(obj, dry_run=False)
    except errors.ApplyError as exc:
        failed = AppliedEntry(
            writers.subject_of(obj),
            cs.Action.UPDATE,
            Outcome.FAILED,
            f"the inventory was not written ({exc}); the next run resolves what this run "
            "created from the subjects recorded before it",
        )
        return ApplyResult((*result.entries, failed))
    return result


def _write_waves(
    run: _Run,
    waves: list[list[cs.ChangeSetEntry]],
    pool: Executor | None,
    changes: cs.ChangeSet,
    options: ApplyOptions,
) -> ApplyResult:
    """Write wave after wave; the pre-flight has recorded every known problem."""

    def attempt(entry: cs.ChangeSetEntry) -> AppliedEntry:
        known = run.problem(entry.subject)
        if known:
            return AppliedEntry(entry.subject, entry.action, known[0], known[1])
        why = run.blocked(entry)
        if why:
            run.fail(entry.subject, Outcome.SKIPPED, why)
            return AppliedEntry(entry.subject, entry.action, Outcome.SKIPPED, why)
        if options.dry_run:
            return AppliedEntry(entry.subject, entry.action, Outcome.DRY_RUN)
        if entry.subject in run.settled:
            return AppliedEntry(entry.subject, entry.action, Outcome.UNCHANGED)
        try:
            return _write(run, entry)
        except errors.ApplyError as exc:
            run.fail(entry.subject, Outcome.FAILED, str(exc))
            return AppliedEntry(entry.subject, entry.action, Outcome.FAILED, str(exc))

    done: list[AppliedEntry] = []
    for index, wave in enumerate(waves):
        if options.checkpoint is not None and not options.dry_run:
            try:
                options.checkpoint()
            except errors.WriterStopped as exc:
                pending = tuple(e.subject for later in waves[index:] for e in later)
                raise Interrupted(exc, ApplyResult(tuple(done)), pending) from exc
        done += _each(pool, wave, attempt)
    unchanged = [
        AppliedEntry(e.subject, e.action, Outcome.UNCHANGED)
        for e in changes.entries
        if e.action is cs.Action.UNCHANGED
    ]
    return ApplyResult(tuple(done + unchanged))

"""One reconcile, as a story: fetch → validate → observe → plan → diff → identity → apply.

Each step has the same signature (it reads and extends a :class:`_Run`), and the first
failure ends the run with that step's Reason and message; nothing after it runs, so an
invalid revision or a refused plan writes nothing (Flux's sub-reconciler list). With a
:class:`reconciler.controller.revisions.Revisions` cache, a commit already read, validated and
verified is taken from it: the first three steps then do nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from reconciler import errors, kube, observe, source, validate
from reconciler import plan as planning
from reconciler.apply import apply as applying
from reconciler.apply import record as records
from reconciler.apply import writer as writers
from reconciler.controller import revisions as revs
from reconciler.controller.reasons import Reason
from reconciler.diff import changeset as cs
from reconciler.model import diagnostics
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.observe import cluster, informer, sources
from reconciler.plan import costs, fence, safety
from reconciler.source import signature
from reconciler.source import tree as source_tree


@dataclass(frozen=True, slots=True)
class Request:
    """What to reconcile: a repository, a revision (None = its working tree) and, in a fleet
    repository (shared documents plus ``clusters/<name>/``), which cluster's overlay."""

    repo: str
    rev: str | None = None
    cluster: str | None = None
    adopt: bool = False
    """Take the live objects wearing our marks into the inventory (an install made before
    it, or written by a GitOps engine): an operator's decision, never a default."""
    now: dt.datetime | None = None
    """The instant to plan for (the guarantee windows in force); None: the wall clock."""


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: Reason
    message: str
    revision: str = ""
    diagnostics: tuple[diagnostics.Diagnostic, ...] = ()
    plan: planning.Plan | None = None
    changes: cs.ChangeSet | None = None
    applied: applying.ApplyResult | None = None
    costs: costs.CostReport | None = None
    """The plan's cost figures (None: no DeviceCosts declared, or no plan)."""
    cached: bool = False
    """The desired state was reused from an earlier reconcile of this revision."""
    seconds: tuple[tuple[str, float], ...] = ()
    """Wall time of each step that ran, in order (for the logs: where a slow reconcile went)."""

    @property
    def ok(self) -> bool:
        return self.reason is Reason.SUCCEEDED


class _Stop(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)


@dataclass(slots=True)
class Memo:
    """What one reconcile leaves for the next, kept by the controller: the vendor pools
    normalised (observe), the objects planned (plan), the pairs found in sync (diff). Each
    stage recomputes only what its inputs changed and gives the result it would give
    without it (tests/model/test_observe_memo.py, tests/plan/test_incremental.py)."""

    observed: obs.Memo = field(default_factory=obs.Memo)
    plan: planning.Memo = field(default_factory=planning.Memo)
    changes: cs.Memo = field(default_factory=cs.Memo)


@dataclass
class _Run:
    request: Request
    observed_source: sources.Source
    writer: writers.Writer
    options: applying.ApplyOptions
    tree: source_tree.SourceTree | None = None
    desired: st.DesiredState | None = None
    diagnostics: tuple[diagnostics.Diagnostic, ...] = ()
    observed: obs.ObservedState | None = None
    plan: planning.Plan | None = None
    costs: costs.CostReport | None = None
    changes: cs.ChangeSet | None = None
    applied: applying.ApplyResult | None = None
    log: list[str] = field(default_factory=list)
    revisions: revs.Revisions | None = None
    cached: bool = False
    """The desired state came from :attr:`revisions`: fetch and validate are done."""
    memory: records.Memory | None = None
    recorded: records.Record | None = None
    """What the last apply left in the cluster (the last verified revision, the limits)."""
    verified: signature.Verified | None = None
    memo: Memo | None = None

    @property
    def key(self) -> revs.Key | None:
        r = self.request
        return revs.Revisions.key(r.repo, r.rev, r.cluster)


def _fetch(run: _Run) -> None:
    loaded = run.revisions.get(run.key) if run.revisions is not None else None
    if loaded is not None:
        run.tree, run.desired, run.diagnostics = loaded.tree, loaded.desired, loaded.diagnostics
        run.cached = True
        return
    try:
        run.tree = source.fleet.select(
            source.read(run.request.repo, run.request.rev), run.request.cluster
        )
    except errors.SourceError as exc:
        raise _Stop(Reason.SOURCE_FAILED, str(exc)) from exc


def _validate(run: _Run) -> None:
    if run.cached:
        return
    assert run.tree is not None
    result = validate.validate_tree(run.tree)
    run.diagnostics = tuple(result.diagnostics)
    if result.state is None:
        first = result.errors[0].render() if result.errors else "invalid desired state"
        raise _Stop(Reason.VALIDATION_FAILED, f"{len(result.errors)} errors; first: {first}")
    run.desired = result.state


def _recall(run: _Run) -> None:
    """Read the record of the last apply (the Lease's annotations) before trusting anything."""
    if run.memory is None:
        return
    try:
        run.recorded = run.memory.recall()
    except errors.ApplyError as exc:
        raise _Stop(
            Reason.APPLY_FAILED,
            f"cannot read the record of the last apply (the last verified revision and the "
            f"safety limits in force): {exc}; nothing was written",
        ) from exc


def _verify(run: _Run) -> None:
    """Refuse a revision unless every commit that reaches the cluster is trusted
    (:mod:`reconciler.source.signature`: one rule, from the last verified revision on)."""
    assert run.desired is not None and run.tree is not None
    anchor = run.recorded.anchor if run.recorded is not None else None
    try:
        if run.request.rev is None:
            signing = run.desired.settings.spec.signing is not None
            run.verified = signature.verify_worktree(run.request.repo, signing, anchor)
        else:
            run.verified = signature.verify(run.request.repo, run.request.rev, anchor)
    except errors.SignatureError as exc:
        raise _Stop(Reason.UNTRUSTED_REVISION, str(exc)) from exc
    except errors.SourceError as exc:
        raise _Stop(Reason.SOURCE_FAILED, str(exc)) from exc
    if run.revisions is not None and not run.cached:
        run.revisions.put(run.key, revs.Loaded(run.tree, run.desired, run.diagnostics))


def _observe(run: _Run) -> None:
    assert run.desired is not None
    src = run.observed_source
    namespace = run.desired.settings.spec.reconciler_namespace
    if isinstance(src, informer.Cache) and not src.serves(namespace):
        src = src.fallback  # its stores watch another namespace's Leases and inventory
    if isinstance(src, cluster.Cluster) and src.presence_namespace != namespace:
        # The inventory and the plugins' presence Leases live in the reconciler namespace.
        src = dataclasses.replace(src, presence_namespace=namespace)
    try:
        memo = run.memo.observed if run.memo is not None else None
        run.observed = observe.observe(src, run.desired, memo)
    except errors.ObserveError as exc:
        raise _Stop(Reason.OBSERVE_FAILED, str(exc)) from exc
    held = run.observed.inventory
    if run.request.adopt and held is not None:
        adopted = held.adopting(run.observed.owned)
        run.observed = dataclasses.replace(run.observed, inventory=adopted)


def _plan(run: _Run) -> None:
    assert run.desired is not None and run.observed is not None
    try:
        now = run.request.now or dt.datetime.now(dt.UTC)
        memo = run.memo.plan if run.memo is not None else None
        run.plan = planning.plan(run.desired, run.observed, now=now, memo=memo)
        # The figures the preview shows, exported as metrics (the report's guarantees are
        # those in force at ``now``).
        run.costs = costs.compute(run.desired, run.observed, run.plan.report)
    except (errors.CUError, ValueError) as exc:
        raise _Stop(Reason.PLAN_FAILED, str(exc)) from exc
    if run.plan.refusal:
        raise _Stop(Reason.PLAN_REFUSED, run.plan.refusal)


def _diff(run: _Run) -> None:
    assert run.plan is not None
    memo = run.memo.changes if run.memo is not None else None
    run.changes = cs.compute(run.plan.objects, run.plan.live, memo=memo)


def _guards(run: _Run) -> None:
    """The delete guard again, with the strictest of the new policy, the live revision's
    and the limits recorded in the cluster by the last apply: a commit cannot lift the
    limit it needs lifted, not even when the last-applied commit is gone from Git."""
    assert run.plan is not None and run.changes is not None and run.desired is not None
    if not run.changes.count(cs.Action.DELETE):
        return
    rev = safety.live_revision(run.plan.live)
    live_policy = None
    if rev and rev != str(run.desired.revision):
        try:
            old = validate.validate_tree(source.read(run.request.repo, rev)).state
        except errors.SourceError:
            old = None  # the live revision is not in this repository (any more)
        live_policy = old.policy if old is not None else None
    policy = safety.stricter(live_policy, run.desired.policy)
    recorded = run.recorded.safety if run.recorded is not None else None
    policy = safety.stricter_limits(recorded, policy)
    refusal = safety.check(run.plan.live, run.plan.objects, policy)
    if refusal:
        limits = (
            ""
            if recorded is None
            else f", limits recorded at the last apply: {recorded_text(recorded)}"
        )
        raise _Stop(
            Reason.PLAN_REFUSED,
            f"{refusal} (live revision {rev[:12] if rev else '?'}{limits})",
        )


def recorded_text(limits: docs.SafetyPolicy) -> str:
    return f"maxDeleteFraction {limits.max_delete_fraction:g}, allowEmpty {limits.allow_empty}"


def _identity(run: _Run) -> None:
    assert run.plan is not None and run.desired is not None
    try:
        username = run.writer.whoami()
    except errors.ApplyError as exc:
        raise _Stop(Reason.APPLY_FAILED, str(exc)) from exc
    problem = fence.identity_problem(run.plan.objects, run.desired.settings.spec, username)
    if problem:
        raise _Stop(Reason.IDENTITY_REFUSED, problem)


def _apply(run: _Run) -> None:
    assert run.plan is not None and run.changes is not None and run.desired is not None
    try:
        run.applied = applying.apply_all(
            run.writer,
            run.changes,
            run.plan.objects,
            run.plan.live,
            run.options,
            source=run.desired.settings.metadata.name,
            driver=run.desired.settings.spec.driver_name,
            inventory=run.observed.inventory if run.observed is not None else None,
            namespace=run.desired.settings.spec.reconciler_namespace,
        )
    except applying.Interrupted as exc:
        run.applied = exc.result
        raise _Stop(Reason.INTERRUPTED, str(exc)) from exc
    except errors.WriterStopped as exc:
        raise _Stop(Reason.INTERRUPTED, f"{exc}; nothing was written") from exc
    except errors.ApplyError as exc:
        raise _Stop(Reason.APPLY_FAILED, f"{exc}; nothing was written") from exc
    _remember(run)
    problems = run.applied.problems
    if problems:
        first = problems[0]
        raise _Stop(
            Reason.DEGRADED,
            f"{len(problems)} objects not converged (first: {first.subject} {first.outcome}: "
            f"{first.reason}); {run.applied.writes} objects written",
        )


def _remember(run: _Run) -> None:
    """Record what is now in force: this revision (verified) and its safety limits."""
    assert run.desired is not None
    if run.memory is None or run.options.dry_run:
        return
    old = run.recorded or records.Record()
    if run.request.rev is not None and run.tree is not None:
        signing = run.verified.signing if run.verified is not None else None
        new = records.Record(run.tree.revision, signing, run.desired.policy.spec.safety)
    else:  # a working tree is no revision: the anchor stays, the limits are the new ones
        new = records.Record(old.revision, old.signing, run.desired.policy.spec.safety)
    if new == old:
        return
    try:
        run.memory.remember(new)
    except errors.ApplyError as exc:
        run.log.append(f"the record of this apply was not kept: {exc}")


STEPS: Sequence[Callable[[_Run], None]] = (
    _fetch,
    _validate,
    _recall,
    _verify,
    _observe,
    _plan,
    _diff,
    _guards,
    _identity,
    _apply,
)


def reconcile(
    request: Request,
    observed_source: sources.Source,
    writer: writers.Writer,
    options: applying.ApplyOptions = applying.ApplyOptions(),
    revisions: revs.Revisions | None = None,
    memory: records.Memory | None = None,
    memo: Memo | None = None,
) -> Outcome:
    """Run every step; the cluster is re-read each time, so a second run with no change writes
    nothing. ``revisions``: where a commit's loaded desired state is kept between runs;
    ``memory``: where the record of the last apply is kept (None: nowhere, every revision
    is verified with no anchor and no limits are recorded); ``memo``: the last run's work,
    reused where its inputs did not change (:class:`Memo`; it never changes a result)."""
    run = _Run(
        request,
        observed_source,
        writer,
        options,
        revisions=revisions,
        memory=memory,
        memo=memo,
    )
    reason, message = Reason.SUCCEEDED, ""
    seconds: list[tuple[str, float]] = []
    try:
        for step in STEPS:
            t0 = time.perf_counter()
            try:
                step(run)
            finally:
                seconds.append((step.__name__.lstrip("_"), round(time.perf_counter() - t0, 3)))
    except _Stop as stop:
        reason, message = stop.reason, stop.message
    except Exception as exc:  # never a silent wedge: any exception is this run's outcome
        where = seconds[-1][0] if seconds else "?"
        transport = isinstance(exc, kube.TRANSIENT_ERRORS)
        reason = Reason.API_UNAVAILABLE if transport else Reason.INTERNAL_ERROR
        message = f"{where}: {type(exc).__name__}: {str(exc)[:500]}"
    if reason is Reason.SUCCEEDED and run.applied is not None:
        message = f"{run.applied.writes} objects written"
    if run.log:
        message = "; ".join([message, *run.log]) if message else "; ".join(run.log)
    return Outcome(
        reason=reason,
        message=message,
        revision=run.tree.revision if run.tree else "",
        diagnostics=run.diagnostics,
        plan=run.plan,
        changes=run.changes,
        applied=run.applied,
        costs=run.costs,
        cached=run.cached,
        seconds=tuple(seconds),
    )

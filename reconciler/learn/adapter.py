"""The self-learning compute adapter: records + published table + policy → proposal.

The story, in order: fit every (device, class) against the reference; flag nodes far below
their model and leave them out; look for level shifts in hourly residuals; refit with each
changed (device, class) split at its latest change, so the factor describes the device as
it runs now; combine with the spec prior by precision; apply the policy's update rule.
Pure: ``now`` is an argument and nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from reconciler.learn import combine, drift, fit, priors, records, specs, update
from reconciler.model import documents as docs

Key = tuple[str, specs.WorkloadClass]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Everything one learning run found; the CLI, the commit message and the report read it."""

    now: datetime
    reference_model: str
    fit: fit.FitResult
    priors: Mapping[Key, priors.Prior]
    posteriors: Mapping[Key, combine.Posterior]
    slow_nodes: tuple[drift.SlowNode, ...]
    alarms: tuple[drift.Alarm, ...]
    series: tuple[drift.HourlySeries, ...]
    coverage: tuple[drift.Coverage, ...]
    proposal: update.Proposal
    reject_report: records.RejectReport
    records_revision: str
    nodes: tuple[NodeEffect, ...] = ()  # every node's speed vs its model: the slow-node screen


@dataclass(frozen=True, slots=True)
class NodeEffect:
    """One node as the slow-node screen saw it: its mean residual (log) and records."""

    node: str
    device_model: str
    effect: float
    records: int


def node_effects(effects: Any) -> tuple[NodeEffect, ...]:
    """The screen's per-node table (``drift.node_effects`` / the streamed equivalent)."""
    return tuple(
        NodeEffect(str(n), str(row["device_model"]), float(row["effect"]), int(row["records"]))
        for n, row in effects.iterrows()
    )


def learn(
    recs: records.Records,
    table: docs.FactorTable | None,
    policy: docs.FactorPolicy,
    now: datetime,
    *,
    drift_config: drift.DriftConfig = drift.DriftConfig(),
    device_specs: Mapping[str, specs.DeviceSpec] = specs.SPECS,
    target: update.Target | None = None,
) -> Outcome:
    """Learn from ``recs`` and propose against ``table``, the published view.

    ``target``: the bot-owned table the learned moves go to (see :func:`update.propose`);
    without it the proposal rewrites ``table`` itself (the library's original contract).
    """
    reference = table.spec.reference_model if table is not None else specs.REFERENCE_MODEL
    frame = recs.frame
    keep, scale = fit.screen_frame(frame)
    first = fit.fit(frame, reference, keep=keep)
    resid = np.where(keep, fit.residuals(frame, first), np.nan)  # screened rows never count
    effects = drift.node_effects(frame, resid)
    slow = tuple(drift.slow_nodes(effects))
    slow_names = [s.node for s in slow]
    series = tuple(drift.hourly(frame, resid, effects, slow_names, scale=scale))
    sparse = drift.record_series(frame, resid, effects, slow_names)
    found, coverage = drift.check_all(list(series), sparse, drift_config)
    alarms = tuple(found)
    guarded = guarded_refit(
        first,
        lambda ex, seg: fit.fit(frame, reference, exclude_nodes=ex, segments=seg, keep=keep),
        slow,
        alarms,
    )
    return finish(
        guarded.fit,
        table,
        policy,
        now,
        held_classes=guarded.held_classes,
        nodes=node_effects(effects),
        slow=slow,
        alarms=alarms,
        series=series,
        coverage=tuple(coverage),
        report=recs.report,
        records_revision=recs.digest,
        target=target,
        device_specs=device_specs,
    )


Refit = Callable[[Sequence[str], Mapping[Key, int]], fit.FitResult]
"""Fit again leaving out these nodes, splitting these (device, class) series at these hours."""


@dataclass(frozen=True, slots=True)
class Guarded:
    """The final fit and what protecting the reference decided (issue 22.3)."""

    fit: fit.FitResult
    held_classes: Mapping[specs.WorkloadClass, str]


def guarded_refit(
    first: fit.FitResult,
    refit: Refit,
    slow: Sequence[drift.SlowNode],
    alarms: Sequence[drift.Alarm],
) -> Guarded:
    """The refit after slow nodes and drift alarms, with the reference protected.

    A device's slow node or change point concerns that device: its node is left out, its
    series is split at the change. The reference is the unit of every factor of a class,
    so its own alarms and slow nodes are never allowed to re-base a class silently:

    - an alarm on the reference does not split it (its old level would get a coefficient
      of its own and every factor of the class would be measured against the records after
      a possibly false change); every factor of that class is *held* instead, until the
      reference is stable, and the intervals carry the distance to the split reading;
    - a slow reference node is left out (a broken node must not drag the unit), and the
      intervals carry the distance to the fit that keeps it (it may be a legitimate draw of
      the reference fleet): :func:`fit.widen`.
    """
    reference = first.reference_model
    changes = drift.latest_changes(list(alarms))
    own = {k: v for k, v in changes.items() if k[0] != reference}
    ref_changes = {k: v for k, v in changes.items() if k[0] == reference}
    excluded = sorted(s.node for s in slow)
    ref_slow = sorted(s.node for s in slow if s.device_model == reference)
    final = refit(excluded, own) if (excluded or own) else first
    alternatives: list[fit.FitResult] = []
    notes: list[str] = []
    if ref_slow:
        alternatives.append(refit([n for n in excluded if n not in ref_slow], own))
        notes.append(f"reference node(s) {', '.join(ref_slow)} slow: left out, intervals widened")
    if ref_changes:
        alternatives.append(refit(excluded, changes))
        notes.append("drift alarm on the reference: not split, intervals widened, class held")
    if alternatives:
        final = fit.widen(final, alternatives, "; ".join(notes))
    held = {
        cls: (
            f"drift alarm on the reference {reference}/{cls.value} (the unit of this class may "
            "have moved): held until the reference is stable"
        )
        for (_, cls) in sorted(ref_changes)
    }
    return Guarded(final, held)


def finish(
    final: fit.FitResult,
    table: docs.FactorTable | None,
    policy: docs.FactorPolicy,
    now: datetime,
    *,
    slow: tuple[drift.SlowNode, ...],
    alarms: tuple[drift.Alarm, ...],
    series: tuple[drift.HourlySeries, ...],
    coverage: tuple[drift.Coverage, ...],
    report: records.RejectReport,
    records_revision: str,
    target: update.Target | None = None,
    device_specs: Mapping[str, specs.DeviceSpec] = specs.SPECS,
    held_classes: Mapping[specs.WorkloadClass, str] | None = None,
    nodes: tuple[NodeEffect, ...] = (),
) -> Outcome:
    """The common tail of every engine: priors, their combination, the update rule."""
    reference = final.reference_model
    prior_table = priors.spec_priors(reference, device_specs)
    posteriors = combine.combine(prior_table, final.estimates, policy.confidence)
    proposal = update.propose(
        table,
        posteriors,
        policy,
        reference_model=reference,
        alarms=alarms,
        slow_nodes=slow,
        records_revision=records_revision,
        target=target,
        held_classes=held_classes or {},
    )
    return Outcome(
        now=now,
        reference_model=reference,
        fit=final,
        priors=prior_table,
        posteriors=posteriors,
        slow_nodes=slow,
        alarms=alarms,
        series=series,
        coverage=coverage,
        proposal=proposal,
        reject_report=report,
        records_revision=records_revision,
        nodes=nodes,
    )


def spec_table(
    reference_model: str = specs.REFERENCE_MODEL,
    device_specs: Mapping[str, specs.DeviceSpec] = specs.SPECS,
    name: str = "default",
) -> docs.FactorTable:
    """A FactorTable of spec priors only: the starting point before any record arrives."""
    entries = [
        {
            "deviceModel": p.device_model,
            "workloadClass": p.workload_class.value,
            "value": float(f"{p.value:.4g}"),
            "source": "spec",
            "samples": 0,
            "reference": p.reference,
        }
        for (_, _), p in sorted(priors.spec_priors(reference_model, device_specs).items())
        if p.device_model != reference_model
    ]
    return docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": name},
            "spec": {"referenceModel": reference_model, "factors": entries},
        }
    )


def table_values(table: docs.FactorTable) -> dict[Key, float]:
    """Every (device, class) value the table defines, class-less entries expanded."""
    out: dict[Key, float] = {}
    for f in table.spec.factors:
        if f.workload_class is None:
            for cls in specs.WorkloadClass:
                out.setdefault((f.device_model, cls), f.value)
    for f in table.spec.factors:
        parsed = specs.parse_class(f.workload_class)
        if parsed is not None:
            out[(f.device_model, parsed)] = f.value
    for cls in specs.WorkloadClass:
        out[(table.spec.reference_model, cls)] = 1.0
    return out


def relative_errors(values: Mapping[Key, float], truth: Mapping[Key, float]) -> np.ndarray:
    """|value/truth − 1| over the keys both define, the reference excluded by the caller."""
    keys = sorted(set(values) & set(truth))
    return np.asarray([abs(values[k] / truth[k] - 1.0) for k in keys])


__all__ = [
    "Guarded",
    "NodeEffect",
    "Outcome",
    "Refit",
    "finish",
    "guarded_refit",
    "learn",
    "node_effects",
    "relative_errors",
    "spec_table",
    "table_values",
]

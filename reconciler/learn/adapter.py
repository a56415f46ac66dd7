"""The self-learning compute adapter: records + published table + policy → proposal.

The story, in order: fit every (device, class) against the reference; flag nodes far below
their model and leave them out; look for level shifts in hourly residuals; refit with each
changed (device, class) split at its latest change, so the factor describes the device as
it runs now; combine with the spec prior by precision; apply the policy's update rule.
Pure: ``now`` is an argument and nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

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
    changes = drift.latest_changes(list(alarms))
    final = (
        fit.fit(frame, reference, exclude_nodes=slow_names, segments=changes, keep=keep)
        if slow or changes
        else first
    )
    return finish(
        final,
        table,
        policy,
        now,
        slow=slow,
        alarms=alarms,
        series=series,
        coverage=tuple(coverage),
        report=recs.report,
        records_revision=recs.digest,
        target=target,
        device_specs=device_specs,
    )


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


__all__ = ["Outcome", "finish", "learn", "relative_errors", "spec_table", "table_values"]

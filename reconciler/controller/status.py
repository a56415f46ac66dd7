"""The ``CUSync`` status: what one reconcile outcome means for the status resource.

Pure: :func:`compute` maps (previous status, outcome) to the next status. Nothing in it
depends on the clock except a condition's ``lastTransitionTime`` (kept when unchanged), so
reconciling an unchanged revision against an unchanged cluster yields an identical status
and the controller writes nothing. A failed reconcile keeps the previous applied revision,
inventory and CU figures: they still describe the cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from reconciler.controller import conditions as cond
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.model import units
from reconciler.plan import admission

GROUP = "cu-reconciler.io"
VERSION = "v1alpha1"
KIND = "CUSync"
PLURAL = "cusyncs"
COLLECTION = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
RETRYING = "ProgressingWithRetry"
PROGRESSING = "Progressing"


def path(name: str) -> str:
    return f"{COLLECTION}/{name}"


def _cu(milli: int) -> float | int:
    """Milli-CU as a JSON number: an int when whole (stable, readable)."""
    return milli // units.MILLI if milli % units.MILLI == 0 else round(milli / units.MILLI, 3)


def _figures(plan: Any) -> dict[str, Any]:
    report = plan.report
    pending: Counter[tuple[str, str]] = Counter()
    for d in report.decisions:
        if d.status is admission.Status.PENDING:
            pending[(d.tenant, d.pool)] += 1
    guaranteed: Counter[str] = Counter()
    tenants = []
    for t in sorted(report.tenants, key=lambda t: (t.tenant, t.pool)):
        guaranteed[t.pool] += t.guaranteed_milli
        tenants.append(
            {
                "name": t.tenant,
                "pool": t.pool,
                "guaranteedCU": _cu(t.guaranteed_milli),
                "admittedCU": _cu(t.after_milli),
                "pendingClaims": pending[(t.tenant, t.pool)],
            }
        )
    pools = [
        {
            "name": p.name,
            "capacityCU": _cu(p.total_milli),
            "guaranteedCU": _cu(guaranteed[p.name]),
            "admittedCU": _cu(p.admitted_milli),
            "pendingClaims": sum(n for (_, pool), n in pending.items() if pool == p.name),
        }
        for p in sorted(report.pools, key=lambda p: p.name)
    ]
    inventory = dict(sorted(Counter(str(o.get("kind")) for o in plan.objects).items()))
    findings = [
        {"namespace": f.namespace, "name": f.name, "reason": f.reason}
        for f in getattr(report, "fence_findings", ())
    ]
    return {"inventory": inventory, "pools": pools, "tenants": tenants, "fenceFindings": findings}


def last_error(outcome: pipeline.Outcome) -> dict[str, Any]:
    """The first error diagnostic, located (``file``, ``line``), else the outcome's message."""
    errors_ = [d for d in outcome.diagnostics if d.severity.value == "error"]
    if errors_:
        d = errors_[0]
        return {"message": f"{d.code}: {d.message}", "file": d.file, "line": d.line}
    return {"message": outcome.message}


def compute(
    previous: Mapping[str, Any],
    outcome: pipeline.Outcome,
    generation: int,
    now: str,
) -> dict[str, Any]:
    """The status after ``outcome``; equal to ``previous`` when nothing changed."""
    status: dict[str, Any] = {
        k: v for k, v in previous.items() if k not in ("conditions", "observedGeneration")
    }
    status["observedGeneration"] = generation
    if outcome.revision:
        status["lastAttemptedRevision"] = outcome.revision
    wanted: list[cond.Condition]
    if outcome.ok:
        status["lastAppliedRevision"] = outcome.revision
        status.pop("lastError", None)
        if outcome.plan is not None:
            status.update(_figures(outcome.plan))
        wanted = [
            cond.Condition(
                cond.Type.READY, True, outcome.reason.value, f"Applied revision {outcome.revision}"
            )
        ]
    elif outcome.reason.stalled:
        status["lastError"] = last_error(outcome)
        wanted = [
            cond.Condition(cond.Type.READY, False, outcome.reason.value, outcome.message),
            cond.Condition(cond.Type.STALLED, True, outcome.reason.value, outcome.message),
        ]
    else:
        status["lastError"] = last_error(outcome)
        wanted = [
            cond.Condition(cond.Type.READY, False, outcome.reason.value, outcome.message),
            cond.Condition(cond.Type.RECONCILING, True, RETRYING, outcome.message),
        ]
    status["conditions"] = cond.merge(previous.get("conditions") or (), wanted, generation, now)
    return status


def progressing(
    previous: Mapping[str, Any], revision: str, generation: int, now: str
) -> dict[str, Any]:
    """Status while a new revision (or spec generation) is being applied: Reconciling=True."""
    status = dict(previous)
    status["lastAttemptedRevision"] = revision
    ready = [c for c in previous.get("conditions") or () if c.get("type") == cond.Type.READY]
    wanted = [
        cond.Condition(
            cond.Type.READY,
            False,
            PROGRESSING,
            f"Reconciling revision {revision}",
        ),
        cond.Condition(cond.Type.RECONCILING, True, PROGRESSING, f"Applying revision {revision}"),
    ]
    status["conditions"] = cond.merge(ready, wanted, generation, now)
    status["observedGeneration"] = generation
    return status


def needs_progress(previous: Mapping[str, Any], revision: str, generation: int) -> bool:
    """True when this reconcile is news (new revision or spec): say so before writing."""
    return (
        previous.get("lastAttemptedRevision") != revision
        or previous.get("observedGeneration") != generation
    )


__all__ = ["Reason", "compute", "last_error", "needs_progress", "path", "progressing"]

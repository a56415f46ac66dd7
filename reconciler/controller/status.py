"""The ``CUSync`` status: what one reconcile outcome means for the status resource.

Pure: :func:`compute` maps (previous status, outcome) to the next status. Nothing in it
depends on the clock except a condition's ``lastTransitionTime`` (kept when unchanged), so
reconciling an unchanged revision against an unchanged cluster yields an identical status
and the controller writes nothing. A failed reconcile keeps the previous applied revision,
inventory and CU figures: they still describe the cluster. What the plan found about the
cluster as it is (fence findings, promises the devices cannot keep) is shown from every
reconcile that got as far as a plan, a Degraded one included: it is true whatever the apply
did. Every message is passed through :func:`credentials.redact`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from reconciler.controller import conditions as cond
from reconciler.controller import credentials, pipeline
from reconciler.controller.reasons import Reason
from reconciler.model import observed as obs
from reconciler.plan import figures, schedule

GROUP = "cu-reconciler.io"
VERSION = "v1alpha1"
KIND = "CUSync"
PLURAL = "cusyncs"
COLLECTION = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
RETRYING = "ProgressingWithRetry"
PROGRESSING = "Progressing"
SUSPENDED = "Suspended"
DRIVER_MISMATCH = obs.FindingCode.DRIVER_MISMATCH.value
DRIVER_OK = "DriverNameMatches"


def path(name: str) -> str:
    return f"{COLLECTION}/{name}"


def _figures(plan: Any) -> dict[str, Any]:
    inventory = dict(sorted(Counter(str(o.get("kind")) for o in plan.objects).items()))
    out: dict[str, Any] = {"inventory": inventory, **figures.pools_and_tenants(plan.report)}
    windows = plan.report.windows
    if windows.rows:
        # Peaks and troughs: the window in force per scheduled tenant ("" = the base), and
        # when the controller reconciles next without a commit. Both change only at edges.
        held = {(r.tenant, r.pool): r.in_force or "" for r in windows.rows}
        for row in out["tenants"]:
            key = (row["name"], row["pool"])
            if key in held:
                row["guaranteeWindow"] = held[key]
        edge = schedule.stamp(windows.next_edge)
        if edge is not None:
            out["nextWindowEdge"] = edge
    return out


def audit(plan: Any) -> dict[str, Any]:
    """What the plan found wrong in the cluster as it is: claims around the fence, and
    promises (guarantees, running pinned claims) the devices can no longer keep."""
    findings = []
    for f in plan.report.findings:
        if f.code is not obs.FindingCode.FENCE_BYPASS:
            continue
        namespace, _, name = f.subject.removeprefix("ResourceClaim ").partition("/")
        findings.append({"namespace": namespace, "name": name, "reason": f.message})
    return {"fenceFindings": findings, "shortfalls": figures.shortfalls(plan.report)}


def last_error(outcome: pipeline.Outcome) -> dict[str, Any]:
    """The first error diagnostic, located (``file``, ``line``), else the outcome's message."""
    errors_ = [d for d in outcome.diagnostics if d.severity.value == "error"]
    if errors_:
        d = errors_[0]
        return {
            "message": credentials.redact(f"{d.code}: {d.message}"),
            "file": d.file,
            "line": d.line,
        }
    return {"message": credentials.redact(outcome.message)}


def compute(
    previous: Mapping[str, Any],
    outcome: pipeline.Outcome,
    generation: int,
    now: str,
    *,
    failures: int = 0,
    stall_after: int = 0,
) -> dict[str, Any]:
    """The status after ``outcome``; equal to ``previous`` when nothing changed.

    ``failures``: consecutive failed reconciles, this one included. A failure retrying cannot
    fix (invalid commit, refused plan) is Stalled at once; any other is Reconciling (being
    retried with backoff) until it has failed ``stall_after`` times in a row (0: never),
    then Stalled too (kstatus Failed, Argo CD Degraded), still retried, until one succeeds.
    """
    status: dict[str, Any] = {
        k: v for k, v in previous.items() if k not in ("conditions", "observedGeneration")
    }
    status["observedGeneration"] = generation
    if outcome.revision:
        status["lastAttemptedRevision"] = outcome.revision
    message = credentials.redact(outcome.message)
    if outcome.plan is not None:
        status.update(audit(outcome.plan))
    wanted: list[cond.Condition]
    if outcome.ok:
        status["lastAppliedRevision"] = outcome.revision
        status.pop("lastError", None)
        if outcome.plan is not None:
            status.pop("nextWindowEdge", None)  # a schedule removed: no edge any more
            status.update(_figures(outcome.plan))
        ready = f"Applied revision {outcome.revision}"
        if status.get("shortfalls"):
            ready += f"; {len(status['shortfalls'])} promises not deliverable"
        driver = driver_registered(outcome.plan) if outcome.plan is not None else None
        if driver is not None and not driver.status:
            # Applied, but Pods' CU claims cannot start on those nodes: not Ready, and
            # Stalled (kstatus Failed, Argo CD Degraded) until the plugin is redeployed
            # under the settings' name or driverName is changed back.
            message = credentials.redact(f"{ready}, but {driver.message}")
            wanted = [
                cond.Condition(cond.Type.READY, False, DRIVER_MISMATCH, message),
                cond.Condition(cond.Type.STALLED, True, DRIVER_MISMATCH, message),
            ]
        else:
            wanted = [cond.Condition(cond.Type.READY, True, outcome.reason.value, ready)]
    elif outcome.reason.stalled:
        status["lastError"] = last_error(outcome)
        wanted = [
            cond.Condition(cond.Type.READY, False, outcome.reason.value, message),
            cond.Condition(cond.Type.STALLED, True, outcome.reason.value, message),
        ]
    elif stall_after and failures >= stall_after:
        status["lastError"] = last_error(outcome)
        stalled = f"failed {stall_after} times in a row, still retrying with backoff: {message}"
        wanted = [
            cond.Condition(cond.Type.READY, False, outcome.reason.value, message),
            cond.Condition(cond.Type.STALLED, True, outcome.reason.value, stalled),
        ]
    else:
        status["lastError"] = last_error(outcome)
        wanted = [
            cond.Condition(cond.Type.READY, False, outcome.reason.value, message),
            cond.Condition(cond.Type.RECONCILING, True, RETRYING, message),
        ]
    if outcome.plan is not None:
        wanted.append(driver_registered(outcome.plan))
    else:  # no plan, nothing new known about the plugins: keep what the last plan said
        wanted += _kept_driver(previous)
    status["conditions"] = cond.merge(previous.get("conditions") or (), wanted, generation, now)
    return status


def _kept_driver(previous: Mapping[str, Any]) -> list[cond.Condition]:
    return [
        cond.Condition(
            cond.Type.DRIVER_REGISTERED,
            c.get("status") == "True",
            str(c.get("reason", "")),
            str(c.get("message", "")),
        )
        for c in previous.get("conditions") or ()
        if c.get("type") == cond.Type.DRIVER_REGISTERED.value
    ]


def driver_registered(plan: Any) -> cond.Condition:
    """DriverRegistered from the plan's ``DriverNameMismatch`` findings (model/presence.py)."""
    mismatched = [f for f in plan.report.findings if f.code is obs.FindingCode.DRIVER_MISMATCH]
    if not mismatched:
        return cond.Condition(
            cond.Type.DRIVER_REGISTERED,
            True,
            DRIVER_OK,
            "every live kubelet plugin serves ClusterSettings.spec.driverName",
        )
    nodes = ", ".join(f.subject for f in mismatched[:5])
    more = f" and {len(mismatched) - 5} more" if len(mismatched) > 5 else ""
    message = (
        f"{len(mismatched)} node(s) run the kubelet plugin under another driver name "
        f"({nodes}{more}): {mismatched[0].message}"
    )
    return cond.Condition(
        cond.Type.DRIVER_REGISTERED, False, DRIVER_MISMATCH, credentials.redact(message)
    )


def progressing(
    previous: Mapping[str, Any], revision: str, generation: int, now: str
) -> dict[str, Any]:
    """Status while a new revision (or spec generation) is being applied: Reconciling=True."""
    status = dict(previous)
    status["lastAttemptedRevision"] = revision
    wanted = [
        cond.Condition(
            cond.Type.READY,
            False,
            PROGRESSING,
            f"Reconciling revision {revision}",
        ),
        cond.Condition(cond.Type.RECONCILING, True, PROGRESSING, f"Applying revision {revision}"),
        *_kept_driver(previous),
    ]
    status["conditions"] = cond.merge(previous.get("conditions") or (), wanted, generation, now)
    status["observedGeneration"] = generation
    return status


def suspended(previous: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """Status of a suspended CUSync: the spec (``suspend: true``) is in force, nothing is in
    progress; Ready and Stalled still say how the last reconcile ended."""
    status = dict(previous)
    status["observedGeneration"] = generation
    status["conditions"] = [
        dict(c)
        for c in previous.get("conditions") or ()
        if c.get("type") != cond.Type.RECONCILING.value
    ]
    return status


def outage(previous: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    """The status with the last apiserver outage recorded (written once, when it is over)."""
    return {**previous, "lastOutage": dict(record)}


def needs_progress(previous: Mapping[str, Any], revision: str, generation: int) -> bool:
    """True when this reconcile is news (new revision or spec): say so before writing."""
    return (
        previous.get("lastAttemptedRevision") != revision
        or previous.get("observedGeneration") != generation
    )


__all__ = [
    "Reason",
    "audit",
    "compute",
    "last_error",
    "needs_progress",
    "outage",
    "path",
    "progressing",
    "suspended",
]

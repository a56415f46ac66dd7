"""Why a reconcile ended: one Reason per step, for conditions, events and exit codes."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    SUCCEEDED = "ReconciliationSucceeded"
    SOURCE_FAILED = "GitOperationFailed"
    UNTRUSTED_REVISION = "UntrustedRevision"
    VALIDATION_FAILED = "ValidationFailed"
    OBSERVE_FAILED = "ObserveFailed"
    PLAN_FAILED = "PlanFailed"
    PLAN_REFUSED = "PlanRefused"
    IDENTITY_REFUSED = "IdentityRefused"
    APPLY_FAILED = "ApplyFailed"
    DEGRADED = "ReconciliationDegraded"
    """Some objects failed or conflicted; every other object converged."""
    INTERRUPTED = "ReconciliationInterrupted"
    """The writer stopped between two waves (the Lease lost, SIGTERM): what was written
    stays, the rest was not sent."""
    API_UNAVAILABLE = "APIServerUnavailable"
    """The apiserver (or etcd behind it) did not answer, after the transport's retries."""
    INTERNAL_ERROR = "ReconcileError"
    """An unexpected exception in a step: a bug or a hostile input no check caught. Reported
    like any failure (never a silent retry) and retried with backoff; Stalled if it repeats."""

    @property
    def stalled(self) -> bool:
        """True when retrying cannot help until Git changes (the user must fix something)."""
        return self in (
            Reason.VALIDATION_FAILED,
            Reason.PLAN_REFUSED,
            Reason.IDENTITY_REFUSED,
            Reason.UNTRUSTED_REVISION,
        )

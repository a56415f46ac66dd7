"""kstatus conditions for ``CUSync``: Ready, Reconciling, Stalled, and DriverRegistered.

Pure. ``Reconciling`` and ``Stalled`` are "abnormal-true" conditions (kstatus): present only
while true, and never both. ``lastTransitionTime`` moves only when a condition's status,
reason or message changes, so an idle controller computes an identical status and writes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Type(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    DRIVER_REGISTERED = "DriverRegistered"
    """Normal-true: every kubelet plugin the plan saw serves ClusterSettings.spec.driverName.
    False (reason ``DriverNameMismatch``) while one serves another name: Pods' CU claims
    cannot be prepared on those nodes."""


@dataclass(frozen=True, slots=True)
class Condition:
    type: Type
    status: bool
    reason: str
    message: str


def merge(
    previous: Sequence[Mapping[str, Any]],
    wanted: Sequence[Condition],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """The condition list to store: ``wanted`` in order, keeping unchanged transition times."""
    if any(c.type is Type.RECONCILING and c.status for c in wanted) and any(
        c.type is Type.STALLED and c.status for c in wanted
    ):
        raise ValueError("Reconciling and Stalled cannot both be true")
    old = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for cond in wanted:
        status = "True" if cond.status else "False"
        before = old.get(cond.type.value)
        same = (
            before is not None
            and before.get("status") == status
            and before.get("reason") == cond.reason
            and before.get("message") == cond.message
        )
        out.append(
            {
                "type": cond.type.value,
                "status": status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": before.get("lastTransitionTime", now)
                if same and before is not None
                else now,
                "observedGeneration": generation,
            }
        )
    return out

"""The CU figures of one plan, as the cluster shows them: per pool, per tenant, and shortfalls.

One shape for two readers: the controller's ``CUSync`` status and the engine-status object
``cuctl render --status`` adds (:mod:`reconciler.plan.gitops`). The metrics exporters read
either and export the same series from it. Pure.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from reconciler.model import units
from reconciler.plan import admission
from reconciler.plan import report as rpt


def cu(milli: int) -> float | int:
    """Milli-CU as a JSON number: an int when whole (stable, readable)."""
    return milli // units.MILLI if milli % units.MILLI == 0 else round(milli / units.MILLI, 3)


def pools_and_tenants(report: rpt.Report) -> dict[str, list[dict[str, Any]]]:
    """``pools`` and ``tenants``: capacity, guaranteed, admitted CU and pending claims."""
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
                "guaranteedCU": cu(t.guaranteed_milli),
                "admittedCU": cu(t.after_milli),
                "pendingClaims": pending[(t.tenant, t.pool)],
            }
        )
    pools = [
        {
            "name": p.name,
            "capacityCU": cu(p.total_milli),
            "guaranteedCU": cu(guaranteed[p.name]),
            "admittedCU": cu(p.admitted_milli),
            "pendingClaims": sum(n for (_, pool), n in pending.items() if pool == p.name),
        }
        for p in sorted(report.pools, key=lambda p: p.name)
    ]
    return {"pools": pools, "tenants": tenants}


def shortfalls(report: rpt.Report) -> list[dict[str, Any]]:
    """Promises (guarantees, running pinned claims) the devices can no longer keep."""
    return [
        {
            "tenant": x.tenant,
            "pool": x.pool,
            "subject": x.subject,
            "promisedCU": cu(x.promised_milli),
            "deliverableCU": cu(x.deliverable_milli),
            "message": f"promise not deliverable: {x.render()}",
        }
        for x in report.shortfalls
    ]

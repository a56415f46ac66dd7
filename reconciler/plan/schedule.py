"""Peaks and troughs: the guarantees in force at the instant a plan is made for.

A quota may carry a weekly ``schedule`` (docs/peaks-and-troughs.md). The planner is given
the instant (``plan(..., now=)``: the controller's clock, ``cuctl plan --at``) and, before
anything else, replaces every scheduled quota's ``guaranteed`` with the value of the window
in force (:func:`in_force`). Everything after it (capacity, admission, preemption, the
DeviceClass quota annotations, costs, the report) sees ordinary guarantees: a window edge is
a change of guarantee like any commit, reclaimed by the same admission and preemption rules,
with no path of its own.

:func:`in_force` also returns the :class:`Schedule` for the preview: each scheduled
guarantee per window, the window in force, and the next edge, at which the controller
reconciles again without a commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import state as st
from reconciler.model import timewindows


@dataclass(frozen=True, slots=True)
class WindowRow:
    name: str
    days: tuple[str, ...]
    start: str
    end: str
    guaranteed: float


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One tenant's scheduled guarantee in one pool."""

    tenant: str
    pool: str
    time_zone: str
    base: float
    """The guarantee outside every window."""
    windows: tuple[WindowRow, ...]
    in_force: str | None
    """The window in force at the plan's instant; None: none (the base holds)."""
    guaranteed: float
    """The guarantee in force."""
    next_edge: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Schedule:
    at: dt.datetime | None
    """The instant the plan was made for; None: no time given (base guarantees)."""
    rows: tuple[Scheduled, ...]

    @property
    def next_edge(self) -> dt.datetime | None:
        return timewindows.next_edge(r.next_edge for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": stamp(self.at),
            "nextEdge": stamp(self.next_edge),
            "tenants": [
                {
                    "tenant": r.tenant,
                    "pool": r.pool,
                    "timeZone": r.time_zone,
                    "base": r.base,
                    "inForce": r.in_force,
                    "guaranteed": r.guaranteed,
                    "nextEdge": stamp(r.next_edge),
                    "windows": [
                        {
                            "name": w.name,
                            "days": list(w.days),
                            "start": w.start,
                            "end": w.end,
                            "guaranteed": w.guaranteed,
                        }
                        for w in r.windows
                    ],
                }
                for r in self.rows
            ],
        }


NONE = Schedule(None, ())
"""No schedule: no quota has windows (or the plan was made without a time)."""


def stamp(at: dt.datetime | None) -> str | None:
    return None if at is None else at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_force(desired: st.DesiredState, at: dt.datetime | None) -> tuple[st.DesiredState, Schedule]:
    """The desired state with every scheduled guarantee set to the one in force at ``at``
    (unchanged when ``at`` is None or nothing is scheduled), and the schedule shown."""
    rows: list[Scheduled] = []
    tenants: list[docs.Tenant] = []
    changed = False
    for tenant in desired.tenants:
        quotas: list[docs.Quota] = []
        for quota in tenant.spec.quotas:
            if quota.schedule is None:
                quotas.append(quota)
                continue
            now = quota.schedule.in_force(at) if at is not None else None
            guaranteed = quota.guaranteed_at(at)
            rows.append(
                Scheduled(
                    tenant.metadata.name,
                    quota.pool,
                    quota.schedule.time_zone,
                    quota.guaranteed,
                    tuple(
                        WindowRow(w.name, tuple(w.days), w.start, w.end, w.guaranteed)
                        for w in quota.schedule.windows
                    ),
                    now.window if now else None,
                    guaranteed,
                    now.next_edge if now else None,
                )
            )
            if guaranteed != quota.guaranteed:
                changed = True
                quota = quota.model_copy(update={"guaranteed": guaranteed})
            quotas.append(quota)
        if any(a is not b for a, b in zip(quotas, tenant.spec.quotas, strict=True)):
            spec = tenant.spec.model_copy(update={"quotas": quotas})
            tenant = tenant.model_copy(update={"spec": spec})
        tenants.append(tenant)
    schedule = Schedule(at, tuple(sorted(rows, key=lambda r: (r.tenant, r.pool))))
    if not changed:
        return desired, schedule
    return dataclasses.replace(desired, tenants=tuple(tenants)), schedule


def text(schedule: Schedule) -> list[str]:
    """The schedule section of the text and Markdown previews (empty when none)."""
    if not schedule.rows:
        return []
    at = stamp(schedule.at) or "no time given: base guarantees"
    lines = [f"Guarantee windows at {at} (next edge {stamp(schedule.next_edge) or 'none'}):"]
    for r in schedule.rows:
        held = f"window {r.in_force}" if r.in_force else "no window (base)"
        lines.append(
            f"  {r.tenant} in {r.pool}: {r.guaranteed:g} CU now ({held}); "
            f"base {r.base:g} CU; {r.time_zone}"
        )
        for w in r.windows:
            mark = "*" if w.name == r.in_force else " "
            lines.append(
                f"   {mark} {w.name}: {','.join(w.days)} {w.start}-{w.end} → {w.guaranteed:g} CU"
            )
    return lines

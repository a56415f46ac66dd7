"""Peaks and troughs in the planner: the instant is an input, the window in force sets the
guarantee, and an edge reclaims capacity by the same admission and preemption rules as a
commit that changes the guarantee (docs/peaks-and-troughs.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import cu_example as ex
from hypothesis import given, settings
from hypothesis import strategies as hs

from reconciler import plan as planning
from reconciler.model import documents as docs
from reconciler.model import state as st
from reconciler.plan import classes

ALL_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
NIGHT_AT = dt.datetime(2026, 12, 7, 2, tzinfo=dt.UTC)
DAY_EDGE = dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC)


def windowed(base: float, name: str, start: str, end: str, guaranteed: float) -> dict[str, Any]:
    return {
        "guaranteed": base,
        "schedule": {
            "timeZone": "UTC",
            "windows": [
                {
                    "name": name,
                    "days": ALL_DAYS,
                    "start": start,
                    "end": end,
                    "guaranteed": guaranteed,
                }
            ],
        },
    }


def tenants(search: dict[str, Any], lab: dict[str, Any]) -> tuple[docs.Tenant, ...]:
    return (
        ex.tenant(
            "search",
            {
                "namespaces": ["search"],
                "priority": 100,
                "mayBorrow": True,
                "quotas": [{"pool": "train", "limit": 400, **search}],
            },
        ),
        ex.tenant(
            "ads",
            {
                "namespaces": ["ads"],
                "priority": 50,
                "mayBorrow": True,
                "quotas": [
                    {"pool": "train", "guaranteed": 100},
                    {"pool": "infer", "guaranteed": 10},
                ],
            },
        ),
        ex.tenant(
            "lab",
            {
                "namespaces": ["lab"],
                "priority": 10,
                "mayBorrow": True,
                "quotas": [{"pool": "train", **lab}],
            },
        ),
    )


CLAIMS = (
    *ex.CLAIMS,
    ex.claim("lab-c", {"tenant": "lab", "pool": "train", "cu": 100}),
    ex.claim("search-c", {"tenant": "search", "pool": "train", "cu": 50}),
)
# Search: 300 CU by day (08:00-20:00 UTC), 100 at night; lab: 200 at night, 0 by day.
WINDOWED = ex.desired(
    tenants=tenants(
        windowed(100, "day", "08:00", "20:00", 300), windowed(0, "night", "20:00", "08:00", 200)
    ),
    claims=CLAIMS,
)


def static(search: float, lab: float) -> st.DesiredState:
    """The same desired state with fixed guarantees: what a commit would write."""
    return ex.desired(tenants=tenants({"guaranteed": search}, {"guaranteed": lab}), claims=CLAIMS)


def statuses(plan: planning.Plan) -> dict[str, tuple[str, str]]:
    return {d.claim: (d.status.value, d.reason.value) for d in plan.report.decisions}


def test_the_window_in_force_sets_the_guarantee() -> None:
    observed = ex.observed()
    night = planning.plan(WINDOWED, observed, now=NIGHT_AT)
    day = planning.plan(WINDOWED, observed, now=DAY_EDGE)
    rows = {(t.tenant, t.pool): t.guaranteed_milli for t in night.report.tenants}
    assert rows[("search", "train")] == 100_000 and rows[("lab", "train")] == 200_000
    rows = {(t.tenant, t.pool): t.guaranteed_milli for t in day.report.tenants}
    assert rows[("search", "train")] == 300_000 and rows[("lab", "train")] == 0
    # The DeviceClass records the guarantee in force (what `plan` compares the cluster with).
    cls = next(
        o
        for o in day.objects
        if o["kind"] == "DeviceClass" and o["metadata"]["name"] == classes.pool_class_name("train")
    )
    assert "guaranteed=300," in cls["metadata"]["annotations"]["quota.cu-reconciler.io/search"]
    # The schedule shown: each window, the one in force, the next edge.
    search = next(r for r in day.report.windows.rows if r.tenant == "search")
    assert (search.in_force, search.guaranteed, search.base) == ("day", 300.0, 100.0)
    assert day.report.windows.next_edge == dt.datetime(2026, 12, 7, 20, tzinfo=dt.UTC)
    assert night.report.windows.next_edge == DAY_EDGE


def test_no_time_given_means_the_base_guarantees() -> None:
    result = planning.plan(WINDOWED, ex.observed())
    rows = {(t.tenant, t.pool): t.guaranteed_milli for t in result.report.tenants}
    assert rows[("search", "train")] == 100_000 and rows[("lab", "train")] == 0
    assert result.report.windows.at is None and result.report.windows.next_edge is None


def test_an_edge_preempts_exactly_as_a_commit_changing_the_guarantee_would() -> None:
    """Night → day with no commit: lab's claim admitted within its night guarantee is
    preempted at 08:00 for search's day guarantee, and every decision and object equals the
    plan of a desired state that simply says the day's guarantees (no separate path)."""
    observed = ex.observed()
    night = planning.plan(WINDOWED, observed, now=NIGHT_AT)
    assert statuses(night)["lab-a"] == ("Admitted", "WithinGuarantee")
    at_edge = planning.plan(WINDOWED, observed, night.objects, now=DAY_EDGE)
    assert statuses(at_edge)["lab-a"][0] == "Preempted"
    assert statuses(at_edge)["search-a"] == ("Admitted", "WithinGuarantee")
    committed = planning.plan(static(300, 0), observed, night.objects)
    assert at_edge.report.decisions == committed.report.decisions
    assert at_edge.objects == committed.objects


@settings(max_examples=12, deadline=None)
@given(minute=hs.integers(0, 7 * 24 * 60 - 1))
def test_any_instant_plans_as_its_static_guarantees(minute: int) -> None:
    at = dt.datetime(2026, 12, 7, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    day = 8 <= at.hour < 20
    observed = ex.observed()
    live = planning.plan(static(100, 200) if day else static(300, 0), observed).objects
    windowed = planning.plan(WINDOWED, observed, live, now=at)
    committed = planning.plan(static(300, 0) if day else static(100, 200), observed, live)
    assert windowed.report.decisions == committed.report.decisions
    assert windowed.objects == committed.objects


def test_the_engine_status_names_the_next_edge_and_stays_put_between_edges() -> None:
    """Engine mode: the render's CUEngineStatus shows the schedule and the next edge (in
    the past: the render is stale), and two renders between the same edges are identical."""
    from reconciler.plan import gitops

    observed = ex.observed()
    early = planning.plan(WINDOWED, observed, now=DAY_EDGE + dt.timedelta(minutes=1))
    later = planning.plan(WINDOWED, observed, now=DAY_EDGE + dt.timedelta(hours=5))
    first = gitops.status_object(early.report, "f" * 40, "cu-system")
    assert first == gitops.status_object(later.report, "f" * 40, "cu-system")
    data = first["report"]
    assert data["nextWindowEdge"] == "2026-12-07T20:00:00Z"
    assert any(
        "search in train: 300 CU now (window day)" in row for row in data["guaranteeWindows"]
    )
    plain = gitops.status_object(planning.plan(static(100, 0), observed).report, "f" * 40, "x")
    assert "nextWindowEdge" not in plain["report"]

"""The loop's requeue at a guarantee window edge, on its own (no apiserver): the plan's next
edge becomes a reconcile asked for just after it, with ``why: window``, and a plan with no
schedule asks for none (docs/peaks-and-troughs.md)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import cu_example as ex
import pytest
from kubernetes.client import ApiClient

from reconciler import plan as planning
from reconciler.controller import loop, pipeline
from reconciler.controller.reasons import Reason

NOW = dt.datetime(2026, 12, 7, 7, 59, 58, tzinfo=dt.UTC)


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> loop.Controller:
    cfg = loop.Config(repo="file:///nowhere", resync=3600, interval=3600, cache=tmp_path)
    c = loop.Controller(ApiClient(), cfg, clock=lambda: NOW)
    c.asked = []  # type: ignore[attr-defined]
    c._polled_at = c._synced_at = time.monotonic()  # no poll or resync due in these tests
    monkeypatch.setattr(c, "request", lambda why: c.asked.append(why))  # type: ignore[attr-defined]
    return c


def _outcome(windowed: bool) -> pipeline.Outcome:
    tenants = ex.TENANTS
    if windowed:
        search = ex.TENANTS[0].model_dump(by_alias=True)
        search["spec"]["quotas"][0]["schedule"] = {
            "timeZone": "UTC",
            "windows": [
                {
                    "name": "day",
                    "days": ["Mon"],
                    "start": "08:00",
                    "end": "20:00",
                    "guaranteed": 350,
                }
            ],
        }
        tenants = (ex.tenant("search", search["spec"]), *ex.TENANTS[1:])
    result = planning.plan(ex.desired(tenants=tenants), ex.observed(), now=NOW)
    return pipeline.Outcome(Reason.SUCCEEDED, "", plan=result)


def test_the_next_edge_becomes_a_window_reconcile(controller: loop.Controller) -> None:
    t0 = time.monotonic()
    controller._next_edge(_outcome(True), NOW)
    # 2 s to the edge, plus the margin.
    assert 2.0 < controller._edge_at - t0 < 2.0 + loop.EDGE_MARGIN + 0.5
    assert (
        controller.metrics.guarantee_next_edge._value.get()
        == dt.datetime(2026, 12, 7, 8, tzinfo=dt.UTC).timestamp()
    )
    controller._tick()
    assert controller.asked == []  # type: ignore[attr-defined]
    controller._edge_at = time.monotonic() - 0.01  # the edge has come
    controller._tick()
    assert controller.asked == ["window"]  # type: ignore[attr-defined]
    assert controller._edge_at == 0.0


def test_no_schedule_no_edge_and_a_failed_plan_keeps_the_last(controller: loop.Controller) -> None:
    controller._next_edge(_outcome(True), NOW)
    kept = controller._edge_at
    controller._next_edge(dataclasses.replace(_outcome(True), plan=None), NOW)
    assert controller._edge_at == kept
    controller._next_edge(_outcome(False), NOW)
    assert controller._edge_at == 0.0
    assert controller.metrics.guarantee_next_edge._value.get() == 0


def test_the_status_shows_the_window_in_force_and_the_next_edge() -> None:
    from reconciler.controller import status as st

    windowed = _outcome(True)
    new = st.compute({}, windowed, 1, "2026-12-07T07:59:58Z")
    rows = {(t["name"], t["pool"]): t for t in new["tenants"]}
    assert rows[("search", "train")]["guaranteeWindow"] == ""  # not yet 08:00: the base
    assert "guaranteeWindow" not in rows[("ads", "train")]
    assert new["nextWindowEdge"] == "2026-12-07T08:00:00Z"
    # The schedule removed by a later commit: no stale edge is left in the status.
    again = st.compute(new, _outcome(False), 2, "2026-12-07T07:59:59Z")
    assert "nextWindowEdge" not in again
    assert all("guaranteeWindow" not in t for t in again["tenants"])

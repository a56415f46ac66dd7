"""The loop's scheduling, on its own (no apiserver): backoff holds every trigger but urgent
news, a suspended CUSync polls nothing, and a reconcile that raises is a counted failure
with a retry, never an exception out of the loop (issue 20.3/20.4)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from reconciler.controller import loop, watches


@pytest.fixture
def controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> loop.Controller:
    cfg = loop.Config(
        repo="https://user:t0ken@git.example.com/r.git",
        interval=0.01,
        resync=0.02,
        cache=tmp_path,
        debounce=0.0,
    )
    c = loop.Controller(ApiClient(), cfg)
    c.calls = []  # type: ignore[attr-defined]

    def reconcile_once(why: set[str], rid: str = "") -> None:
        c.calls.append(set(why))  # type: ignore[attr-defined]
        raise ConnectionRefusedError("apiserver down")

    monkeypatch.setattr(c, "reconcile_once", reconcile_once)
    monkeypatch.setattr(c, "_get_sync", lambda: (_ for _ in ()).throw(ConnectionRefusedError()))
    return c


def _ticks(c: loop.Controller, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c._tick()
        time.sleep(0.005)


def test_the_seed_url_keeps_no_credentials(controller: loop.Controller) -> None:
    assert controller.source.url == "https://git.example.com/r.git"
    assert controller.mirror.url == "https://git.example.com/r.git"
    assert controller.mirror.credentials is not None


def test_a_failure_backs_off_and_polls_resyncs_and_events_wait(
    controller: loop.Controller,
) -> None:
    controller.request("poll")
    controller._tick()
    calls: list[Any] = controller.calls  # type: ignore[attr-defined]
    assert len(calls) == 1
    assert controller._failures == 1 and controller._retry_at > time.monotonic()
    text = controller.metrics.registry.get_sample_value(
        "cu_reconcile_total", {"result": "APIServerUnavailable"}
    )
    assert text == 1.0
    assert controller.outages.down
    # 0.3 s of polls every 10 ms, resyncs every 20 ms and a node event: all wait for the retry
    controller.changed(watches.Change("Node", "MODIFIED", "u1", "7"))
    _ticks(controller, 0.3)
    assert len(calls) <= 2, calls  # the first retry falls due after 0.5–1 s at the earliest
    # A push is urgent: tried at once, and the backoff grows.
    controller._retry_at = time.monotonic() + 60
    controller.request("webhook")
    controller._tick()
    assert "webhook" in calls[-1]
    assert controller._failures >= 2


def test_the_backoff_doubles_with_jitter_and_is_capped(controller: loop.Controller) -> None:
    delays = []
    for _ in range(12):
        before = time.monotonic()
        controller._schedule_retry()
        delays.append(controller._retry_at - before)
    for n, d in enumerate(delays[:8]):
        assert 2**n / 2 - 0.01 <= d <= 2**n + 0.01
    assert max(delays) <= controller.config.backoff_cap + 0.01


def test_a_suspended_controller_polls_nothing(controller: loop.Controller) -> None:
    controller._suspended = True
    controller._synced_at = time.monotonic() + 3600  # no resync in this test
    calls: list[Any] = controller.calls  # type: ignore[attr-defined]
    controller.changed(watches.Change("ResourceSlice", "ADDED", "u2", "9"))
    _ticks(controller, 0.2)
    assert calls == []
    controller.changed(watches.Change("CUSync", "MODIFIED", "u3", "10"))
    controller._tick()
    assert calls and "watch:CUSync" in calls[-1]


def test_the_spec_is_followed_and_a_url_with_credentials_is_split(
    controller: loop.Controller,
) -> None:
    spec = {
        "git": {"url": "https://bob:pw@other.example.com/r.git", "branch": "rel", "path": "x"},
        "interval": "5m",
        "cluster": "dc-east",
    }
    controller._follow(spec, "rid")
    assert controller.source == loop.Source(
        "https://other.example.com/r.git", "rel", "x", 300.0, "dc-east"
    )
    m = controller.mirror
    assert (m.url, m.branch, m.subpath) == ("https://other.example.com/r.git", "rel", "x")
    assert m.credentials is not None and m.credentials.password == "pw"
    # Back to the seed URL (spec without one): the flag's credentials again.
    controller._follow({"git": {}}, "rid")
    assert controller.mirror.url == "https://git.example.com/r.git"
    assert controller.mirror.credentials is not None
    assert controller.mirror.credentials.password == "t0ken"
    # An unreadable interval keeps the flag's (0.01 s here); any is floored at a second.
    controller._follow({"interval": "soon"}, "rid")
    assert controller.source.interval == max(loop.MIN_INTERVAL, controller.config.interval)
    controller._follow({"interval": "1ms"}, "rid")
    assert controller.source.interval == loop.MIN_INTERVAL


def test_a_degraded_reconcile_still_sends_fence_and_shortfall_events(
    controller: loop.Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from reconciler.controller import pipeline
    from reconciler.controller.reasons import Reason

    sent: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        controller.recorder,
        "emit",
        lambda type_, reason, note, action="Reconcile": sent.append((type_, reason, note)),
    )
    plan = SimpleNamespace(report=SimpleNamespace(decisions=()))
    outcome = pipeline.Outcome(Reason.DEGRADED, "1 objects not converged", "r", plan=plan)  # type: ignore[arg-type]
    status = {
        "lastError": {"message": "1 objects not converged"},
        "conditions": [],
        "fenceFindings": [{"namespace": "team-a", "name": "sneaky", "reason": "tolerates"}],
        "shortfalls": [{"message": "promise not deliverable: tenant t in pool p: ..."}],
    }
    controller._events(outcome, 0, status, {})
    reasons = [r for _, r, _ in sent]
    assert reasons == ["ReconciliationDegraded", "FenceFinding", "PromiseNotDeliverable"]
    assert "team-a/sneaky" in sent[1][2]


def test_an_ended_outage_is_reported_soon_and_retried_not_left_for_the_resync(
    controller: loop.Controller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20.6: the first status write after an etcd outage may fail; the outage must not
    wait for the next resync (minutes away) to reach the status."""
    calls: list[set[str]] = []
    monkeypatch.setattr(controller, "reconcile_once", lambda why, rid="": calls.append(set(why)))
    controller._synced_at = controller._polled_at = time.monotonic() + 3600  # nothing else due
    controller.outages.failed("etcd down")
    controller._tick()
    assert calls == [], "nothing to report while it lasts"
    controller.outages.succeeded()
    controller._tick()
    assert calls == [{"outage"}]
    controller._tick()
    assert len(calls) == 1, f"spaced by {loop.OUTAGE_REPORT_EVERY}s, not a hot loop"
    controller._outage_report_at = 0.0  # the write failed and the spacing has passed
    controller._tick()
    assert calls[-1] == {"outage"} and len(calls) == 2
    assert controller.outages.take() is not None  # written: nothing pending any more
    controller._outage_report_at = 0.0
    controller._tick()
    assert len(calls) == 2

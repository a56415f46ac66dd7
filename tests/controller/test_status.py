"""Pure parts of the controller: kstatus conditions, the CUSync status, webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from reconciler.controller import conditions as cond
from reconciler.controller import pipeline, webhook
from reconciler.controller import status as st
from reconciler.controller.reasons import Reason
from reconciler.model import diagnostics


def test_transition_time_moves_only_when_status_reason_or_message_change() -> None:
    ready = cond.Condition(cond.Type.READY, True, "ReconciliationSucceeded", "Applied revision a")
    first = cond.merge([], [ready], 1, "T1")
    assert first[0]["lastTransitionTime"] == "T1"
    assert cond.merge(first, [ready], 2, "T2")[0]["lastTransitionTime"] == "T1"
    moved = cond.Condition(cond.Type.READY, True, "ReconciliationSucceeded", "Applied revision b")
    assert cond.merge(first, [moved], 2, "T3")[0]["lastTransitionTime"] == "T3"


def test_reconciling_and_stalled_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="cannot both"):
        cond.merge(
            [],
            [
                cond.Condition(cond.Type.RECONCILING, True, "x", "y"),
                cond.Condition(cond.Type.STALLED, True, "x", "y"),
            ],
            1,
            "T",
        )


def test_an_unchanged_outcome_yields_an_identical_status() -> None:
    ok = pipeline.Outcome(Reason.SUCCEEDED, "0 objects written", revision="abc")
    one = st.compute({}, ok, 1, "T1")
    assert st.compute(one, ok, 1, "T2") == one
    assert one["lastAppliedRevision"] == "abc"
    assert [c["type"] for c in one["conditions"]] == ["Ready"]


def test_an_invalid_commit_stalls_with_its_location_and_keeps_the_applied_revision() -> None:
    ok = st.compute({}, pipeline.Outcome(Reason.SUCCEEDED, "", revision="good"), 1, "T1")
    d = diagnostics.Diagnostic("pools/batch.yaml", 18, 3, "E101", "unknown field")
    bad = pipeline.Outcome(Reason.VALIDATION_FAILED, "1 errors", revision="bad", diagnostics=(d,))
    status = st.compute(ok, bad, 1, "T2")
    assert status["lastAppliedRevision"] == "good"
    assert status["lastAttemptedRevision"] == "bad"
    assert status["lastError"] == {
        "message": "E101: unknown field",
        "file": "pools/batch.yaml",
        "line": 18,
    }
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types == {"Ready": "False", "Stalled": "True"}
    assert st.compute(status, bad, 1, "T3") == status, "a stalled controller writes nothing"
    assert not st.needs_progress(status, "bad", 1)
    assert st.needs_progress(status, "next", 1)


def test_a_transient_failure_is_reconciling_with_retry() -> None:
    failed = pipeline.Outcome(Reason.APPLY_FAILED, "HTTP 503", revision="r")
    status = st.compute({}, failed, 1, "T")
    types = {c["type"]: c["reason"] for c in status["conditions"]}
    assert types == {"Ready": "ApplyFailed", "Reconciling": st.RETRYING}


def test_repeated_transient_failures_end_stalled_and_a_success_clears_it() -> None:
    failed = pipeline.Outcome(Reason.SOURCE_FAILED, "fetch x: unreachable", revision="r")
    status: dict[str, object] = {}
    seen = []
    for n in range(1, 7):
        status = st.compute(status, failed, 1, f"T{n}", failures=n, stall_after=5)
        seen.append({c["type"]: c["status"] for c in status["conditions"]})  # type: ignore[attr-defined]
    assert seen[3] == {"Ready": "False", "Reconciling": "True"}
    assert seen[4] == seen[5] == {"Ready": "False", "Stalled": "True"}
    stalled = [c for c in status["conditions"] if c["type"] == "Stalled"]  # type: ignore[attr-defined]
    assert stalled[0]["reason"] == "GitOperationFailed"
    assert stalled[0]["message"].startswith("failed 5 times in a row")
    assert stalled[0]["lastTransitionTime"] == "T5", "6th failure: same message, no write"
    ok = st.compute(status, pipeline.Outcome(Reason.SUCCEEDED, "", revision="r"), 1, "T7")
    assert [(c["type"], c["status"]) for c in ok["conditions"]] == [("Ready", "True")]


def test_suspended_keeps_ready_drops_reconciling_and_observes_the_generation() -> None:
    failed = pipeline.Outcome(Reason.APPLY_FAILED, "HTTP 503", revision="r")
    status = st.compute({}, failed, 1, "T")
    out = st.suspended(status, 2)
    assert out["observedGeneration"] == 2
    assert [c["type"] for c in out["conditions"]] == ["Ready"]
    assert st.suspended(out, 2) == out, "a suspended controller writes nothing more"


def test_credentials_in_a_message_never_reach_the_status() -> None:
    failed = pipeline.Outcome(
        Reason.SOURCE_FAILED,
        "fetch https://x-access-token:ghp_SECRET@github.com/o/r.git main: 403",
        revision="r",
    )
    text = json.dumps(st.compute({}, failed, 1, "T"))
    assert "ghp_SECRET" not in text and "x-access-token" not in text
    assert "https://***@github.com/o/r.git" in text


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Hub-Signature-256", "sha256={digest}"),
        ("X-Gitea-Signature", "{digest}"),
        ("X-Gitlab-Token", "{secret}"),
    ],
)
def test_webhook_signatures_of_each_forge(header: str, value: str) -> None:
    secret, body = b"k3y", json.dumps({"ref": "refs/heads/main"}).encode()
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    good = {header: value.format(digest=digest, secret=secret.decode())}
    assert webhook.verified(secret, good, body)
    assert not webhook.verified(b"other", good, body)
    assert not webhook.verified(secret, good, body + b" ") or header == "X-Gitlab-Token"
    assert not webhook.verified(secret, {}, body)
    assert webhook.pushed_branch(body) == "main"
    assert webhook.pushed_branch(b"not json") is None


def test_the_metric_names_are_the_published_contract() -> None:
    from prometheus_client.exposition import generate_latest

    from reconciler.controller import metrics

    m = metrics.Metrics()
    m.set_revision("desired", "a")
    m.set_revision("desired", "b")
    m.set_figures(
        {
            "pools": [
                {
                    "name": "p",
                    "capacityCU": 8,
                    "guaranteedCU": 4,
                    "admittedCU": 2,
                    "pendingClaims": 1,
                }
            ],
            "tenants": [{"name": "t", "pool": "p", "guaranteedCU": 4, "admittedCU": 2}],
        }
    )
    m.set_drift({"H100": 2})
    m.reconcile_total.labels("ReconciliationSucceeded").inc()
    m.reconcile_duration.labels("ReconciliationSucceeded").observe(0.3)
    m.objects_applied.labels("ResourceSlice", "created").inc()
    m.git_fetch_errors.inc()
    m.factor_table_age.set(5)
    text = generate_latest(m.registry).decode()
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert {
        "cu_reconcile_duration_seconds_bucket",
        "cu_reconcile_total",
        "cu_objects_applied_total",
        "cu_pool_capacity_cu",
        "cu_pool_guaranteed_cu",
        "cu_pool_admitted_cu",
        "cu_tenant_guaranteed_cu",
        "cu_tenant_admitted_cu",
        "cu_pending_claims",
        "cu_revision_info",
        "cu_git_fetch_errors_total",
        "cu_factor_table_age_seconds",
        "cu_factor_drift_alarms",
    } <= names
    assert 'cu_revision_info{kind="desired",revision="b"} 1.0' in text
    assert 'revision="a"' not in text, "one series per kind"

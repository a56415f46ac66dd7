"""The CUSync is the API (issue 23.3) and every failure is visible (issue 20.3/20.4/20.5), on
the real control plane with ``cuctl run`` as a subprocess.

Each test drives one transition through the CUSync itself and checks what kstatus, Argo CD
(the shipped Lua health) and a person see: spec changes followed (URL, branch), observedGeneration
only with the new spec in force, suspend and resume, a failing source Reconciling then Stalled
with an Event and a metric and no hot loop, credentials in the URL kept out of spec, status,
Events and logs, SIGTERM honoured within seconds while failing (and mid-reconcile, idle, suspended
and with etcd down), and a CUSync nobody reconciled
yet counted as in progress.
"""

from __future__ import annotations

import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Any

import git
import pytest
from harness import Env, Replica, install_crd, wait_for
from kubernetes.client import ApiClient

from reconciler.controller import status as st
from reconciler.devcluster import rawapi

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "deploy" / "argocd" / "resource_customizations" / "cu-reconciler.io" / "CUSync"
EVENTS = "/apis/events.k8s.io/v1/namespaces/default/events"


def _argocd(obj: dict[str, Any]) -> str:
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "gitops"))
    from test_health_lua import health

    return health(LUA, obj)["status"]


def _kstatus(obj: dict[str, Any]) -> str:
    """kstatus' generic rules (sigs.k8s.io/cli-utils status.checkGenericProperties)."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"]["generation"]:
        return "InProgress"
    for c in status.get("conditions") or ():
        if c["type"] == "Reconciling" and c["status"] == "True":
            return "InProgress"
        if c["type"] == "Stalled" and c["status"] == "True":
            return "Failed"
    return "Current"


def _drop_claim(root: Path) -> None:
    (root / "claims" / "search-ranking" / "query-rewrite.yaml").unlink()


def _patch(env: Env, spec: dict[str, Any]) -> int:
    body = rawapi.request(
        env.admin,
        "PATCH",
        st.path("default"),
        body={"spec": spec},
        content_type="application/merge-patch+json",
    )
    return int(body["metadata"]["generation"])


def _conditions(env: Env) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c["reason"])
        for c in (env.sync().get("status") or {}).get("conditions") or ()
    }


def _events(env: Env) -> list[dict[str, Any]]:
    items = rawapi.request(env.admin, "GET", EVENTS)["items"]
    return [e for e in items if (e.get("regarding") or {}).get("kind") == "CUSync"]


def test_a_cusync_nobody_reconciled_is_in_progress_to_kstatus_and_argocd(api: ApiClient) -> None:
    install_crd(api)
    body = {
        "apiVersion": f"{st.GROUP}/{st.VERSION}",
        "kind": st.KIND,
        "metadata": {"name": "unreconciled"},
        "spec": {"git": {"url": "https://git.example.com/x.git"}},
    }
    try:
        rawapi.request(api, "POST", st.COLLECTION, body=body)
        created = rawapi.request(api, "GET", st.path("unreconciled"))
        assert created["status"] == {"observedGeneration": 0}
        assert _kstatus(created) == "InProgress"
        assert _argocd(created) == "Progressing"
    finally:
        rawapi.delete(api, st.path("unreconciled"))


def test_the_spec_is_followed_url_and_branch_with_observed_generation(env: Env) -> None:
    env.start(interval="1s", resync="10m")
    first = env.ready_at(env.head())
    assert _kstatus(first) == "Current" and _argocd(first) == "Healthy"
    # A second remote with one more commit, on another branch: the spec points there.
    other = env.work / "other.git"
    shutil.copytree(env.remote, other)
    clone = git.Repo.clone_from(str(other), env.work / "other-clone", branch="main")
    clone.git.checkout("-b", "release")
    _drop_claim(Path(clone.working_dir))
    clone.git.add(A=True)
    clone.index.commit("release: one claim fewer")
    clone.git.push("origin", "release")
    wanted = clone.head.commit.hexsha
    generation = _patch(env, {"git": {"url": str(other), "branch": "release"}})

    def on_new_source() -> dict[str, Any] | None:
        sync = env.sync()
        status = sync.get("status") or {}
        ready = _conditions(env).get("Ready")
        if status.get("lastAppliedRevision") == wanted and ready == (
            "True",
            "ReconciliationSucceeded",
        ):
            return sync
        return None

    sync = wait_for("the CUSync Ready on the new URL and branch", on_new_source, 60)
    assert sync["status"]["observedGeneration"] == generation
    assert _kstatus(sync) == "Current"


def test_suspend_does_nothing_until_resumed(env: Env) -> None:
    replica = env.start(interval="1s", resync="2s")
    applied = env.ready_at(env.head())["status"]["lastAppliedRevision"]
    generation = _patch(env, {"suspend": True})
    wait_for(
        "the suspension observed",
        lambda: (env.sync().get("status") or {}).get("observedGeneration") == generation,
        30,
    )
    suspended = env.sync()
    assert _argocd(suspended) == "Suspended"
    assert "Reconciling" not in _conditions(env)
    assert "cu_suspended 1.0" in replica.metrics()
    before = len(replica.lines())
    sha = env.commit("drop a claim", _drop_claim)
    time.sleep(6)  # six polls and three resyncs would have fallen due
    assert env.sync()["status"]["lastAppliedRevision"] == applied
    assert env.sync()["status"].get("lastAttemptedRevision") != sha
    news = replica.lines()[before:]
    assert not [line for line in news if line.get("msg") == "reconcile"], "nothing reconciled"
    assert len(news) < 10, "no loop while suspended"
    generation = _patch(env, {"suspend": False})
    resumed = env.ready_at(sha, timeout=30)
    assert resumed["status"]["observedGeneration"] == generation
    reasons = {e["reason"] for e in _events(env)}
    assert {"Suspended", "Resumed"} <= reasons


def test_a_failing_source_is_reconciling_then_stalled_visible_and_without_a_hot_loop(
    env: Env,
) -> None:
    replica = env.start(interval="1s", resync="2s")
    env.ready_at(env.head())
    t0 = time.monotonic()
    _patch(env, {"git": {"url": str(env.work / "gone.git")}})

    def retrying() -> bool:
        return _conditions(env).get("Reconciling") == ("True", st.RETRYING)

    wait_for("Reconciling with retry", retrying, 30)
    assert _conditions(env)["Ready"] == ("False", "GitOperationFailed")
    assert _argocd(env.sync()) == "Progressing"

    def stalled() -> bool:
        return _conditions(env).get("Stalled", ("", ""))[0] == "True"

    wait_for("Stalled after repeated failures", stalled, 90)
    sync = env.sync()
    assert _kstatus(sync) == "Failed" and _argocd(sync) == "Degraded"
    assert "Reconciling" not in _conditions(env)
    elapsed = time.monotonic() - t0
    failures = [line for line in replica.lines() if line.get("result") == "GitOperationFailed"]
    # Backoff 1, 2, 4, 8, 16 s (jittered to half at least): a handful, not hundreds.
    assert 5 <= len(failures) <= 5 + elapsed / 2, (len(failures), elapsed)
    text = replica.metrics()
    assert 'cu_reconcile_total{result="GitOperationFailed"}' in text
    assert 'cu_condition{reason="GitOperationFailed",status="True",type="Stalled"} 1.0' in text
    reasons = {e["reason"] for e in _events(env)}
    assert {"GitOperationFailed", "Stalled"} <= reasons
    # Fixed in the spec: Ready again, Stalled gone.
    _patch(env, {"git": {"url": str(env.remote)}})
    env.ready_at(env.head(), timeout=60)
    assert set(_conditions(env)) == {"Ready", "DriverRegistered"}


def test_credentials_stay_secret_and_sigterm_is_honoured_while_git_is_unreachable(
    env: Env,
) -> None:
    token = "ghp_s3cr3tT0ken"
    replica = env.start(
        interval="1s",
        resync="2s",
        extra=("--repo", f"https://x-access-token:{token}@127.0.0.1:9/nowhere.git"),
    )

    def failing() -> bool:
        return _conditions(env).get("Ready", ("", ""))[1] == "GitOperationFailed"

    wait_for("Ready=False on the unreachable source", failing, 60)
    sync = env.sync()
    assert sync["spec"]["git"]["url"] == "https://127.0.0.1:9/nowhere.git"
    time.sleep(4)
    events = _events(env)
    assert events
    log = replica.log.read_text()
    for where in (str(sync), str(events), log):
        assert token not in where
    fetches = [line for line in replica.lines() if line.get("result") == "GitOperationFailed"]
    assert len(fetches) <= 6, f"{len(fetches)} failed fetches in about 5 s: a hot loop"
    # The webhook port refuses an unbounded body before reading it, and logs no traceback.
    with socket.create_connection(("127.0.0.1", replica.webhook_port), timeout=5) as s:
        s.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert "Traceback" not in replica.log.read_text()
    t0 = time.monotonic()
    assert replica.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 10


def test_an_etcd_outage_is_logged_counted_and_reported_once_it_is_back(env: Env) -> None:
    """Issue 20.6: a 60 s etcd outage showed in no log line, metric, status or Event."""
    replica = env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    t0 = time.monotonic()
    env.cp.kill("etcd")
    try:
        wait_for(
            "the outage in the controller's log",
            lambda: any(line.get("msg") == "apiserver unreachable" for line in replica.lines()),
            45,
        )
        assert "cu_apiserver_up 0.0" in replica.metrics()
    finally:
        env.cp.restart("etcd")
        down = time.monotonic() - t0

    def reported() -> dict[str, Any] | None:
        found = (env.sync().get("status") or {}).get("lastOutage")
        return dict(found) if found else None

    outage = wait_for("status.lastOutage", reported, 120)
    # From the first request that failed to the first that succeeded: within the downtime.
    assert 0 < outage["seconds"] <= down + 30 and outage["error"] and outage["start"]
    assert any(line.get("msg") == "apiserver reachable again" for line in replica.lines())
    text = replica.metrics()
    assert "cu_apiserver_up 1.0" in text
    assert "cu_apiserver_errors_total" in text
    wait_for(
        "the APIServerUnavailable Event",
        lambda: any(e["reason"] == "APIServerUnavailable" for e in _events(env)),
        30,
    )
    assert replica.proc.poll() is None


def test_sigterm_is_honoured_within_seconds_while_a_git_fetch_hangs(env: Env) -> None:
    """Issue 20.4: one run ignored SIGTERM for over 60 s. A remote that accepts the
    connection and never answers holds git; the controller still exits at once."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        replica = env.start(extra=("--repo", f"https://127.0.0.1:{port}/hangs.git"))
        wait_for(
            "the CUSync created (the fetch is under way)",
            lambda: env.sync().get("spec"),
            60,
        )
        time.sleep(2)
        assert replica.proc.poll() is None
        assert not [line for line in replica.lines() if line.get("result")], "git hangs"
        t0 = time.monotonic()
        assert replica.stop(signal.SIGTERM) == 0
        assert time.monotonic() - t0 < 12


def _timed_stop(replica: Replica) -> float:
    t0 = time.monotonic()
    assert replica.stop(signal.SIGTERM) == 0, "SIGTERM: a clean exit"
    return time.monotonic() - t0


def test_sigterm_is_honoured_within_seconds_in_every_state(env: Env) -> None:
    """Issue 20.4: SIGTERM within a few seconds whatever the controller is doing. Covered
    elsewhere: standby (test_controller), Git unreachable and a hanging fetch (above), idle as
    leader (test_memory_limit). Here: in the middle of the first reconcile, suspended, and with
    etcd down."""
    first = env.start(interval="1s", resync="30s")
    wait_for(
        "the first reconcile under way",
        lambda: any(line.get("msg") == "reconcile" for line in first.lines()),
        60,
    )
    assert _timed_stop(first) < 10, "mid-reconcile: 5 s for the reconcile, 3 s for the Lease"

    suspended = env.start("replica-2", interval="1s", resync="2s")
    env.ready_at(env.head())
    generation = _patch(env, {"suspend": True})
    wait_for(
        "the suspension observed",
        lambda: (env.sync().get("status") or {}).get("observedGeneration") == generation,
        30,
    )
    assert _timed_stop(suspended) < 10, "suspended"
    _patch(env, {"suspend": False})

    outage = env.start("replica-3", interval="1s", resync="30s")
    wait_for(
        "the last replica leading",
        lambda: any(line.get("leading") is True for line in outage.lines()),
        60,
    )
    env.cp.kill("etcd")
    try:
        wait_for(
            "the outage in the controller's log",
            lambda: any(line.get("msg") == "apiserver unreachable" for line in outage.lines()),
            45,
        )
        assert _timed_stop(outage) < 12, "etcd down: the Lease release is bounded too"
    finally:
        env.cp.restart("etcd")

"""Issue 19 item 5, on the real control plane: a writer that lost the Lease stops writing, and
SIGTERM/SIGINT release it at once.

``cuctl apply`` runs as a process, as the reconciler's ServiceAccount, on the example fleet:
- paused (SIGSTOP) while holding the Lease, another holder takes the Lease, resumed
  (SIGCONT): exit 3 naming the new holder and what was written, and no object changes after
  the pause (every uid and resourceVersion as they were);
- SIGTERM or SIGINT while it holds the Lease: it stops before its next wave, exits promptly
  and leaves the Lease released, so the next writer takes it at once (not after 15 s).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient
from live_fleet import Fleet, owned

from reconciler import devcluster, kube
from reconciler.apply import lease as leases
from reconciler.devcluster import identity, rawapi

pytestmark = pytest.mark.integration

LEASE = "/apis/coordination.k8s.io/v1/namespaces/cu-system/leases/cu-reconciler"


@pytest.fixture
def sa_kubeconfig(control_plane: devcluster.ControlPlane, fleet: Fleet) -> Iterator[Path]:
    """The reconciler's kubeconfig; the Lease (and the record on it) is removed afterwards."""
    account = identity.install_rbac(fleet.admin)
    yield identity.service_account_kubeconfig(fleet.admin, control_plane.kubeconfig, *account)
    rawapi.delete(fleet.admin, LEASE)


def _start(fleet: Fleet, kubeconfig: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "reconciler.cli", "apply", str(fleet.repo.working_dir)]
    return subprocess.Popen(
        [*cmd, "--rev", "HEAD", "--kubeconfig", str(kubeconfig), "--lease-wait", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _holder(api: ApiClient) -> str:
    resp = kube.call(api, "GET", LEASE)
    lease = resp.data if resp.ok and isinstance(resp.data, dict) else {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def _wait_held(api: ApiClient, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not _holder(api).startswith("cuctl-apply@"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "cuctl apply never took the Lease"
        time.sleep(0.02)


def _versions(api: ApiClient) -> dict[str, tuple[str, str]]:
    return {
        f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}": (
            o["metadata"]["uid"],
            o["metadata"]["resourceVersion"],
        )
        for o in owned(api)
    }


def test_a_paused_apply_that_lost_the_lease_writes_nothing_more(
    fleet: Fleet, sa_kubeconfig: Path
) -> None:
    proc = _start(fleet, sa_kubeconfig)
    try:
        _wait_held(fleet.admin, proc)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.5)  # requests already sent land
        before = _versions(fleet.admin)
        # Another writer takes the Lease (as a controller would once it saw it expire).
        lease = rawapi.request(fleet.admin, "GET", LEASE)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease["spec"].update(holderIdentity="controller-replica-9", renewTime=now)
        rawapi.request(fleet.admin, "PUT", LEASE, body=lease)
        os.kill(proc.pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err
    assert "ReconciliationInterrupted" in err
    assert "held by 'controller-replica-9'" in err
    # Resumed at a wave boundary, the checkpoint stops the apply and says what was written;
    # resumed inside a wave, each remaining write is refused before it is sent (HeldWriter).
    at_checkpoint = "objects written before it" in err and "stopped before writing" in err
    assert at_checkpoint or "not sent: Lease" in err, err
    assert _versions(fleet.admin) == before, "no write after the pause"
    assert _holder(fleet.admin) == "controller-replica-9", "not released: it is not ours"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_releases_the_lease_and_exits_promptly(
    fleet: Fleet, sa_kubeconfig: Path, signum: signal.Signals
) -> None:
    proc = _start(fleet, sa_kubeconfig)
    try:
        _wait_held(fleet.admin, proc)
        proc.send_signal(signum)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 3), err  # 0 only if it had finished before the signal
    if proc.returncode == 3:
        assert "stopped by a signal" in err
    assert took < 20, took
    assert _holder(fleet.admin) == "", "released on the way out"
    nxt = leases.Lease(fleet.reconciler, "next-writer")
    assert nxt.try_acquire(), "the next writer takes it at once"
    nxt.release()


def test_the_apiserver_killed_mid_apply_releases_the_lease_and_names_the_cause(
    fleet: Fleet, sa_kubeconfig: Path, control_plane: devcluster.ControlPlane
) -> None:
    """kill -9 of the apiserver while ``cuctl apply`` holds the Lease, back 3 s later: the
    apply ends (converged, or degraded with the cause named, never a bare Forbidden) and the
    Lease is released on its way out, so the next writer need not wait it out."""
    proc = _start(fleet, sa_kubeconfig)
    try:
        _wait_held(fleet.admin, proc)
        control_plane.kill("kube-apiserver")
        time.sleep(3)
        control_plane.restart("kube-apiserver")
        fleet.admin.rest_client.pool_manager.clear()
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 2, 3), err
    if "403" in err:
        assert "authorization (RBAC) is not ready" in err, err
    assert _holder(fleet.admin) == "", "released on the way out"

"""One writer: the shared Lease against the real apiserver, as the reconciler's ServiceAccount.

Two candidates never both hold it; a held Lease makes a second writer wait a bounded time and
fail naming the holder; a released Lease is taken at once; a holder that stops renewing loses
it after the lease duration; ``cuctl apply`` refuses to write while another holds it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.apply import lease as leases
from reconciler.apply import writer as writers
from reconciler.devcluster import identity, rawapi
from reconciler.observe import cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def sa_kubeconfig(control_plane: devcluster.ControlPlane, api: ApiClient) -> Iterator[Path]:
    account = identity.install_rbac(api)
    path = identity.service_account_kubeconfig(api, control_plane.kubeconfig, *account)
    yield path
    rawapi.delete(api, "/apis/coordination.k8s.io/v1/namespaces/cu-system/leases/cu-reconciler")


def test_one_holder_a_bounded_wait_naming_it_and_release(sa_kubeconfig: Path) -> None:
    with cluster.connect(str(sa_kubeconfig)) as api:
        a = leases.Lease(api, "replica-a")
        b = leases.Lease(api, "replica-b")
        assert a.try_acquire()
        assert not b.try_acquire()
        t0 = time.monotonic()
        with pytest.raises(leases.LeaseHeldError, match="held by 'replica-a'"):
            b.acquire(wait=1.5)
        assert 1.4 <= time.monotonic() - t0 < 5
        assert a.try_acquire(), "the holder renews"
        a.release()
        assert b.try_acquire(), "a released Lease is taken at once"
        assert not a.try_acquire()


def test_a_holder_that_stops_renewing_loses_the_lease_after_its_duration(
    sa_kubeconfig: Path,
) -> None:
    with cluster.connect(str(sa_kubeconfig)) as api:
        dead = leases.Lease(api, "crashed", duration=2)
        assert dead.try_acquire()
        heir = leases.Lease(api, "heir", duration=2)
        t0 = time.monotonic()
        heir.acquire(wait=10, sleep=lambda s: time.sleep(min(s, 0.2)))
        took = time.monotonic() - t0
        assert 1.9 <= took < 4, took
        lease = rawapi.request(api, "GET", heir.path)
        assert lease["spec"]["holderIdentity"] == "heir"
        assert lease["spec"]["leaseTransitions"] == 1


def test_cuctl_apply_waits_then_fails_naming_the_holder(
    sa_kubeconfig: Path, tmp_path: Path
) -> None:
    with cluster.connect(str(sa_kubeconfig)) as api:
        holder = leases.Lease(api, "controller-replica-0")
        with leases.held(holder, wait=5):
            cmd = [sys.executable, "-m", "reconciler.cli", "apply", str(tmp_path)]
            run = subprocess.run(
                [*cmd, "--kubeconfig", str(sa_kubeconfig), "--lease-wait", "1"],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert holder.valid(), "renewed in the background while held"
        assert run.returncode == 2, run.stderr
        assert "held by 'controller-replica-0'" in run.stderr
        lease = rawapi.request(api, "GET", holder.path)
        assert lease["spec"]["holderIdentity"] == "", "released on exit"


def test_in_a_pod_the_service_account_token_is_used(
    control_plane: devcluster.ControlPlane, api: ApiClient, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    """What a Pod sees: KUBERNETES_SERVICE_HOST/PORT and a mounted token and CA."""
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    token = rawapi.request(
        api,
        "POST",
        "/api/v1/namespaces/cu-system/serviceaccounts/cu-reconciler/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    (sa_dir / "token").write_text(token)
    (sa_dir / "ca.crt").write_bytes((control_plane.workdir / "pki" / "ca.crt").read_bytes())
    pod_env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(control_plane.ports.apiserver),
        "HOME": str(tmp_path),
    }
    with cluster.connect(None, environ=pod_env, serviceaccount_dir=sa_dir) as in_pod:
        assert writers.KubeWriter(in_pod).whoami() == identity.username(
            "cu-system", "cu-reconciler"
        )

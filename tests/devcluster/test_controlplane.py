"""The local control plane itself: version, served APIs, gates, RBAC, and a clean stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler import devcluster
from reconciler.devcluster import controlplane, rawapi

pytestmark = pytest.mark.integration


def _versions() -> dict[str, str]:
    env = Path(devcluster.binaries.repo_root(), "hack", "versions.env").read_text()
    return dict(
        line.split("=", 1) for line in env.splitlines() if line and not line.startswith("#")
    )


def _running(pid: int) -> bool:
    """The pid exists and is not a zombie (our CLI's children are reaped by init, not us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(text: Path) -> list[int]:
    """Live pids whose command line contains ``text`` (our components all name the workdir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _running(int(proc.name)):
            try:
                if str(text).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_version_is_the_pinned_release(api: ApiClient) -> None:
    version = rawapi.request(api, "GET", "/version")
    assert version["gitVersion"] == "v" + _versions()["KUBERNETES_VERSION"]
    assert (version["major"], version["minor"]) == ("1", "37")


def test_resource_k8s_io_v1_serves_every_dra_kind(api: ApiClient) -> None:
    group = rawapi.request(api, "GET", "/apis/resource.k8s.io/v1")
    kinds = {r["kind"] for r in group["resources"] if "/" not in r["name"]}
    assert {
        "ResourceSlice",
        "DeviceClass",
        "ResourceClaim",
        "ResourceClaimTemplate",
        "DeviceTaintRule",
    } <= kinds


def test_every_component_runs_with_the_same_feature_gates(
    control_plane: devcluster.ControlPlane,
) -> None:
    expected = "--feature-gates=" + ",".join(
        f"{k}={str(v).lower()}" for k, v in sorted(devcluster.FEATURE_GATES.items())
    )
    for name in ("kube-apiserver", "kube-scheduler", "kube-controller-manager"):
        argv = Path(f"/proc/{control_plane.pids[name]}/cmdline").read_bytes().split(b"\0")
        gates = [a.decode() for a in argv if a.startswith(b"--feature-gates=")]
        assert gates == [expected], name


def test_rbac_is_enforced_for_other_identities(api: ApiClient) -> None:
    api.default_headers["Impersonate-User"] = "someone"
    try:
        with pytest.raises(ApiException) as err:
            rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/resourceslices")
    finally:
        del api.default_headers["Impersonate-User"]
    assert err.value.status == 403
    message = json.loads(err.value.body)["message"]
    assert 'User "someone" cannot list resource "resourceslices"' in message


def test_cli_up_status_down_leaves_no_process_or_port(tmp_path: Path) -> None:
    """A second, independent cluster through the CLI; ``down`` must leave nothing behind."""
    workdir = tmp_path / "cluster"
    cli = [sys.executable, "-m", "reconciler.devcluster"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    up = subprocess.run(
        [*cli, "up", "--dir", str(workdir)], capture_output=True, text=True, env=env
    )
    assert up.returncode == 0, up.stderr
    startup = time.monotonic() - t0
    assert f"export KUBECONFIG={workdir / 'kubeconfig'}" in up.stdout
    cp = controlplane.ControlPlane.from_state(workdir)
    assert cp is not None
    pids, ports = cp.pids, set(cp.ports.all())
    assert set(pids) == set(devcluster.binaries.COMPONENTS)
    assert ports <= controlplane.listening_ports()

    status = subprocess.run([*cli, "status", "--dir", str(workdir)], capture_output=True, text=True)
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("running") == 4

    down = subprocess.run([*cli, "down", "--dir", str(workdir)], capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    for name, pid in pids.items():
        assert not _running(pid), f"{name} (pid {pid}) still runs after down"
    assert not ports & controlplane.listening_ports()
    assert not (workdir / "state.json").exists()
    print(f"CLI up took {startup:.1f}s")


def test_in_process_stop_kills_every_process_group_and_frees_ports(tmp_path: Path) -> None:
    with devcluster.running(tmp_path / "c") as cp:
        pids, ports = cp.pids, set(cp.ports.all())
        assert all(cp.running().values())
        assert cp.startup_seconds < 60, "ready in well under a minute"
    for name, pid in pids.items():
        assert not _running(pid), f"{name} (pid {pid}) still runs after stop"
    assert not ports & controlplane.listening_ports()


def test_a_component_that_cannot_start_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    with pytest.raises(devcluster.StartError) as err:
        devcluster.start(tmp_path / "c", extra_args={"kube-apiserver": ["--no-such-flag"]})
    assert "kube-apiserver exited during start-up" in str(err.value)
    assert "unknown flag: --no-such-flag" in str(err.value)
    assert _processes_mentioning(tmp_path / "c") == [], "etcd was not stopped again"
    assert not (tmp_path / "c" / "state.json").exists()

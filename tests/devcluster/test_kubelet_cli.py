"""`python -m reconciler.devcluster up --kubelets N` starts real kubelets; `down` stops them.

The kubelet nodes are Ready and schedulable next to the API-only seed nodes, publish NVIDIA
devices, run our plugin (its presence Lease is live) and the NVIDIA stand-in; a Pod without
claims reaches Running through the fake runtime; ``down`` leaves no kubelet, plugin or
runtime process and removes the nodes' root directories.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.devcluster import controlplane, kubelets, rawapi, workloads

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_up_with_kubelets_runs_pods_and_down_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "cluster"
    cli = [sys.executable, "-m", "reconciler.devcluster"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    up = subprocess.run(
        [*cli, "up", "--dir", str(workdir), "--seed", "--kubelets", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert "kubelet nodes: kubelet-0" in up.stdout
        state = json.loads((workdir / kubelets.STATE_FILE).read_text())
        procs = state["kubelet-0"]["processes"]
        assert set(procs) == {
            "cri",
            "kubelet",
            "plugin:cu.cu-reconciler.io",
            "plugin:gpu.nvidia.com",
        }
        cp = controlplane.ControlPlane.from_state(workdir)
        assert cp is not None
        with cp.api_client() as api:
            node = rawapi.request(api, "GET", "/api/v1/nodes/kubelet-0")
            assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
            assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
            nodes = rawapi.request(api, "GET", "/api/v1/nodes")["items"]
            assert len(nodes) == 6, "five API-only seed nodes and the kubelet node"
            kubelets.wait_lease(api, "kubelet-0", timeout=30)
            kubelets.ensure_namespace(api, "demo")
            pod = workloads.pod("plain")
            pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "kubelet-0"}
            pod["spec"]["automountServiceAccountToken"] = False
            workloads.create(api, "demo", pod)
            workloads.wait_for(
                lambda: (
                    workloads.get(api, "demo", "Pod", "plain")["status"].get("phase") == "Running"
                ),
                timeout=90,
                what="Pod Running on kubelet-0",
            )
    finally:
        down = subprocess.run([*cli, "down", "--dir", str(workdir)], capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    for name, p in procs.items():
        assert not _running(int(p["pid"])), f"{name} still runs after down"
    assert not Path(state["kubelet-0"]["root"]).exists()
    assert not (workdir / kubelets.STATE_FILE).exists()

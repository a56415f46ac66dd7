"""`python -m reconciler.devcluster up --kubelets N` starts real kubelets; `down` stops them.

The kubelet nodes are Ready and schedulable next to the API-only seed nodes, publish the
seed's models one vendor after another (NVIDIA H100, then Biren BR104), run our plugin under
the ``--repo``'s ClusterSettings.spec.driverName (its presence Lease is live and names it)
and the vendor's stand-in; a Pod without
claims reaches Running through the fake runtime; ``down`` leaves no kubelet, plugin or
runtime process and removes the nodes' root directories.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.devcluster import controlplane, kubelets, rawapi, workloads

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


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
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    settings = repo / "cluster.yaml"
    settings.write_text(settings.read_text().replace("cu.cu-reconciler.io", "cu.edge.example.com"))
    up = subprocess.run(
        [*cli, "up", "--dir", str(workdir), "--seed", "--kubelets", "2", "--repo", str(repo)],
        capture_output=True,
        text=True,
        env=env,
    )
    try:
        assert up.returncode == 0, up.stderr
        assert "kubelet nodes: kubelet-0, kubelet-1" in up.stdout
        state = json.loads((workdir / kubelets.STATE_FILE).read_text())
        procs = state["kubelet-0"]["processes"]
        assert set(procs) == {
            "cri",
            "kubelet",
            "plugin:cu.edge.example.com",
            "plugin:gpu.nvidia.com",
        }
        assert "plugin:gpu.biren.example.com" in state["kubelet-1"]["processes"]
        ours = Path(f"/proc/{procs['plugin:cu.edge.example.com']['pid']}/cmdline").read_bytes()
        assert b"--mode=cu" in ours.split(b"\0"), "a custom driver name still serves CU"
        cp = controlplane.ControlPlane.from_state(workdir)
        assert cp is not None
        with cp.api_client() as api:
            node = rawapi.request(api, "GET", "/api/v1/nodes/kubelet-0")
            assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
            assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
            nodes = rawapi.request(api, "GET", "/api/v1/nodes")["items"]
            assert len(nodes) == 7, "five API-only seed nodes and the two kubelet nodes"
            for name in ("kubelet-0", "kubelet-1"):
                lease = kubelets.wait_lease(api, name, timeout=30)
                assert lease["spec"]["holderIdentity"] == f"cu.edge.example.com@{name}"
            slices = rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/resourceslices")
            by_node = {
                s["spec"].get("nodeName"): s["spec"]["driver"]
                for s in slices["items"]
                if str(s["spec"].get("nodeName", "")).startswith("kubelet-")
            }
            assert by_node["kubelet-0"] == "gpu.nvidia.com"
            assert by_node["kubelet-1"] == "gpu.biren.example.com", "two vendors"
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
    for node in ("kubelet-0", "kubelet-1"):
        for name, p in state[node]["processes"].items():
            assert not _running(int(p["pid"])), f"{node} {name} still runs after down"
        assert not Path(state[node]["root"]).exists()
    assert not (workdir / kubelets.STATE_FILE).exists()

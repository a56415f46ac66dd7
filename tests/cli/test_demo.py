"""The quick start's main job, ``cuctl demo``, runs end to end and tells the story it claims.

It starts its own control plane (the demo is what a person runs on a fresh machine), so this
test needs the built binaries like every integration test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler import devcluster

pytestmark = pytest.mark.integration


def test_demo_runs_end_to_end(control_plane: devcluster.ControlPlane, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "demo", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r"cuctl apply: ReconciliationSucceeded at \w+: \d+ objects written", out)
    assert "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete" in out, "second plan"
    # kube-scheduler co-allocated CU devices with their exact vendor GPUs.
    pairs = re.findall(r"request cu-(\d+): cu\.cu-reconciler\.io (\S+)/nvidia-(gpu-\d+)", out)
    gpus = re.findall(r"request gpu-(\d+)/nvidia: gpu\.nvidia\.com (\S+)/(gpu-\d+)", out)
    assert pairs and sorted(pairs) == sorted(gpus)
    assert re.search(r"ResourceSlice/cu-\S+ deleted", out), "the lost node's slice is pruned"
    assert "what-if: lose node h100-02: 8 devices removed" in out
    assert re.search(r"Recommended mix \(covers every demand\): [\d,.]+ USD/h", out)
    # Peaks and troughs: one commit, previewed by day and by night.
    assert "Guarantee windows at 2026-12-07T02:00:00Z (next edge 2026-12-07T16:00:00Z):" in out
    assert "   * night: Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-08:00 → 1000 CU" in out
    assert "factors(learned):" in out
    assert "spec.priority: 300 → 700" in out and "Dana Research <dana@example.invalid>" in out
    assert re.search(r"converged at \w{12} in [\d.]+s", out), "controller mode converges"
    assert re.search(r"^default\s+True\s+\w{40}", out, re.M), "kubectl get cusync: Ready"
    # Pods ran on real kubelet nodes, and their containers got CU facts from our plugin.
    assert re.search(r"Pod \S+ Running on kubelet-batch-0", out), "Whole pool on a kubelet"
    assert re.search(r"Pod \S+ Running on kubelet-prod-0", out), "Fractional pool on a kubelet"
    assert "CU_POOL=batch CU_MODE=whole" in out and "CU_MODE=fractional" in out
    assert "control plane stopped" in out
    config = json.loads((tmp_path / "cluster" / "kubeconfig").read_text())
    port = int(config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1])
    assert port not in devcluster.controlplane.listening_ports(), "the demo stopped its cluster"
    assert not (tmp_path / "cluster" / "state.json").exists(), "nothing left running"

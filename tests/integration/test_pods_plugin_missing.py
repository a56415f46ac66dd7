"""A kubelet node without our plugin is reported by ``cuctl plan``, and its CU is not sold.

Real kubelet, real apiserver: the node runs only the vendor's (stand-in) plugin. ``cuctl
plan --kubeconfig`` reports ``NoKubeletPlugin`` for it; the plan counts none of its devices
as capacity and publishes its CU devices with the ``cu-reconciler.io/no-kubelet-plugin``
NoSchedule taint, so no Pod is scheduled there to fail in FailedPrepareDynamicResources.
Once the plugin runs (its presence Lease is live) the next plan sells the node again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import kubelet_fleet as kf
import pytest
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.devcluster import kubelets, workloads
from reconciler.model import presence

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
ROOT = Path(__file__).resolve().parents[2]


def _cuctl_plan_findings(kubeconfig: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "reconciler.cli", "plan", str(EXAMPLE)),
            *("--kubeconfig", str(kubeconfig), "-o", "json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    findings: list[dict[str, Any]] = json.loads(proc.stdout)["findings"]
    return findings


def _node_slices(result: Any, node: str) -> list[dict[str, Any]]:
    return [
        o
        for o in result.objects
        if o["kind"] == "ResourceSlice" and o["spec"].get("nodeName") == node
    ]


def test_node_without_plugin_is_reported_and_not_sold_until_the_plugin_runs(
    control_plane: devcluster.ControlPlane, api: ApiClient, namespace: str
) -> None:
    run = uuid.uuid4().hex[:6]
    node = kubelets.start_node(
        control_plane,
        api,
        f"kl-{run}-nop",
        vendor_drivers=["gpu.nvidia.com"],
        cu_plugin=False,
        labels={"cu-it": f"{run}-nop"},
    )
    try:
        devcluster.publish_node(api, node.name, "nvidia", "H100", 2)

        # 1. cuctl plan (the CLI, against the live cluster) names the node.
        findings = _cuctl_plan_findings(control_plane.kubeconfig)
        assert {"NoKubeletPlugin"} == {f["code"] for f in findings if f["subject"] == node.name}, (
            findings
        )

        # 2. Its CU is not sellable: no capacity, CU devices tainted against new allocations.
        desired = kf.desired_state(run, namespace, f"{run}-nop", f"{run}-none", ())
        result = kf.plan(api, desired, run, namespace)
        pool = {p.name: p for p in result.report.pools}[f"train-{run}"]
        assert pool.total_milli == 0
        devices = [d for s in _node_slices(result, node.name) for d in s["spec"]["devices"]]
        assert len(devices) == 2
        for device in devices:
            assert presence.TAINT_KEY in {t["key"] for t in device.get("taints", [])}

        # 3. With the plugin running (and registered), the node is sold again.
        plugins = kubelets.build_plugin()
        node.add_plugin(kubelets.CU_DRIVER, plugins.plugin, control_plane.kubeconfig)

        def sold() -> Any:
            again = kf.plan(api, desired, run, namespace)
            pool = {p.name: p for p in again.report.pools}[f"train-{run}"]
            return again if pool.total_milli > 0 else None

        again = workloads.wait_for(sold, timeout=60, what="the node sold once its plugin runs")
        assert not [f for f in again.report.findings if f.subject == node.name]
        for s in _node_slices(again, node.name):
            for device in s["spec"]["devices"]:
                assert presence.TAINT_KEY not in {t["key"] for t in device.get("taints", [])}
    finally:
        node.stop()
        devcluster.withdraw_node(api, node.name)
        devcluster.delete_node(api, node.name)

"""Pods with CU claims start on real kubelets (v1.37, fake CRI runtime) through our plugin.

Proves, against the real apiserver, scheduler, controller manager and kubelets: a Pod with a
Whole-pool claim and a Pod with a Fractional claim reach Running; the runtime's recorded
CreateContainer request carries the CU facts (CDI devices resolved as a runtime does) and,
for the Whole pool, the paired vendor device; deleting the Pods unprepares everything (our
checkpoint and CDI specs, the vendor plugin's too); SIGKILL of the plugin and the kubelet
in the middle keeps Pods Running and the state consistent (a later delete still
unprepares); a Pod deleted while the plugin is down leaves its claim prepared (the kubelet
deletes the Pod object anyway and retries the unprepare), and the retry completes once the
plugin is back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import cu_example as ex
import kubelet_fleet as kf
import pytest
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.devcluster import kubelets, rawapi, workloads

pytestmark = pytest.mark.integration

NVIDIA = "gpu.nvidia.com"
PLUGIN = f"plugin:{kubelets.CU_DRIVER}"


@pytest.fixture
def two_nodes(
    control_plane: devcluster.ControlPlane, api: ApiClient, namespace: str
) -> Iterator[tuple[str, kubelets.KubeletNode, kubelets.KubeletNode, list[str]]]:
    """Kubelet node W (2× H100, Whole pool) and F (2× A100, Fractional pool), each with our
    plugin and the NVIDIA stand-in plugin."""
    run = uuid.uuid4().hex[:6]
    started: list[kubelets.KubeletNode] = []
    made: list[str] = []
    try:
        for role, model in (("w", "H100"), ("f", "A100")):
            node = kubelets.start_node(
                control_plane,
                api,
                f"kl-{run}-{role}",
                vendor_drivers=[NVIDIA],
                labels={"cu-it": f"{run}-{role}"},
            )
            started.append(node)
            devcluster.publish_node(api, node.name, "nvidia", model, 2)
        yield run, started[0], started[1], made
    finally:
        devcluster.workloads.force_delete_pods(api, namespace)
        for path in reversed(made):
            rawapi.delete(api, path)
        for node in started:
            node.stop()
            devcluster.withdraw_node(api, node.name)
            devcluster.delete_node(api, node.name)


def _record(node: kubelets.KubeletNode, pod: str) -> dict[str, Any]:
    records = [r for r in node.containers() if r["pod"] == pod and r["container"] == "main"]
    assert records, f"the runtime recorded no container for {pod}: {node.containers()}"
    return records[-1]


def _allocation(api: ApiClient, namespace: str, claim: str) -> dict[str, dict[str, Any]]:
    status = workloads.get(api, namespace, "ResourceClaim", claim)["status"]
    return {r["request"]: r for r in status["allocation"]["devices"]["results"]}


def test_whole_and_fractional_pods_run_and_unprepare_across_restarts(
    api: ApiClient,
    namespace: str,
    two_nodes: tuple[str, kubelets.KubeletNode, kubelets.KubeletNode, list[str]],
) -> None:
    run, wnode, fnode, made = two_nodes
    claims = (
        ex.claim("whole-a", {"tenant": "t", "pool": f"train-{run}", "cu": 150}),
        ex.claim("frac-a", {"tenant": "t", "pool": f"infer-{run}", "cu": 7}),
    )
    desired = kf.desired_state(run, namespace, f"{run}-w", f"{run}-f", claims)
    result = kf.plan(api, desired, run, namespace)
    decisions = {d.claim: d.status for d in result.report.decisions}
    assert decisions == {"whole-a": "Admitted", "frac-a": "Admitted"}, result.report
    assert not [f for f in result.report.findings if f.subject in (wnode.name, fnode.name)]
    made.extend(kf.apply_plan(api, result, run, namespace))

    # 1. Both Pods reach Running on the kubelet nodes.
    workloads.create(api, namespace, kf.pod("whole", "whole-a"))
    workloads.create(api, namespace, kf.pod("frac", "frac-a"))
    assert kf.wait_running(api, namespace, "whole")["spec"]["nodeName"] == wnode.name
    assert kf.wait_running(api, namespace, "frac")["spec"]["nodeName"] == fnode.name

    # 2. Whole pool: the container got its CU facts and the paired vendor device.
    whole = _allocation(api, namespace, "whole-a")
    cu, gpu = whole["cu-0"], whole["gpu-0/nvidia"]
    rec = _record(wnode, "whole")
    assert not rec.get("error")
    uid = workloads.get(api, namespace, "ResourceClaim", "whole-a")["metadata"]["uid"]
    assert f"{kubelets.CU_DRIVER}/device={uid}-cu-0" in rec["cdiDevices"]
    assert f"{NVIDIA}/device={uid}-gpu-0_nvidia" in rec["cdiDevices"]
    env = rec["cdiEnv"]
    vendor_device = f"{NVIDIA}/{wnode.name}/{gpu['device']}"
    assert env["CU_POOL"] == f"train-{run}"
    assert env["CU_MODE"] == "whole"
    assert env["CU_CLAIM"] == f"{namespace}/whole-a"
    assert env["CU_0_DEVICE"] == f"{wnode.name}/{cu['device']}"
    assert env["CU_0_VENDOR_DEVICE"] == vendor_device
    assert env["DRA_DEVICE_GPU_0_NVIDIA"] == vendor_device, "the vendor plugin prepared it"
    assert int(env["CU_0_AMOUNT"]) >= 150
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env

    # 3. Fractional pool: the share (7 CU rounded up to minStep 5 → 10) and the MPS knobs.
    [share] = _allocation(api, namespace, "frac-a").values()
    rec = _record(fnode, "frac")
    env = rec["cdiEnv"]
    assert env["CU_MODE"] == "fractional"
    assert env["CU_0_AMOUNT"] == share["consumedCapacity"]["cu"] == "10"
    assert env["CU_0_SHARE_ID"] == share["shareID"]
    capacity = int(env["CU_0_CAPACITY"])
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == str(-(-10 * 100 // capacity))
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={env['CU_0_MEMORY_MIB']}M"
    assert "CU_0_VENDOR_DEVICE" not in env, "fractional shares do not hold the vendor device"
    assert len(wnode.checkpoint()["claims"]) == 1 and len(fnode.checkpoint()["claims"]) == 1

    # 4. SIGKILL the plugin and the kubelet of W; both come back, the Pod keeps running.
    before = wnode.checkpoint()
    wnode.kill(PLUGIN)
    wnode.kill("kubelet")
    time.sleep(2)
    assert kf.phase(api, namespace, "whole") == "Running"
    wnode.start("kubelet")
    wnode.start(PLUGIN)
    kubelets.wait_ready(api, wnode)
    time.sleep(5)  # a kubelet sync after restart (it re-prepares running Pods' claims)
    assert kf.phase(api, namespace, "whole") == "Running"
    assert wnode.checkpoint() == before, "a restart neither lost nor duplicated prepared state"
    assert wnode.alive(PLUGIN) and wnode.alive("kubelet")

    # 5. Deleting the Pod after the restarts unprepares through the restarted plugin.
    kf.delete_pod(api, namespace, "whole")
    kf.wait_gone(api, namespace, "whole")
    # The kubelet unprepares the claim with each driver in turn: ours, then the vendor's.
    workloads.wait_for(
        lambda: not wnode.checkpoint()["claims"] and not wnode.cdi_specs(),
        timeout=60,
        what="W unprepared (checkpoint and CDI specs empty)",
    )
    workloads.wait_for(
        lambda: not wnode.checkpoint(NVIDIA)["claims"],
        timeout=60,
        what="the vendor plugin to unprepare too",
    )

    # 6. F: the plugin is down while its Pod is deleted; the unprepare completes once it is back.
    fnode.kill(PLUGIN)
    kf.delete_pod(api, namespace, "frac")
    kf.wait_gone(api, namespace, "frac")  # the kubelet does not hold the Pod object for it
    time.sleep(3)
    assert len(fnode.checkpoint()["claims"]) == 1 and fnode.cdi_specs(), "still prepared"
    fnode.start(PLUGIN)
    workloads.wait_for(
        lambda: not fnode.checkpoint()["claims"] and not fnode.cdi_specs(),
        timeout=60,
        what="F unprepared after the plugin came back",
    )

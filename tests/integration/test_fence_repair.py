"""Issue 18 on the real control plane: hand edits repaired totally, ownership not assertable.

* A ``kubectl edit``-style merge patch turning the fence binding's ``validationActions``
  from ``[Deny]`` into ``[Warn]`` opens the fence (a tenant claim tolerating it is
  admitted); ``cuctl apply`` replaces the binding whole, the fence denies again, and the
  next run is in sync (before, the apply dry run got HTTP 422 ``["Warn","Deny"]`` forever).
* Objects a tenant made wearing every mark we use (label, source annotation, our field
  manager) are not ours: 40 such claims neither trip the delete guard nor get deleted, a
  vendor slice wearing them leaves the run Succeeded, a squatter on a generated claim's name
  is a conflict and a FenceBypass finding; what we created is in the inventory, by uid.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from live_fleet import FENCE_KEY, Fleet, owned
from ruamel.yaml import YAML

from reconciler import devcluster, kube
from reconciler.controller.reasons import Reason
from reconciler.devcluster import rawapi, workloads
from reconciler.model import inventory, kinds, ownership
from reconciler.model import observed as obs
from reconciler.plan import fence

pytestmark = pytest.mark.integration

BINDING = kinds.of("ValidatingAdmissionPolicyBinding").object_path(fence.POLICY_NAME)


def _source(fleet: Fleet) -> str:
    doc = YAML(typ="safe").load((Path(fleet.repo.working_dir) / "cluster.yaml").read_text())
    return str(doc["metadata"]["name"])


def _tolerating(name: str) -> dict[str, Any]:
    return workloads.resource_claim(
        name, "cu-vendor-nvidia", tolerations=[{"key": FENCE_KEY, "operator": "Exists"}]
    )


def _admitted(api: Any, namespace: str) -> bool:
    """A dry-run create of a claim tolerating the fence, by the admin (not exempt)."""
    path = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims"
    resp = kube.call(api, "POST", path, body=_tolerating("probe"), query=[("dryRun", "All")])
    if resp.status in (403, 422) and "denied" in resp.reason().lower():
        return False
    assert resp.ok, resp.reason()
    return True


def test_a_binding_edited_from_deny_to_warn_is_restored_and_tenants_are_denied_again(
    fleet: Fleet, control_plane: devcluster.ControlPlane
) -> None:
    first = fleet.reconcile()
    assert first.reason is Reason.SUCCEEDED, first.message
    # A new policy is enforced once the apiserver's policy informer has seen it (about a
    # second, longer on a loaded machine): wait for the denial rather than race it.
    workloads.wait_for(
        lambda: not _admitted(fleet.admin, "research"), timeout=30, what="the fence to deny"
    )
    rawapi.request(
        fleet.admin,
        "PATCH",
        BINDING,
        body={"spec": {"validationActions": ["Warn"]}},
        query={"fieldManager": "kubectl-edit"},
        content_type="application/merge-patch+json",
    )
    workloads.wait_for(
        lambda: _admitted(fleet.admin, "research"), timeout=30, what="the edit to open the fence"
    )

    kubeconfig = str(next(control_plane.kubeconfig.parent.glob("cu-system-*.kubeconfig")))
    cuctl = [sys.executable, "-m", "reconciler.cli"]
    applied = subprocess.run(
        [*cuctl, "apply", str(fleet.repo.working_dir), "--rev", "HEAD", "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stdout[-2000:] + applied.stderr[-2000:]
    assert f"ValidatingAdmissionPolicyBinding/{fence.POLICY_NAME} configured" in applied.stdout
    live = rawapi.request(fleet.admin, "GET", BINDING)
    assert live["spec"]["validationActions"] == ["Deny"]
    managers = {e["manager"] for e in live["metadata"]["managedFields"] if not e.get("subresource")}
    assert managers == {ownership.FIELD_MANAGER}, live["metadata"]["managedFields"]
    t0 = time.monotonic()
    workloads.wait_for(
        lambda: not _admitted(fleet.admin, "research"),
        timeout=30,
        what="the restored binding to deny tenants again",
    )
    print(f"fence denies again {time.monotonic() - t0:.2f} s after the repair")

    again = fleet.reconcile()
    assert again.reason is Reason.SUCCEEDED, again.message
    assert again.applied is not None and again.applied.writes == 0
    assert again.changes is not None and again.changes.in_sync


def test_marks_a_tenant_can_write_never_make_an_object_ours(fleet: Fleet) -> None:
    source = _source(fleet)
    marks = {
        "labels": {**ownership.MANAGED_BY, ownership.CLAIM_LABEL: "x"},
        "annotations": {ownership.SOURCE_ANNOTATION: source},
    }
    claims = kinds.of("ResourceClaim")
    tenant = []
    for i in range(40):
        body = workloads.resource_claim(f"tenant-{i}", "gpu.nvidia.com")
        body["metadata"].update(namespace="research", **marks)
        path = claims.object_path(f"tenant-{i}", "research")
        rawapi.apply(fleet.admin, path, body, field_manager=ownership.FIELD_MANAGER)
        tenant.append(path)
    # Before install (no fence yet), a squatter takes a generated claim's name, tolerating.
    squatter = _tolerating("distill-a100")
    squatter["metadata"].update(namespace="research", **marks)
    squat_path = claims.object_path("distill-a100", "research")
    rawapi.apply(fleet.admin, squat_path, squatter, field_manager=ownership.FIELD_MANAGER)
    vendor = f"/apis/resource.k8s.io/v1/resourceslices/{fleet.loaded.slices[0]}"
    disguise = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": fleet.loaded.slices[0], **marks},
    }
    rawapi.apply(fleet.admin, vendor, disguise, field_manager=ownership.FIELD_MANAGER)
    before = {p: rawapi.request(fleet.admin, "GET", p)["metadata"] for p in [*tenant, vendor]}
    try:
        outcome = fleet.reconcile()
        assert outcome.reason is Reason.DEGRADED, outcome.message
        assert outcome.applied is not None and outcome.plan is not None
        problems = {e.subject: e for e in outcome.applied.problems}
        assert set(problems) == {"ResourceClaim/research/distill-a100"}, problems
        assert "the name is taken" in problems["ResourceClaim/research/distill-a100"].reason
        bypass = {
            f.subject: f.message
            for f in outcome.plan.report.findings
            if f.code is obs.FindingCode.FENCE_BYPASS
        }
        # The squatter's finding names its namespace and says what to do.
        assert (
            "kubectl delete resourceclaim -n research distill-a100"
            in (bypass["ResourceClaim research/distill-a100"])
        ), bypass
        for path, meta in before.items():
            now = rawapi.request(fleet.admin, "GET", path)["metadata"]
            assert (now["uid"], now["resourceVersion"]) == (meta["uid"], meta["resourceVersion"])

        cm = rawapi.request(
            fleet.admin, "GET", f"/api/v1/namespaces/cu-system/configmaps/{inventory.name(source)}"
        )
        recorded = inventory.parse(cm["data"], source)
        ours = {o["metadata"]["uid"] for o in owned(fleet.admin)}
        assert set(recorded.uids) == ours - {m["uid"] for m in before.values()} - {
            rawapi.request(fleet.admin, "GET", squat_path)["metadata"]["uid"]
        }
        assert recorded.pending == frozenset()

        rawapi.delete(fleet.admin, squat_path)
        workloads.wait_for(
            lambda: kube.call(fleet.admin, "GET", squat_path).status == 404,
            timeout=30,
            what="the squatter to go",
        )
        converged = fleet.reconcile()
        assert converged.reason is Reason.SUCCEEDED, converged.message
        for path in before:
            assert kube.call(fleet.admin, "GET", path).ok, f"{path} was left alone"
    finally:
        for path in tenant:
            rawapi.delete(fleet.admin, path)
        plain = {k: disguise[k] for k in ("apiVersion", "kind")}
        plain["metadata"] = {"name": fleet.loaded.slices[0]}
        rawapi.apply(fleet.admin, vendor, plain, field_manager=ownership.FIELD_MANAGER)

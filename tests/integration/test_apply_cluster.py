"""One reconcile against the real control plane, as the reconciler's own ServiceAccount.

Proves, with the example repository (a real Git repo) and its fleet made live: the whole
target, fence and admission policy included, converges through server-side apply under the
least-privilege RBAC of deploy/rbac.yaml; a second reconcile writes nothing; a Pod on a
generated Whole-pool claim is scheduled by kube-scheduler *while the fence is active*, with
its CU device and the exact vendor device co-allocated; an identity the fence does not exempt
is refused before any write; a field the apiserver would drop (an alpha gate that is off)
stops the apply before any write; a lost node's slices and fence rule are pruned while an
object we do not own is left alone.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from live_fleet import Fleet, owned

from reconciler import devcluster, errors
from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller.reasons import Reason
from reconciler.devcluster import rawapi, workloads
from reconciler.diff import changeset
from reconciler.model import ownership

pytestmark = pytest.mark.integration


def test_converges_as_the_service_account_and_a_second_run_writes_nothing(fleet: Fleet) -> None:
    first = fleet.reconcile()
    assert first.reason is Reason.SUCCEEDED, first.message
    assert first.plan is not None and first.applied is not None
    assert first.applied.writes == len(first.plan.objects)
    live = {(o["kind"], o["metadata"]["name"]) for o in owned(fleet.admin)}
    assert {(o["kind"], o["metadata"]["name"]) for o in first.plan.objects} <= live

    second = fleet.reconcile()
    assert second.reason is Reason.SUCCEEDED, second.message
    assert second.applied is not None and second.applied.writes == 0
    assert second.changes is not None and second.changes.in_sync


def test_the_cli_converges_and_a_plan_afterwards_is_in_sync(
    fleet: Fleet, control_plane: devcluster.ControlPlane
) -> None:
    kubeconfig = str(next(control_plane.kubeconfig.parent.glob("cu-system-*.kubeconfig")))
    root = fleet.repo.working_dir
    cuctl = [sys.executable, "-m", "reconciler.cli"]
    applied = subprocess.run(
        [*cuctl, "apply", root, "--rev", "HEAD", "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert "ReconciliationSucceeded" in applied.stderr
    assert "ResourceSlice/cu-h100-01-0 created" in applied.stdout
    planned = subprocess.run(
        [*cuctl, "plan", root, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        check=False,
    )
    assert planned.returncode == 0, planned.stdout[-2000:] + planned.stderr


def test_a_pod_on_a_generated_claim_schedules_through_the_active_fence(fleet: Fleet) -> None:
    outcome = fleet.reconcile()
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    # The example's Whole-pool ResourceClaim: research/distill-a100 (batch pool, A100s).
    claim = workloads.get(fleet.admin, "research", "ResourceClaim", "distill-a100")
    requests = [r["name"] for r in claim["spec"]["devices"]["requests"]]
    assert any(r.startswith("cu-") for r in requests)
    assert any(r.startswith("gpu-") for r in requests), "the vendor device is requested too"

    workloads.create(
        fleet.admin, "research", workloads.pod("distill", claims={"cu": "distill-a100"})
    )
    pod = workloads.wait_scheduled(fleet.admin, "research", "distill", timeout=90)
    allocated = workloads.get(fleet.admin, "research", "ResourceClaim", "distill-a100")
    results = allocated["status"]["allocation"]["devices"]["results"]
    cu = [r for r in results if r["driver"] == "cu.cu-reconciler.io"]
    gpus = [r for r in results if r["driver"] == "gpu.nvidia.com"]
    assert cu and len(cu) == len(gpus), results
    node = pod["spec"]["nodeName"]
    assert node.startswith("a100-")
    for r in cu + gpus:
        assert r["pool"] == node, "every device sits on the node the Pod was bound to"
    assert sorted(r["device"] for r in cu) == sorted(f"nvidia-{g['device']}" for g in gpus)


def test_an_identity_the_fence_does_not_exempt_is_refused_before_any_write(
    fleet: Fleet,
) -> None:
    before = owned(fleet.admin)
    outcome = fleet.reconcile(fleet.admin)
    assert outcome.reason is Reason.IDENTITY_REFUSED, outcome.message
    assert "system:serviceaccount:cu-system:cu-reconciler" in outcome.message
    assert owned(fleet.admin) == before == []


def test_a_field_the_apiserver_would_drop_stops_the_apply_before_any_write(
    fleet: Fleet,
) -> None:
    outcome = fleet.reconcile()
    assert outcome.plan is not None
    target = [dict(o) for o in outcome.plan.objects if o["kind"] == "ResourceSlice"][:2]
    # skipNodeOperations needs the alpha gate DRAOptionalNodeOperations, off in 1.37.
    target[1] = {**target[1], "spec": {**target[1]["spec"], "skipNodeOperations": ["*"]}}
    target[1]["spec"]["pool"] = {
        **target[1]["spec"]["pool"],
        "generation": target[1]["spec"]["pool"]["generation"] + 1,
    }
    live = owned(fleet.admin)
    changes = changeset.compute(target, [o for o in live if o["kind"] == "ResourceSlice"])
    changes = changeset.ChangeSet(tuple(e for e in changes.entries if e.action != "delete"))
    # Slices only: kube-controller-manager writes the fence rules' status meanwhile.
    before = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in live}
    before = {n: v for n, v in before.items() if not n.startswith("cu-fence")}
    with pytest.raises(applying.DroppedFieldsError, match=r"spec\.skipNodeOperations"):
        applying.apply_all(writers.KubeWriter(fleet.reconciler), changes, target, live)
    after = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in owned(fleet.admin)}
    after = {n: v for n, v in after.items() if not n.startswith("cu-fence")}
    assert after == before, "nothing was written"


def test_a_lost_node_is_pruned_and_foreign_objects_are_left_alone(fleet: Fleet) -> None:
    assert fleet.reconcile().reason is Reason.SUCCEEDED
    foreign = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "cu-batch-copy", "labels": {"team": "someone-else"}},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'cu.cu-reconciler.io'"}}]},
    }
    rawapi.apply(fleet.admin, writers.path_of(foreign), foreign, field_manager="someone-else")
    try:
        devcluster.withdraw_node(fleet.admin, "a100-04")
        outcome = fleet.reconcile()
        assert outcome.reason is Reason.SUCCEEDED, outcome.message
        assert outcome.applied is not None
        deleted = sorted(
            e.subject for e in outcome.applied.entries if e.outcome is applying.Outcome.DELETED
        )
        assert deleted == ["DeviceTaintRule/cu-fence-nvidia-a100-04", "ResourceSlice/cu-a100-04-0"]
        assert rawapi.request(fleet.admin, "GET", writers.path_of(foreign))["metadata"]["name"]
    finally:
        rawapi.delete(fleet.admin, writers.path_of(foreign))


def test_apply_errors_name_the_object(fleet: Fleet) -> None:
    bad = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "Not_A_Valid_Name", "labels": dict(ownership.MANAGED_BY)},
        "spec": {},
    }
    with pytest.raises(errors.ApplyError, match="DeviceClass/Not_A_Valid_Name"):
        writers.KubeWriter(fleet.reconciler).apply(bad, dry_run=True)

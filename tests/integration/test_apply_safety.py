"""The write path's safety, against the real control plane, as the reconciler's ServiceAccount.

* A dry run writes nothing for any verb (apply, delete, replace, managedFields take-over),
  for owned and for foreign objects: every uid and resourceVersion is unchanged.
* Ownership cannot be faked: a squatted name is a conflict for that object only, a vendor
  slice wearing our label and annotation is never written or deleted.
* Drift correction for all fields: a field another manager adds to an owned fence rule is
  removed; Argo CD's tracking label/annotation are not drift.
* Honest outcome: the objects reported as written are exactly those whose resourceVersion
  changed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from live_fleet import Fleet, Recording, owned

from reconciler import devcluster, errors
from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller.reasons import Reason
from reconciler.devcluster import rawapi, workloads
from reconciler.model import kinds, ownership
from reconciler.plan import managed

pytestmark = pytest.mark.integration

KINDS = (
    "ResourceSlice",
    "DeviceClass",
    "DeviceTaintRule",
    "ResourceClaim",
    "ResourceClaimTemplate",
    "ResourceQuota",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


def every_object(api: ApiClient) -> dict[str, dict[str, Any]]:
    """Every object of the kinds we write, ours or not, by subject."""
    out = {}
    for kind in KINDS:
        k = kinds.of(kind)
        for item in rawapi.request(api, "GET", k.collection_path())["items"]:
            obj = {"apiVersion": k.api_version, "kind": kind, **item}
            out[writers.subject_of(obj)] = obj
    return out


def versions(api: ApiClient) -> dict[str, tuple[str, str]]:
    return {
        s: (o["metadata"]["uid"], o["metadata"]["resourceVersion"])
        for s, o in every_object(api).items()
    }


def settled(api: ApiClient) -> dict[str, dict[str, Any]]:
    """Every object, once controllers (taint-rule status, …) stopped writing for 4 s (2 s was
    not enough on a loaded 2-core machine: a late status write failed a dry-run replace)."""
    last = versions(api)
    while True:
        time.sleep(4)
        now = versions(api)
        if now == last:
            return every_object(api)
        last = now


def _commit(fleet: Fleet, path: str, old: str, new: str) -> None:
    file = Path(str(fleet.repo.working_dir)) / path
    text = file.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new, 1), encoding="utf-8")
    fleet.repo.git.add(A=True)
    fleet.repo.index.commit(f"edit {path}")


def test_a_dry_run_writes_nothing_for_any_verb(fleet: Fleet) -> None:
    assert fleet.reconcile().reason is Reason.SUCCEEDED
    foreign = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "team-b-class"},
        "spec": {"selectors": [{"cel": {"expression": "true"}}]},
    }
    rawapi.apply(fleet.admin, writers.path_of(foreign), foreign, field_manager="team-b")
    before = settled(fleet.admin)
    assert any(o["metadata"]["name"].startswith("cu-fence") for o in before.values())
    assert any(s.startswith("ResourceClaim/") for s in before), "claims are covered"
    assert len([o for o in before.values() if not ownership.is_owned(o)]) > 5, "foreign too"
    # The admin can do everything, so RBAC cannot be what stops the writes: only dryRun.
    admin = writers.KubeWriter(fleet.admin)
    for obj in before.values():
        assert admin.delete(obj, dry_run=True), obj["metadata"]["name"]
        meta = {k: obj["metadata"][k] for k in ("name", "namespace") if k in obj["metadata"]}
        edited = {**obj, "metadata": {**meta, "labels": {"x": "y"}}}
        admin.apply(edited, dry_run=True)
        if ownership.is_owned(obj):
            admin.replace(managed.replacement(obj, edited), dry_run=True)
    assert versions(fleet.admin) == {
        s: (o["metadata"]["uid"], o["metadata"]["resourceVersion"]) for s, o in before.items()
    }

    # A whole reconcile in dry-run mode, with creates, updates, replaces and prunes planned.
    _commit(fleet, "claims/research-batch/eval-sweep.yaml", "cu: 100\n", "cu: 50\n")
    devcluster.withdraw_node(fleet.admin, "a100-04")
    cls = next(o for o in owned(fleet.admin) if o["kind"] == "DeviceClass")
    hand_edit = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": cls["metadata"]["name"], "labels": {"edited": "by-hand"}},
    }
    rawapi.apply(fleet.admin, writers.path_of(cls), hand_edit, field_manager="kubectl-edit")
    settled(fleet.admin)
    snapshot = versions(fleet.admin)
    outcome = fleet.reconcile(options=applying.ApplyOptions(dry_run=True))
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert outcome.changes is not None and outcome.applied is not None
    actions = {e.action.value for e in outcome.changes.changes}
    assert {"replace", "delete", "update"} <= actions, actions
    assert any(e.foreign for e in outcome.changes.changes), "a replace was dry-run too"
    assert outcome.applied.writes == 0
    assert {e.outcome for e in outcome.applied.entries} <= {"dry-run", "unchanged"}
    assert versions(fleet.admin) == snapshot
    rawapi.delete(fleet.admin, writers.path_of(foreign))


def test_an_unknown_field_is_refused_not_dropped(api: ApiClient) -> None:
    """Applies go out with ``fieldValidation=Ignore`` (no second, strict parse of the patch);
    server-side apply must still refuse a field the schema does not know, in the dry run and
    in the write, rather than store the object without it."""
    writer = writers.KubeWriter(api)
    obj = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "cu-unknown-field-probe"},
        "spec": {"selectors": [{"cel": {"expression": "true"}}], "selectorz": []},
    }
    for dry_run in (True, False):
        with pytest.raises(errors.ApplyError, match="selectorz"):
            writer.apply(obj, dry_run=dry_run)
    assert writer.get(obj) is None
    known = {**obj, "spec": {"selectors": obj["spec"]["selectors"]}}
    try:
        assert writer.apply(known, dry_run=False)["metadata"]["resourceVersion"]
    finally:
        rawapi.delete(api, writers.path_of(known))


def test_a_batch_of_creates_is_dry_run_per_shape_on_the_real_apiserver(
    api: ApiClient, namespace: str
) -> None:
    """From scratch (SAMPLE_FROM creates of a kind or more): the paged metadata list finds
    a squatted name, one dry run per shape stands for the rest, a create the apiserver
    refuses for its value fails alone at its write, and everything else is created."""
    from reconciler.diff import changeset as cs

    def claim(name: str, count: int, cls: str = "cu-batch-probe") -> dict[str, Any]:
        request = {"name": "gpu", "exactly": {"deviceClassName": cls, "count": count}}
        meta = {
            "name": name,
            "namespace": namespace,
            # Not our marks: the namespace is deleted asynchronously, and a claim that still
            # wore them would look owned to the next test's reconcile (its delete guard).
            "labels": {"cu-probe": "batch"},
        }
        return {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": meta,
            "spec": {"devices": {"requests": [request]}},
        }

    target = [claim(f"batch-{i:02}", 1) for i in range(applying.SAMPLE_FROM + 8)]
    target[17] = claim("batch-17", 1, "Not_A_Class")  # same shape, a name the apiserver refuses
    squatter = claim("batch-23", 2)
    squatter["metadata"] = {"name": "batch-23", "namespace": namespace}
    bystander = claim("aa-other", 1)  # listed (by key) before the squatter
    bystander["metadata"] = {"name": "aa-other", "namespace": namespace}
    for foreign in (bystander, squatter):
        rawapi.apply(api, writers.path_of(foreign), foreign, field_manager="team-b")
    held = versions(api)["ResourceClaim/" + namespace + "/batch-23"]

    # One claim per page: the squatter is on a later page than the bystander.
    writer = Recording(writers.KubeWriter(api, page=1))
    try:
        result = applying.apply_all(writer, cs.compute(target, []), target, [], source="probe")
        now = versions(api)
    finally:
        for obj in [*target, squatter, bystander]:
            rawapi.delete(api, writers.path_of(obj))

    outcomes = {e.subject: e.outcome for e in result.entries}
    prefix = f"ResourceClaim/{namespace}/batch-"
    assert outcomes.pop(prefix + "23") is applying.Outcome.CONFLICT
    assert outcomes.pop(prefix + "17") is applying.Outcome.FAILED
    assert set(outcomes.values()) == {applying.Outcome.CREATED}
    assert [c for c in writer.calls if c[2]] == [("apply", prefix + "00", True)]
    assert writer.lists == ["ResourceClaim"]
    assert now[prefix + "23"] == held, "the squatter is untouched"
    assert prefix + "17" not in now
    assert result.writes == len(target) - 2
    assert all(now.get(s) for s in outcomes)


def test_foreign_objects_are_conflicts_and_everyone_else_converges(fleet: Fleet) -> None:
    squatted_class = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "cu-dev"},
        "spec": {"selectors": [{"cel": {"expression": "device.driver == 'gpu.nvidia.com'"}}]},
    }
    rawapi.apply(fleet.admin, writers.path_of(squatted_class), squatted_class, field_manager="t")
    squatted_claim = workloads.resource_claim("distill-a100", "squatter-class")
    workloads.create(fleet.admin, "research", squatted_claim)
    vendor_slice = every_object(fleet.admin)[f"ResourceSlice/{fleet.loaded.slices[0]}"]
    disguise = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {
            "name": vendor_slice["metadata"]["name"],
            "labels": dict(ownership.MANAGED_BY),
            "annotations": {ownership.SOURCE_ANNOTATION: "cn-north-1"},
        },
    }
    # (Even applied under our field manager name it would not be deleted: the driver is not
    # ours; tests/apply/test_apply.py proves that rule on the in-memory writer.)
    rawapi.apply(fleet.admin, writers.path_of(disguise), disguise, field_manager="someone")
    try:
        settled(fleet.admin)
        before = versions(fleet.admin)

        outcome = fleet.reconcile()
        assert outcome.reason is Reason.DEGRADED, outcome.message
        assert outcome.applied is not None and outcome.plan is not None
        result = {e.subject: e for e in outcome.applied.entries}
        assert result["DeviceClass/cu-dev"].outcome == "conflict"
        assert "field managers: t)" in result["DeviceClass/cu-dev"].reason
        assert result["ResourceClaim/research/distill-a100"].outcome == "conflict"
        # Not in our inventory, so not ours at all: no conflict, nothing to do (issue 18).
        assert f"ResourceSlice/{fleet.loaded.slices[0]}" not in result
        dependents = [
            o
            for o in outcome.plan.objects
            if o["kind"].startswith("ResourceClaim") and "cu-dev" in str(o["spec"])
        ]
        assert dependents, "the dev pool has claims"
        for obj in dependents:
            assert result[writers.subject_of(obj)].outcome == "skipped"

        after = versions(fleet.admin)
        for subject in ("DeviceClass/cu-dev", "ResourceClaim/research/distill-a100"):
            assert after[subject] == before[subject], f"{subject} was not touched"
        assert (
            after[f"ResourceSlice/{fleet.loaded.slices[0]}"]
            == before[f"ResourceSlice/{fleet.loaded.slices[0]}"]
        )
        # Everyone else converged: the fence, the other classes, slices and claims.
        live = {writers.subject_of(o) for o in owned(fleet.admin)}
        blocked = {s for s, e in result.items() if e.outcome in applying.PROBLEMS}
        for obj in outcome.plan.objects:
            subject = writers.subject_of(obj)
            if subject not in blocked:
                assert subject in live, subject
        # Honest outcome: exactly the objects whose resourceVersion changed are counted.
        changed = {s for s in after if before.get(s) != after[s]}
        assert {e.subject for e in outcome.applied.changed} == changed
        assert outcome.applied.writes == len(changed) > 0
        assert f"{len(changed)} objects written" in outcome.message

        settled(fleet.admin)
        mid = versions(fleet.admin)
        second = fleet.reconcile()
        assert second.reason is Reason.DEGRADED
        assert second.applied is not None and second.applied.writes == 0
        assert versions(fleet.admin) == mid
    finally:
        undisguise = {k: disguise[k] for k in ("apiVersion", "kind")}
        undisguise["metadata"] = {"name": disguise["metadata"]["name"]}
        rawapi.apply(fleet.admin, writers.path_of(disguise), undisguise, field_manager="someone")
        rawapi.delete(fleet.admin, writers.path_of(squatted_class))
        rawapi.delete(
            fleet.admin, "/apis/resource.k8s.io/v1/namespaces/research/resourceclaims/distill-a100"
        )
    converged = fleet.reconcile()
    assert converged.reason is Reason.SUCCEEDED, converged.message


def test_fields_other_managers_set_on_owned_objects_are_removed(fleet: Fleet) -> None:
    first = fleet.reconcile()
    assert first.reason is Reason.SUCCEEDED, first.message
    rule = next(o for o in owned(fleet.admin) if o["kind"] == "DeviceTaintRule")
    selector = rule["spec"]["deviceSelector"]
    assert "device" not in selector
    narrow = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceTaintRule",
        "metadata": {"name": rule["metadata"]["name"]},
        "spec": {"deviceSelector": {"device": "gpu-0"}},
    }
    rawapi.apply(fleet.admin, writers.path_of(narrow), narrow, field_manager="someone-else")
    cls = next(o for o in owned(fleet.admin) if o["kind"] == "DeviceClass")
    argo = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {
            "name": cls["metadata"]["name"],
            "labels": {"app.kubernetes.io/instance": "cu"},
            "annotations": {"argocd.argoproj.io/tracking-id": "cu:resource.k8s.io/x"},
        },
    }
    rawapi.apply(fleet.admin, writers.path_of(argo), argo, field_manager="argocd-controller")
    settled(fleet.admin)
    before = versions(fleet.admin)

    outcome = fleet.reconcile()
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert outcome.applied is not None
    rule_subject = f"DeviceTaintRule/{rule['metadata']['name']}"
    assert [e.subject for e in outcome.applied.changed] == [rule_subject]
    live = rawapi.request(fleet.admin, "GET", writers.path_of(rule))
    assert live["spec"]["deviceSelector"] == selector, "the narrowing field is gone"
    managers = {e["manager"] for e in live["metadata"]["managedFields"] if not e.get("subresource")}
    assert managers == {ownership.FIELD_MANAGER}
    live_cls = rawapi.request(fleet.admin, "GET", writers.path_of(cls))
    assert live_cls["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"]
    assert live_cls["metadata"]["labels"]["app.kubernetes.io/instance"] == "cu"
    after = versions(fleet.admin)
    assert {s for s in after if before.get(s) != after[s]} == {rule_subject}

    again = fleet.reconcile()
    assert again.reason is Reason.SUCCEEDED
    assert again.applied is not None and again.applied.writes == 0
    assert again.changes is not None and again.changes.in_sync


def test_pods_beyond_a_templates_replicas_get_no_claim_kubernetes_quota_refuses(
    fleet: Fleet,
) -> None:
    outcome = fleet.reconcile()
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert outcome.plan is not None
    template = next(
        o
        for o in outcome.plan.objects
        if o["kind"] == "ResourceClaimTemplate" and o["metadata"]["name"] == "chat-decode"
    )
    replicas = int(template["metadata"]["annotations"]["cu-reconciler.io/replicas"])
    ns = template["metadata"]["namespace"]
    quota_path = f"/api/v1/namespaces/{ns}/resourcequotas/cu-reconciler-limits"
    workloads.wait_for(
        lambda: (
            rawapi.request(fleet.admin, "GET", quota_path).get("status", {}).get("hard") or None
        ),
        timeout=60,
        what="the quota controller to fill in the quota's status",
    )
    pods = 4 * replicas + 2
    for i in range(pods):
        workloads.create(
            fleet.admin, ns, workloads.pod(f"decode-{i}", templates={"cu": "chat-decode"})
        )

    def stamped() -> list[dict[str, Any]]:
        path = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
        return [
            c
            for c in rawapi.request(fleet.admin, "GET", path)["items"]
            if c["metadata"].get("annotations", {}).get("resource.kubernetes.io/pod-claim-name")
        ]

    workloads.wait_for(lambda: len(stamped()) >= replicas, timeout=60, what="claims")
    events = workloads.wait_for(
        lambda: (
            [
                e
                for e in rawapi.request(fleet.admin, "GET", f"/api/v1/namespaces/{ns}/events")[
                    "items"
                ]
                if "exceeded quota" in e.get("message", "")
            ]
            or None
        ),
        timeout=60,
        what="a quota refusal",
    )
    assert "cu-inference-prod.deviceclass.resource.k8s.io/devices" in events[0]["message"]
    # The quota is per namespace and class: the devices admitted for every claim and template
    # there (chat-prefill's too, which runs no Pod here). Pods of this template get claims up
    # to that allowance and not one more.
    key = "cu-inference-prod.deviceclass.resource.k8s.io/devices"
    hard = rawapi.request(fleet.admin, "GET", quota_path)["status"]["hard"]
    per_pod = sum(
        int(r["exactly"].get("count", 1)) for r in template["spec"]["spec"]["devices"]["requests"]
    )
    got = stamped()
    assert replicas <= len(got) == int(hard[key]) // per_pod < pods, "Pods beyond it got none"
    used = rawapi.request(fleet.admin, "GET", quota_path)["status"]["used"]
    for name, value in used.items():
        assert int(value) <= int(hard[name]), name

"""The plan against the real local control plane (kube-apiserver, kube-scheduler, KCM 1.37).

Proves: every rendered object is accepted by the apiserver (server-side dry run, then a real
server-side apply); a Pod using a generated claim is scheduled onto the node holding the
chosen device with the vendor device co-allocated (matchAttribute on the vendor uuid) and,
in a Fractional pool, the CU consumed; the fence keeps an untolerating claim off managed
vendor devices; the admission policy refuses a tenant claim that tolerates the fence but
admits the reconciler's service account; and a second plan against what was applied is in
sync (the normalisers match the apiserver's defaults).
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import cu_example as ex
import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler import devcluster, observe
from reconciler import plan as planning
from reconciler.devcluster import rawapi, workloads
from reconciler.diff import changeset
from reconciler.model import kinds
from reconciler.model import state as st
from reconciler.observe import cluster, sources

pytestmark = pytest.mark.integration

FIELD_MANAGER = "cu-reconciler"  # the live diff compares what our field manager applied


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return kinds.of(obj["kind"]).object_path(meta["name"], meta.get("namespace") or "")


def _apply_unless_fenced(api: ApiClient, obj: Mapping[str, Any], *, dry_run: bool = False) -> bool:
    """Apply; False while a deleted fence policy is still enforced (403 naming it)."""
    try:
        apply(api, obj, dry_run=dry_run)
    except ApiException as exc:
        if exc.status == 403 and "cu-reconciler-fence" in str(exc.body):
            return False
        raise
    return True


def apply(api: ApiClient, obj: Mapping[str, Any], *, dry_run: bool = False) -> Any:
    query = {"fieldManager": FIELD_MANAGER, "force": "true"}
    if dry_run:
        query["dryRun"] = "All"
    return rawapi.request(
        api,
        "PATCH",
        object_path(obj),
        body=dict(obj),
        query=query,
        content_type=rawapi.APPLY_PATCH,
    )


def create_as(api: ApiClient, user: str | None, obj: Mapping[str, Any]) -> int:
    """Dry-run create, optionally impersonating ``user``; returns the HTTP status."""
    path = object_path(obj).rpartition("/")[0]
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if user:
        headers["Impersonate-User"] = user
    method, url, hdrs, body, _ = api.param_serialize(
        method="POST",
        resource_path=path,
        query_params=[("dryRun", "All")],
        header_params=headers,
        body=dict(obj),
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(method, url, header_params=hdrs, body=body, _request_timeout=30)
    text = resp.read()
    if resp.status >= 300:
        print(f"{user or 'admin'} {obj['metadata']['name']}: {resp.status} {text[:400]!r}")
    return int(resp.status)


def grant_claims(api: ApiClient, namespace: str, user: str) -> None:
    """RBAC for an impersonated user to create claims in ``namespace``."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "claims"},
        "rules": [
            {
                "apiGroups": ["resource.k8s.io"],
                "resources": ["resourceclaims", "resourceclaimtemplates"],
                "verbs": ["create", "get", "list"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "claims"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "claims"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    rawapi.request(api, "POST", f"{rbac}/roles", body=role)
    rawapi.request(api, "POST", f"{rbac}/rolebindings", body=binding)


@pytest.fixture
def fleet(api: ApiClient, namespace: str) -> Iterator[tuple[str, st.DesiredState, list[str]]]:
    """Three fake nodes with vendor slices, and a desired state that manages only them."""
    run = uuid.uuid4().hex[:6]
    nodes = [f"cu-it-{run}-{i}" for i in range(3)]
    label = {"cu-reconciler.io/it": run}
    for name in nodes:
        devcluster.create_node(api, name, label)
    devcluster.publish_node(api, nodes[0], "nvidia", "H100", 2)
    devcluster.publish_node(api, nodes[1], "biren", "BR104", 2)
    devcluster.publish_node(api, nodes[2], "hygon", "Z100", 2)
    selector = {"nodeSelector": {"matchLabels": label}}
    pools = (
        ex.pool(f"train-{run}", {"selector": {"vendors": ["nvidia", "biren"], **selector}}),
        ex.pool(
            f"infer-{run}",
            {
                "selector": {"vendors": ["hygon"], **selector},
                "sharing": {"mode": "Fractional", "minStep": 5},
            },
        ),
    )
    tenants = (ex.tenant("t", {"namespaces": [namespace], "priority": 10, "mayBorrow": True}),)
    claims = (
        ex.claim("whole-a", {"tenant": "t", "pool": f"train-{run}", "cu": 150}),
        ex.claim("frac-a", {"tenant": "t", "pool": f"infer-{run}", "cu": 7}),
        ex.claim(
            "tpl-a",
            {"tenant": "t", "pool": f"infer-{run}", "cu": 5, "form": "ResourceClaimTemplate"},
        ),
    )
    base = ex.desired(pools=pools, tenants=tenants, claims=claims)
    desired = st.DesiredState(
        revision=base.revision,
        settings=ex.settings([namespace]),
        policy=base.policy,
        adapters=base.adapters,
        pools=base.pools,
        tenants=base.tenants,
        claims=base.claims,
        factor_tables=base.factor_tables,
    )
    made: list[str] = []
    yield run, desired, made
    for path in reversed(made):
        rawapi.delete(api, path)
    for name in nodes:
        devcluster.withdraw_node(api, name)
        devcluster.delete_node(api, name)


def _ours(obj: Mapping[str, Any], run: str, namespace: str) -> bool:
    """This test's objects (other tests share the cluster's cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    component = (meta.get("labels") or {}).get("cu-reconciler.io/component")
    return (
        run in json.dumps(obj)
        or meta.get("namespace") == namespace
        or component == "vendor-class"
        or obj["kind"].startswith("Validating")
    )


def _plan(api: ApiClient, desired: st.DesiredState, run: str, namespace: str) -> planning.Plan:
    raw = cluster.Cluster(api).read()
    owned = [o for o in raw.owned if _ours(o, run, namespace)]
    src = sources.InMemory((*raw.nodes, *raw.slices, *raw.claims, *owned))
    return planning.plan(desired, observe.observe(src, desired))


def test_rendered_objects_are_accepted_and_a_pod_gets_cu_and_its_vendor_device(
    api: ApiClient, namespace: str, fleet: tuple[str, st.DesiredState, list[str]]
) -> None:
    run, desired, made = fleet
    result = _plan(api, desired, run, namespace)
    decisions = {d.claim: d for d in result.report.decisions}
    assert decisions["whole-a"].status == "Admitted", decisions["whole-a"]
    assert decisions["frac-a"].status == "Admitted", decisions["frac-a"]
    ours = [
        o
        for o in result.objects
        if _ours(o, run, namespace) and not o["kind"].startswith("Validating")
    ]
    policy = [o for o in result.objects if o["kind"].startswith("ValidatingAdmissionPolicy")]

    # 1. Every rendered object passes the apiserver's validation (dry run), policy included.
    # The session's cluster is shared: the fence an earlier test deleted just before (its
    # teardown) stays enforced until the apiserver's policy informer sees the delete, so an
    # admin's claim is refused for a moment; wait that out instead of racing it.
    for obj in [*policy, *ours]:
        probe = functools.partial(_apply_unless_fenced, api, obj, dry_run=True)
        workloads.wait_for(probe, timeout=30, what="the fence cache")

    # 2. Apply all but the admission policy (it would deny this admin's claims), in order.
    for obj in ours:
        probe = functools.partial(_apply_unless_fenced, api, obj)
        workloads.wait_for(probe, timeout=30, what="the fence cache")
        made.append(object_path(obj))

    # 3. A Pod with the Whole-pool claim lands on the H100 node with the paired vendor device.
    workloads.create(api, namespace, workloads.pod("whole", claims={"cu": "whole-a"}))
    pod = workloads.wait_scheduled(api, namespace, "whole", timeout=90)
    node = f"cu-it-{run}-0"
    assert pod["spec"]["nodeName"] == node
    status = workloads.get(api, namespace, "ResourceClaim", "whole-a")["status"]
    results = {r["request"]: r for r in status["allocation"]["devices"]["results"]}
    assert set(results) == {"cu-0", "gpu-0/nvidia"}
    cu, gpu = results["cu-0"], results["gpu-0/nvidia"]
    assert (cu["driver"], cu["pool"]) == (ex.DRIVER, node)
    assert (gpu["driver"], gpu["pool"]) == ("gpu.nvidia.com", node)
    assert cu["device"] == f"nvidia-{gpu['device']}", "the CU device is paired with its GPU"
    assert gpu.get("tolerations"), "the vendor device was taken through the fence toleration"

    # 4. A Pod with the Fractional claim consumes the CU rounded up to minStep (7 → 10).
    workloads.create(api, namespace, workloads.pod("frac", claims={"cu": "frac-a"}))
    pod = workloads.wait_scheduled(api, namespace, "frac", timeout=90)
    assert pod["spec"]["nodeName"] == f"cu-it-{run}-2"
    [share] = workloads.get(api, namespace, "ResourceClaim", "frac-a")["status"]["allocation"][
        "devices"
    ]["results"]
    assert share["driver"] == ex.DRIVER
    assert share["consumedCapacity"]["cu"] == "10"
    assert share["shareID"]

    # 5. The fence: a claim for the vendor class without the toleration gets no managed GPU.
    sneaky = workloads.resource_claim("sneaky", "cu-vendor-nvidia")
    workloads.create(api, namespace, sneaky)
    workloads.create(api, namespace, workloads.pod("sneaky", claims={"gpu": "sneaky"}))
    workloads.wait_unschedulable(api, namespace, "sneaky", timeout=60)

    # 6. A second plan against what is now live is in sync for our objects.
    again = _plan(api, desired, run, namespace)
    live = [o for o in again.live if not o["kind"].startswith("Validating")]
    target = [
        o
        for o in again.objects
        if _ours(o, run, namespace) and not o["kind"].startswith("Validating")
    ]
    changes = changeset.compute(target, live)
    assert [(e.subject, e.action, e.diff[:3]) for e in changes.changes] == []


def test_admission_policy_denies_tenants_the_fence_toleration(
    api: ApiClient, namespace: str, fleet: tuple[str, st.DesiredState, list[str]]
) -> None:
    run, desired, made = fleet
    result = _plan(api, desired, run, namespace)
    for obj in result.objects:
        if obj["kind"].startswith("ValidatingAdmissionPolicy"):
            apply(api, obj)
            made.append(object_path(obj))
    tolerating = workloads.resource_claim(
        "tolerating",
        "cu-vendor-nvidia",
        namespace=namespace,
        tolerations=[workloads.FENCE_TOLERATION],
    )
    workloads.wait_for(
        lambda: create_as(api, None, tolerating) in (403, 422) or None,
        timeout=60,
        what="the admission policy to deny the fence toleration",
    )
    wildcard = workloads.resource_claim(
        "tolerating", "cu-vendor-nvidia", namespace=namespace, tolerations=[{"operator": "Exists"}]
    )
    assert create_as(api, None, wildcard) in (403, 422)
    # Without the toleration a tenant may use a vendor class of its own (the taint keeps it
    # off fenced devices); every cu-* class, ours, is the reconciler's alone.
    plain = workloads.resource_claim("plain", "tenant-nvidia", namespace=namespace)
    assert create_as(api, None, plain) == 201
    ours = workloads.resource_claim("plain", "cu-vendor-nvidia", namespace=namespace)
    assert create_as(api, None, ours) in (403, 422), "our vendor class is fenced too"
    reconciler = "system:serviceaccount:cu-system:cu-reconciler"
    grant_claims(api, namespace, reconciler)
    # RBAC for the new RoleBinding reaches the authorizer's cache asynchronously.
    workloads.wait_for(
        lambda: create_as(api, reconciler, tolerating) == 201 or None,
        timeout=60,
        what="the reconciler's service account to be admitted",
    )
    generated = next(
        o
        for o in result.objects
        if o["kind"] == "ResourceClaim" and o["metadata"]["namespace"] == namespace
    )
    assert create_as(api, None, generated) in (403, 422), "tenants may not use CU classes"
    workloads.wait_for(
        lambda: create_as(api, reconciler, generated) == 201 or None,
        timeout=60,
        what="the reconciler's service account to use CU classes",
    )

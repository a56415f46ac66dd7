"""No fence window through ``cuctl run`` (issue 18: pool add and removal, vendor rename, an
apiserver restart with the binding deleted), with a tenant creating claims in a tight loop.

The controller (a subprocess, as the reconciler's ServiceAccount) follows a bare Git remote.
A tenant (an impersonated user with RBAC for claims in its own namespace, which has no quota
of ours, so only the fence can refuse it) posts, without pause, claims naming our classes
(a pool's class before it exists, while it exists and after it is pruned; the old and new
vendor classes of a renamed vendor) and claims tolerating the fence or every taint, while
commits add a pool, remove it, and rename a vendor (``biren`` → ``birentech``: its fence
DeviceTaintRules and vendor class change name). The tenant also holds a claim and a Pod for
Biren devices, which the fence taints throughout, so the real scheduler never allocates one.
Then the Biren driver is renamed on the cluster (its slices move to ``gpu.birentech.example.com``):
the devices leave CU (the adapter no longer matches them) and a tenant Pod waiting for that
driver gets one, as anyone may; when the adapter follows the rename the devices are CU again,
fenced, and the tenant's claim that holds one is reported.

Every one of those attempts must be refused by the fence. Then an admin deletes the fence's
binding right after an apiserver restart, and later turns it from Deny to Warn by a merge
patch (``kubectl edit``): the controller restores it within seconds each time, and every claim
the tenant got admitted in those gaps is reported in the CUSync status (``fenceFindings``,
FenceBypass). The counts are printed (BENCHMARKS.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tenant_loop
from harness import Env, owned, wait_for

from reconciler import kube
from reconciler.devcluster import drivers, identity, rawapi, workloads
from reconciler.plan import fence

pytestmark = pytest.mark.integration

NS = "fence-tenant-run"
TENANT = f"system:serviceaccount:{NS}:tenant"
NEW_POOL, DEV_HYGON = tenant_loop.NEW_POOL, tenant_loop.DEV_HYGON
TENANT_BIREN = "tenant-biren"
OLD_DRIVER = "gpu.biren.example.com"
NEW_DRIVER = "gpu.birentech.example.com"
TENANT_NEW_DRIVER = "tenant-birentech"
SLICES = "/apis/resource.k8s.io/v1/resourceslices"
BINDING = (
    f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{fence.POLICY_NAME}"
)
CU_DRIVER = "cu.cu-reconciler.io"


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _rename_biren(root: Path) -> None:
    """The vendor rename: the adapter and every selector that names the vendor."""
    _replace(root / "adapters" / "biren.yaml", "  vendor: biren\n", "  vendor: birentech\n")
    _replace(
        root / "pools" / "inference-prod.yaml",
        "vendors: [nvidia, biren, huawei]",
        "vendors: [nvidia, birentech, huawei]",
    )
    _replace(
        root / "claims" / "research-batch" / "eval-sweep.yaml",
        "allow: [biren, iluvatar, hygon]",
        "allow: [birentech, iluvatar, hygon]",
    )


def _rename_driver(env: Env) -> list[str]:
    """The Biren driver, upgraded, republishes every device under its new name (the old
    slices go first, as a driver's do); returns the nodes."""
    by_node: dict[str, list[dict[str, Any]]] = {}
    for item in rawapi.request(env.admin, "GET", SLICES)["items"]:
        if item["spec"]["driver"] == OLD_DRIVER:
            node = item["spec"]["pool"]["name"]
            by_node.setdefault(node, []).extend(item["spec"].get("devices") or [])
    for node, devices in sorted(by_node.items()):
        drivers.sync_pool(env.admin, OLD_DRIVER, node, [])
        drivers.sync_pool(env.admin, NEW_DRIVER, node, devices)
    return sorted(by_node)


def _fence_rules(env: Env) -> set[str]:
    return {o["metadata"]["name"] for o in owned(env.admin) if o["kind"] == "DeviceTaintRule"}


@pytest.fixture
def tenant(env: Env) -> Iterator[str]:
    api = env.admin
    identity.ensure_namespace(api, NS)
    tenant_loop.grant_claims(api, NS, TENANT)
    drivers.create_device_class(api, "biren", TENANT_BIREN)
    new_class = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": TENANT_NEW_DRIVER},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{NEW_DRIVER}"'}}]},
    }
    rawapi.apply(
        api,
        f"/apis/resource.k8s.io/v1/deviceclasses/{TENANT_NEW_DRIVER}",
        new_class,
        field_manager="t",
    )
    yield TENANT
    workloads.force_delete_pods(api, NS)
    for item in rawapi.request(api, "GET", SLICES)["items"]:
        if item["spec"]["driver"] == NEW_DRIVER:
            rawapi.delete(api, f"{SLICES}/{item['metadata']['name']}")
    for name in (TENANT_BIREN, TENANT_NEW_DRIVER):
        rawapi.delete(api, f"/apis/resource.k8s.io/v1/deviceclasses/{name}")
    path = f"/api/v1/namespaces/{NS}"
    rawapi.delete(api, path)
    wait_for(
        "the tenant namespace to be gone", lambda: kube.call(api, "GET", path).status == 404, 120
    )


def test_a_tenant_loop_through_run_pool_add_removal_rename_and_a_deleted_binding(
    env: Env, tenant: str
) -> None:
    api = env.admin
    rev_a = env.commit(
        "A: the dev-tier Hygon node in no pool",
        lambda r: _replace(
            r / "pools" / "dev.yaml",
            "  selector:\n",
            "  selector:\n    vendors: [nvidia, iluvatar]\n",
        ),
    )
    env.start(interval="1s", resync="5s")
    env.ready_at(rev_a, timeout=180)
    assert any(n.startswith("cu-fence-biren-") for n in _fence_rules(env))

    attempts = tenant_loop.fence_attempts(
        NS,
        cu_classes=(f"cu-{NEW_POOL}", "cu-vendor-biren", "cu-vendor-birentech"),
        tolerating_classes=(TENANT_BIREN, "gpu.hygon.example.com"),
    )
    # The tenant may create claims (a plain one is admitted) and the fence refuses the rest.
    plain = workloads.resource_claim("holds-biren", TENANT_BIREN, namespace=NS)
    assert tenant_loop.post_as(api, tenant, plain).status == 201
    workloads.create(api, NS, workloads.pod("holds-biren", claims={"gpu": "holds-biren"}))
    for _, body in attempts(0):
        wait_for(
            f"the fence to refuse {body['metadata']['name']}",
            lambda b=body: tenant_loop.fenced(tenant_loop.post_as(api, tenant, b, dry_run=True)),
            60,
        )

    phases: dict[str, tuple[int, int, float]] = {}
    restored: list[float] = []
    with env.cp.api_client() as tenant_api:
        loop = tenant_loop.Loop(tenant_api, tenant, attempts)
        with loop.running():

            def phase(name: str, run: Callable[[], None]) -> None:
                before, admitted, t0 = loop.attempts_made, len(loop.admitted), time.monotonic()
                run()
                phases[name] = (
                    loop.attempts_made - before,
                    len(loop.admitted) - admitted,
                    time.monotonic() - t0,
                )

            time.sleep(1.0)

            def add() -> None:
                sha = env.commit(
                    "B: a Hygon pool",
                    lambda r: (r / "pools" / f"{NEW_POOL}.yaml").write_text(DEV_HYGON),
                )
                env.ready_at(sha, timeout=180)
                assert rawapi.request(
                    api, "GET", f"/apis/resource.k8s.io/v1/deviceclasses/cu-{NEW_POOL}"
                )

            def remove() -> None:
                sha = env.commit(
                    "C: no Hygon pool", lambda r: (r / "pools" / f"{NEW_POOL}.yaml").unlink()
                )
                env.ready_at(sha, timeout=180)
                wait_for(
                    "the pool's class to be pruned",
                    lambda: (
                        kube.call(
                            api, "GET", f"/apis/resource.k8s.io/v1/deviceclasses/cu-{NEW_POOL}"
                        ).status
                        == 404
                    ),
                    30,
                )

            def rename() -> None:
                sha = env.commit("D: biren is now birentech", _rename_biren)
                env.ready_at(sha, timeout=180)
                rules = _fence_rules(env)
                assert any(n.startswith("cu-fence-birentech-") for n in rules), rules
                assert not any(n.startswith("cu-fence-biren-") for n in rules), rules

            phase("pool add", add)
            time.sleep(1.0)
            phase("pool removal", remove)
            time.sleep(1.0)
            phase("vendor rename", rename)
            time.sleep(1.0)
            clean, clean_forbidden = list(loop.admitted), loop.forbidden

            def driver_rename() -> None:
                # The tenant waits for devices of the driver's new name (none exist yet).
                claim = workloads.resource_claim("holds-new", TENANT_NEW_DRIVER, namespace=NS)
                assert tenant_loop.post_as(api, tenant, claim).status == 201
                workloads.create(api, NS, workloads.pod("holds-new", claims={"gpu": "holds-new"}))
                # The devices move to the new driver: the adapter no longer matches them, so
                # they leave CU (CU slices and fence rules go) and are anyone's: the tenant's
                # Pod is scheduled onto one.
                assert _rename_driver(env)
                wait_for(
                    "the Biren devices to leave CU",
                    lambda: not any(n.startswith("cu-fence-birentech-") for n in _fence_rules(env)),
                    60,
                )
                workloads.wait_scheduled(api, NS, "holds-new", timeout=120)
                # The adapter follows the rename: the devices are CU again, fenced, and the
                # tenant's claim that holds one is reported (and charged as used).
                sha = env.commit(
                    "E: the Biren driver's new name",
                    lambda r: _replace(
                        r / "adapters" / "biren.yaml",
                        f"driver: {OLD_DRIVER}",
                        f"driver: {NEW_DRIVER}",
                    ),
                )
                env.ready_at(sha, timeout=180)
                assert any(n.startswith("cu-fence-birentech-") for n in _fence_rules(env))

            phase("driver rename", driver_rename)

            def binding_deleted() -> None:
                # An admin deletes the binding right after an apiserver restart.
                env.cp.kill("kube-apiserver")
                env.cp.restart("kube-apiserver")
                api.rest_client.pool_manager.clear()
                wait_for("the delete", lambda: rawapi.delete(api, BINDING) or True, 20)
                t0 = time.monotonic()
                wait_for(
                    "the binding to be restored", lambda: rawapi.request(api, "GET", BINDING), 30
                )
                restored.append(time.monotonic() - t0)
                wait_for(
                    "tenants to be refused again",
                    lambda: tenant_loop.fenced(
                        tenant_loop.post_as(api, tenant, attempts(0)[0][1], dry_run=True)
                    ),
                    30,
                )
                time.sleep(1.0)

            phase("binding deleted after a restart", binding_deleted)

            def warn_edit() -> None:
                # kubectl edit of the binding: Deny -> Warn (server-side apply cannot merge it
                # back; the controller replaces the binding whole).
                rawapi.request(
                    api,
                    "PATCH",
                    BINDING,
                    body={"spec": {"validationActions": ["Warn"]}},
                    query={"fieldManager": "kubectl-edit"},
                    content_type=rawapi.MERGE_PATCH,
                )
                t0 = time.monotonic()
                wait_for(
                    "Deny to be restored",
                    lambda: (
                        rawapi.request(api, "GET", BINDING)["spec"]["validationActions"] == ["Deny"]
                    ),
                    30,
                )
                restored.append(time.monotonic() - t0)
                wait_for(
                    "tenants to be refused again",
                    lambda: tenant_loop.fenced(
                        tenant_loop.post_as(api, tenant, attempts(0)[0][1], dry_run=True)
                    ),
                    30,
                )
                time.sleep(1.0)

            phase("binding edited Deny -> Warn", warn_edit)

    print(
        "fence window through cuctl run: "
        + "; ".join(
            f"{name}: {admitted} of {made} admitted in {took:.1f} s"
            for name, (made, admitted, took) in phases.items()
        )
        + f"; the binding was back {restored[0]:.2f} s after its delete, Deny "
        + f"{restored[1]:.2f} s after the edit; {loop.summary()}"
    )
    assert loop.unexpected == [], loop.unexpected[:5]
    assert clean == [], clean[:5]
    assert clean_forbidden == 0, "RBAC refused the tenant before the restart"
    for name in ("pool add", "pool removal", "vendor rename", "driver rename"):
        assert phases[name][0] >= 3, f"the loop ran through the {name}"
    # The only tenant claim holding a CU-managed device is the one that got it while the
    # device was not CU (the driver rename); the Biren claim's Pod stayed unschedulable.
    held = tenant_loop.cu_held(api, NS, CU_DRIVER)
    assert [h.split(":")[0] for h in held] == ["holds-new"], held
    assert phases["driver rename"][1] == 0, "nothing admitted through the driver rename"
    # Whatever the gaps admitted is reported, by namespace and name, and so is that claim.
    gap = {(ns, name) for _, _, ns, name in loop.admitted} | {(NS, "holds-new")}

    def reported() -> set[tuple[str, str]] | None:
        findings = (env.sync().get("status") or {}).get("fenceFindings") or []
        got = {(f["namespace"], f["name"]) for f in findings}
        return got if gap <= got else None

    got = wait_for("every admitted claim in the CUSync fenceFindings", reported, 60)
    assert "holds-biren" not in {n for ns, n in got if ns == NS}, "a plain claim is no finding"

"""No fence window on the real apiserver (issue 18, items 1, 4 and 5).

A tenant (an impersonated ServiceAccount with RBAC to create claims, in a namespace without
our quota, so only the fence can refuse it) creates claims in a tight loop, for real, while
``cuctl apply`` (the real CLI, as the reconciler's ServiceAccount) first adds a pool and then
removes it again. Each round the tenant asks for the new pool's class (before it exists,
while it exists, after it is pruned), for our vendor class with the fence toleration, and
with the wildcard toleration. Every attempt must be refused by the fence's admission policy
(403 naming it): the policy matches CU classes by name prefix, so it neither waits for the
class nor narrows ahead of the prune. The measured window (admitted attempts) is printed and
recorded in BENCHMARKS.md; the target is none.

Identities are data: with ``admittedIdentities: ["o'brien@example.com"]`` applied through
the real pipeline, that user may create a fence-tolerating claim and a tenant may not; a
policy rendered (bypassing validation) around the injection string ``x'] || true || 'a' in
['b`` still denies the tenant and admits only a user of exactly that name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import tenant_loop
from kubernetes.client import ApiClient
from live_fleet import FENCE_KEY, Fleet
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli, devcluster, kube
from reconciler.devcluster import identity, rawapi, workloads
from reconciler.model import documents as docs
from reconciler.model import ownership
from reconciler.plan import fence

pytestmark = pytest.mark.integration

__import__("reconciler.cli.apply")

INTRUDER_NS = "fence-intruder"
TENANT = "system:serviceaccount:fence-intruder:tenant"
NEW_POOL, DEV_HYGON = tenant_loop.NEW_POOL, tenant_loop.DEV_HYGON
NEW_CLASS = f"cu-{NEW_POOL}"
CLAIMS = f"/apis/resource.k8s.io/v1/namespaces/{INTRUDER_NS}/resourceclaims"


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _commit(fleet: Fleet, message: str) -> str:
    fleet.repo.git.add(A=True)
    return fleet.repo.index.commit(message).hexsha


_grant_claims = tenant_loop.grant_claims
_fenced = tenant_loop.fenced


def _post_as(
    api: ApiClient, user: str, body: dict[str, Any], *, dry_run: bool = False
) -> kube.Response:
    body = {**body, "metadata": {"namespace": INTRUDER_NS, **body["metadata"]}}
    return tenant_loop.post_as(api, user, body, dry_run=dry_run)


def _attempts(n: int) -> list[tuple[str, dict[str, Any]]]:
    """The tenant's round: each claim the fence must refuse."""
    return [
        (
            "new-pool-class",
            workloads.resource_claim(f"t{n}-class", NEW_CLASS, namespace=INTRUDER_NS),
        ),
        (
            "fence-toleration",
            workloads.resource_claim(
                f"t{n}-tolerate",
                "cu-vendor-hygon",
                namespace=INTRUDER_NS,
                tolerations=[{"key": FENCE_KEY, "operator": "Exists"}],
            ),
        ),
        (
            "wildcard-toleration",
            workloads.resource_claim(
                f"t{n}-wildcard",
                "gpu.hygon.example.com",
                namespace=INTRUDER_NS,
                tolerations=[{"operator": "Exists"}],
            ),
        ),
    ]


def _apply(kubeconfig: Path, root: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(cli.app, ["apply", root, "--kubeconfig", str(kubeconfig)])
    return result.exit_code, result.output, time.monotonic() - started


@pytest.fixture
def tenant(api: ApiClient) -> Any:
    identity.ensure_namespace(api, INTRUDER_NS)
    _grant_claims(api, INTRUDER_NS, TENANT)
    yield TENANT
    path = f"/api/v1/namespaces/{INTRUDER_NS}"
    rawapi.delete(api, path)
    workloads.wait_for(
        lambda: kube.call(api, "GET", path).status == 404 or None,
        timeout=120,
        what=f"namespace {INTRUDER_NS} to be gone",
    )


def test_a_tenant_loop_through_a_pool_add_and_removal_is_never_admitted(
    fleet: Fleet, control_plane: devcluster.ControlPlane, tenant: str
) -> None:
    api = fleet.admin
    root = Path(fleet.repo.working_dir)
    kubeconfig = identity.service_account_kubeconfig(
        api, control_plane.kubeconfig, "cu-system", "cu-reconciler"
    )
    # Revision A: the dev-tier Hygon node in no pool (the devices are live; no snapshot).
    _replace(root / "cluster.yaml", "snapshot: observed/snapshot.yaml", "snapshot: null")
    _replace(
        root / "pools" / "dev.yaml",
        "  selector:\n",
        "  selector:\n    vendors: [nvidia, iluvatar]\n",
    )
    _commit(fleet, "A: no Hygon pool")

    # Before install a tenant's claim may name a future CU class; apply then reports it.
    early = workloads.resource_claim("early", NEW_CLASS, namespace=INTRUDER_NS)
    assert _post_as(api, tenant, early).status == 201
    code, output, _ = _apply(kubeconfig, str(root))
    assert code == 0, output
    assert f"ResourceClaim {INTRUDER_NS}/early" in output and "FenceBypass" in output, output
    # The finding names the namespace, why it matters (its device quota) and what to do.
    assert f"device quota of namespace {INTRUDER_NS}" in output, output
    assert f"kubectl delete resourceclaim -n {INTRUDER_NS} early" in output, output

    # The tenant can create claims at all: a plain one is admitted (so a 403 is the fence).
    plain = workloads.resource_claim("plain", "gpu.hygon.example.com", namespace=INTRUDER_NS)
    workloads.wait_for(
        lambda: _post_as(api, tenant, plain, dry_run=True).status == 201 or None,
        timeout=60,
        what="the tenant's RBAC",
    )
    workloads.wait_for(
        lambda: _fenced(_post_as(api, tenant, _attempts(0)[0][1], dry_run=True)) or None,
        timeout=60,
        what="the fence to be enforced",
    )
    policy_before = rawapi.request(
        api,
        "GET",
        f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{fence.POLICY_NAME}",
    )

    with control_plane.api_client() as tenant_api:
        loop = tenant_loop.Loop(tenant_api, TENANT, _attempts)
        with loop.running():
            time.sleep(1.0)
            # B: the pool is added (its class, vendor class, slices and fence rule appear).
            (root / "pools" / "dev-hygon.yaml").write_text(DEV_HYGON, encoding="utf-8")
            _commit(fleet, "B: a Hygon pool")
            before_add = loop.attempts_made
            code, output, took_add = _apply(kubeconfig, str(root))
            assert code == 0, output
            during_add = loop.attempts_made - before_add
            assert rawapi.request(api, "GET", f"/apis/resource.k8s.io/v1/deviceclasses/{NEW_CLASS}")
            time.sleep(1.0)
            # C: the pool is removed again (class, slices and rule pruned).
            (root / "pools" / "dev-hygon.yaml").unlink()
            _commit(fleet, "C: no Hygon pool")
            before_remove = loop.attempts_made
            code, output, took_remove = _apply(kubeconfig, str(root))
            assert code == 0, output
            during_remove = loop.attempts_made - before_remove
            time.sleep(1.0)

    policy_after = rawapi.request(
        api,
        "GET",
        f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{fence.POLICY_NAME}",
    )
    window = (loop.admitted[-1][0] - loop.admitted[0][0]) if loop.admitted else 0.0
    print(
        f"fence window: {loop.attempts_made} tenant attempts ({during_add} during the pool add, "
        f"{took_add:.2f} s; {during_remove} during the removal, {took_remove:.2f} s); "
        f"admitted {len(loop.admitted)}, window {window:.3f} s; {dict(loop.outcomes)}"
    )
    assert loop.unexpected == [], loop.unexpected[:5]
    assert loop.admitted == [], loop.admitted
    assert loop.forbidden == 0
    assert during_add >= 3 and during_remove >= 3, "the loop ran through both applies"
    assert (
        policy_after["metadata"]["resourceVersion"] == policy_before["metadata"]["resourceVersion"]
    ), "adding and removing a pool must not touch the policy"


def _hostile_policy(admitted: str) -> list[dict[str, Any]]:
    base = {
        "driverName": "cu.cu-reconciler.io",
        "reference": {"deviceModel": "A100-SXM4-80GB"},
        "managedNamespaces": ["research"],
    }
    spec = docs.ClusterSettingsSpec.model_validate(base)
    # Bypasses validation on purpose: the escaping must hold on its own.
    spec = spec.model_copy(update={"admitted_identities": [admitted]})
    # Our labels: the fixture's teardown removes it like the policy it replaces.
    return fence.admission_policy(spec, dict(ownership.MANAGED_BY), {})


def test_identities_are_data_on_the_real_apiserver(
    fleet: Fleet, control_plane: devcluster.ControlPlane, tenant: str
) -> None:
    api = fleet.admin
    root = Path(fleet.repo.working_dir)
    obrien = "o'brien@example.com"
    _replace(
        root / "cluster.yaml",
        "  reconcilerNamespace: cu-system\n",
        f'  reconcilerNamespace: cu-system\n  admittedIdentities: ["{obrien}"]\n',
    )
    _commit(fleet, "admit o'brien")
    outcome = fleet.reconcile()
    assert outcome.ok, outcome
    _grant_claims(api, INTRUDER_NS, obrien)
    tolerating = workloads.resource_claim(
        "tolerating",
        "cu-vendor-nvidia",
        namespace=INTRUDER_NS,
        tolerations=[{"key": FENCE_KEY, "operator": "Exists"}],
    )
    workloads.wait_for(
        lambda: _post_as(api, obrien, tolerating, dry_run=True).status == 201 or None,
        timeout=60,
        what="o'brien to be admitted",
    )
    workloads.wait_for(
        lambda: _fenced(_post_as(api, tenant, tolerating, dry_run=True)) or None,
        timeout=60,
        what="the tenant to be denied",
    )

    injection = "x'] || true || 'a' in ['b"
    _grant_claims(api, INTRUDER_NS, injection)
    _grant_claims(api, INTRUDER_NS, "a")
    for obj in _hostile_policy(injection):
        kinds_path = (
            "validatingadmissionpolicies"
            if obj["kind"] == "ValidatingAdmissionPolicy"
            else "validatingadmissionpolicybindings"
        )
        rawapi.apply(
            api,
            f"/apis/admissionregistration.k8s.io/v1/{kinds_path}/{obj['metadata']['name']}",
            obj,
            field_manager="fence-test",
        )
    # The apiserver took the policy (it compiled); wait until it enforces the new one.
    workloads.wait_for(
        lambda: _post_as(api, injection, tolerating, dry_run=True).status == 201 or None,
        timeout=60,
        what="the injection string, as a literal username, to be admitted",
    )
    for user in (tenant, "a", obrien):
        assert _fenced(_post_as(api, user, tolerating, dry_run=True)), user


MODE2 = Path(__file__).resolve().parents[2] / "deploy" / "argocd" / "mode2"


def _argocd_sync_username() -> str:
    """The username Argo CD impersonates for the shipped mode-2 AppProject: its
    destinationServiceAccounts' defaultServiceAccount, ``<namespace>:<name>`` given, prefixed
    with ``system:serviceaccount:`` (argo-cd v3.3.9 controller/sync.go,
    deriveServiceAccountToImpersonate)."""
    docs_ = list(YAML(typ="safe").load_all((MODE2 / "application.yaml").read_text()))
    [project] = [d for d in docs_ if d["kind"] == "AppProject"]
    [entry] = project["spec"]["destinationServiceAccounts"]
    assert entry["namespace"] == "*", "the Application has no destination namespace"
    assert ":" in entry["defaultServiceAccount"]
    return "system:serviceaccount:" + entry["defaultServiceAccount"]


def test_only_the_cu_applications_sync_identity_passes(
    fleet: Fleet, control_plane: devcluster.ControlPlane, tenant: str
) -> None:
    """Engine mode (issue 18, item 6) at the apiserver: the identity Argo CD impersonates for
    the CU AppProject, admitted in Git, may create a fence-tolerating claim; another
    AppProject's destination ServiceAccount and Argo CD's own controller identity, each with
    RBAC for claims, may not. (The real Argo CD run: tests/gitops/test_argocd_real.py.)"""
    api = fleet.admin
    root = Path(fleet.repo.working_dir)
    sync_user = _argocd_sync_username()
    namespace, name = identity.install_rbac(api, MODE2 / "sync-identity.yaml")
    assert identity.username(namespace, name) == sync_user
    _replace(
        root / "cluster.yaml",
        "  reconcilerNamespace: cu-system\n",
        f'  reconcilerNamespace: cu-system\n  admittedIdentities: ["{sync_user}"]\n',
    )
    _commit(fleet, "admit the CU Application's sync identity")
    outcome = fleet.reconcile()
    assert outcome.ok, outcome
    second_team = "system:serviceaccount:research:research-sync"
    engine = "system:serviceaccount:argocd:argocd-application-controller"
    for user in (second_team, engine):
        _grant_claims(api, INTRUDER_NS, user)
    tolerating = workloads.resource_claim(
        "synced",
        "cu-vendor-nvidia",
        namespace=INTRUDER_NS,
        tolerations=[{"key": FENCE_KEY, "operator": "Exists"}],
    )
    workloads.wait_for(
        lambda: _post_as(api, sync_user, tolerating, dry_run=True).status == 201 or None,
        timeout=60,
        what="the CU Application's sync identity to be admitted (its RBAC, the fence)",
    )
    for user in (second_team, engine, tenant):
        workloads.wait_for(
            lambda u=user: _fenced(_post_as(api, u, tolerating, dry_run=True)) or None,
            timeout=60,
            what=f"{user} to be refused by the fence (not by RBAC)",
        )

"""Mode 2 with a real Argo CD v3.3.9: Argo CD syncs what the cu-reconciler plugin renders.

Argo CD (application controller, repo-server, plugin sidecar; built from Go modules by
hack/build-argocd.sh, Redis from Debian) runs against the local control plane with the shipped
plugin.yaml, the shipped AppProject and Application (deploy/argocd/mode2) and the shipped Lua
health checks in argocd-cm. The desired state is the example repository in a bare Git remote.
Sync impersonation is on (deploy/argocd/impersonation): Argo CD reads as its own
ServiceAccount and syncs the CU Application as the dedicated cu-system:cu-sync
(deploy/argocd/mode2/sync-identity.yaml, the AppProject's destinationServiceAccounts), the only
engine identity ClusterSettings.spec.admittedIdentities names.

Proves: Synced and Healthy after a commit; nothing OutOfSync at rest (several resyncs later);
the fence's admission policy is in force before the claims (it denies a tenant's toleration)
and admits the CU Application's sync identity (the claims exist, and Argo CD's own identity is
not admitted); a second team's Application in another AppProject syncs its own claims as its
own destination ServiceAccount but cannot create a claim that tolerates the fence (the sync
fails on the fence's denial, nothing is created); a claim change converges by replace (new uid); the
ResourceClaim health check from argocd-cm reports; an invalid commit leaves every object as it
was and puts the file and line into the Application's ComparisonError condition.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import engine_install
import git
import pytest
import tenant_loop
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli, devcluster
from reconciler.controller import engine_status
from reconciler.devcluster import argocd, identity, rawapi, workloads
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.model import kinds, ownership
from reconciler.plan import fence

pytestmark = pytest.mark.integration

for _name in ("plan", "history"):
    __import__(f"reconciler.cli.{_name}")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitrepo"
APP = "cu-desired-state"
NAMESPACES = (
    "search-prod",
    "search-canary",
    "chat-prod",
    "ads-prod",
    "ads-batch",
    "research",
    "ml-dev",
)


def _wait(probe: Callable[[], Any], timeout: float, what: str, argo: argocd.ArgoCD) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}\n{argo.log_tail(30)}")


def _owned(api: ApiClient) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    selector = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"
    for path, kind in (
        ("/apis/resource.k8s.io/v1/resourceslices", "ResourceSlice"),
        ("/apis/resource.k8s.io/v1/deviceclasses", "DeviceClass"),
        ("/apis/resource.k8s.io/v1/devicetaintrules", "DeviceTaintRule"),
        ("/apis/resource.k8s.io/v1/resourceclaims", "ResourceClaim"),
        ("/apis/resource.k8s.io/v1/resourceclaimtemplates", "ResourceClaimTemplate"),
        ("/api/v1/resourcequotas", "ResourceQuota"),
        (
            "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
        ),
    ):
        for item in rawapi.request(api, "GET", path, query={"labelSelector": selector})["items"]:
            meta = item["metadata"]
            out[(kind, meta.get("namespace", ""), meta["name"])] = item
    return out


def _delete_owned(api: ApiClient) -> None:
    """Delete every object carrying our label, the fence's binding included."""
    for kind, ns, name in _owned(api):
        rawapi.delete(api, kinds.of(kind).object_path(name, ns))
    binding = f"/apis/admissionregistration.k8s.io/v1/{kinds.VAP_BINDINGS}"
    selector = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"
    for item in rawapi.request(api, "GET", binding, query={"labelSelector": selector})["items"]:
        rawapi.delete(api, f"{binding}/{item['metadata']['name']}")


def _exists(api: ApiClient, path: str) -> bool:
    try:
        rawapi.request(api, "GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _commit(work: git.Repo, message: str) -> str:
    work.git.add(A=True)
    sha = work.index.commit(message).hexsha
    work.remote("origin").push("main")
    return sha


def _edit(work: git.Repo, rel: str, old: str, new: str) -> None:
    path = Path(work.working_dir, rel)
    text = path.read_text()
    assert old in text, (rel, old)
    path.write_text(text.replace(old, new))


def _synced_healthy(api: ApiClient, revision: str) -> dict[str, Any] | None:
    app = argocd.application(api, APP)
    status = app.get("status") or {}
    op = status.get("operationState") or {}
    if (
        (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("sync") or {}).get("revision") == revision
        and (status.get("health") or {}).get("status") == "Healthy"
        and op.get("phase") == "Succeeded"
        and (op.get("syncResult") or {}).get("revision") == revision
    ):
        return app
    return None


ENGINE_STATUS = engine_status.path("cu-system")


def _engine_report(work: git.Repo) -> dict[str, Any]:
    """What the plugin's `cuctl render --status` makes of HEAD: the engine status report."""
    sha = work.head.commit.hexsha
    result = CliRunner().invoke(
        cli.app, ["render", str(work.working_dir), "--status", "--source-revision", sha]
    )
    assert result.exit_code == 0, result.output
    [status] = [
        o for o in YAML(typ="safe").load_all(result.stdout) if o and o["kind"] == "CUEngineStatus"
    ]
    report: dict[str, Any] = status["report"]
    return report


def _assert_engine_status(api: ApiClient, app: dict[str, Any], expected: dict[str, Any]) -> None:
    live = rawapi.request(api, "GET", ENGINE_STATUS)
    assert live["report"] == expected
    claims = expected["claims"]
    assert claims["admitted"] > 0
    [entry] = [r for r in app["status"]["resources"] if r["kind"] == "CUEngineStatus"]
    assert (entry["namespace"], entry["name"], entry["status"]) == (
        "cu-system",
        "cu-reconciler-engine-status",
        "Synced",
    )
    # Argo CD's own Lua engine ran the shipped check (gopher-lua, from argocd-cm).
    assert entry["health"] == {
        "status": "Healthy",
        "message": f"revision {expected['revision']}: {claims['admitted']} claims admitted, "
        f"{claims['pending']} pending, {claims['preempted']} preempted",
    }, entry


SYNC_IDENTITY = ROOT / "deploy" / "argocd" / "mode2" / "sync-identity.yaml"
IMPERSONATION = ROOT / "deploy" / "argocd" / "impersonation" / "kustomization.yaml"
RESEARCH_CLAIMS = "research-claims"
ARGO_TENANT_NS = "fence-tenant-argo"
ARGO_TENANT = f"system:serviceaccount:{ARGO_TENANT_NS}:tenant"
NEW_POOL, DEV_HYGON = tenant_loop.NEW_POOL, tenant_loop.DEV_HYGON


@pytest.fixture
def impersonation(control_plane: devcluster.ControlPlane) -> Iterator[str]:
    """The shipped sync identity installed and sync impersonation on, as
    deploy/argocd/impersonation sets it; off again afterwards (mode 1 shares the Argo CD)."""
    with control_plane.api_client() as api:
        namespace, name = identity.install_rbac(api, SYNC_IDENTITY)
        kustomization = YAML(typ="safe").load(IMPERSONATION.read_text())
        [generated] = kustomization["configMapGenerator"]
        assert generated["name"] == "argocd-cm" and generated["literals"] == [
            f"{argocd.IMPERSONATION_KEY}=true"
        ]
        argocd.set_sync_impersonation(api, True)
        try:
            yield identity.username(namespace, name)
        finally:
            argocd.set_sync_impersonation(api, False)


def _second_team(
    api: ApiClient, control_plane: devcluster.ControlPlane, tmp_path: Path
) -> git.Repo:
    """Another team's AppProject (namespace research only, its own destination ServiceAccount
    with RBAC for claims there) and its Application syncing a plain directory of claims."""
    body = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "research-sync", "namespace": "research"},
    }
    rawapi.apply(
        api,
        "/api/v1/namespaces/research/serviceaccounts/research-sync",
        body,
        field_manager="research",
    )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "research-sync", "namespace": "research"},
        "rules": [
            {
                "apiGroups": ["resource.k8s.io"],
                "resources": ["resourceclaims"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "research-sync", "namespace": "research"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "research-sync",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "research-sync", "namespace": "research"}],
    }
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/research"
    rawapi.apply(api, f"{rbac}/roles/research-sync", role, field_manager="research")
    rawapi.apply(api, f"{rbac}/rolebindings/research-sync", binding, field_manager="research")

    origin = tmp_path / "research.git"
    git.Repo.init(origin, bare=True, initial_branch="main")
    work = git.Repo.clone_from(str(origin), tmp_path / "research")
    with work.config_writer() as cfg:
        cfg.set_value("user", "name", "Research")
        cfg.set_value("user", "email", "research@example.invalid")
    plain = workloads.resource_claim("plain", "gpu.nvidia.com", namespace="research")
    Path(work.working_dir, "plain.yaml").write_text(json.dumps(plain))
    work.git.checkout("-b", "main")
    _commit(work, "a plain claim")
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": "research", "namespace": argocd.NAMESPACE},
        "spec": {
            "sourceRepos": [f"file://{origin}"],
            "destinations": [{"server": control_plane.server, "namespace": "research"}],
            "destinationServiceAccounts": [
                {
                    "server": control_plane.server,
                    "namespace": "research",
                    "defaultServiceAccount": "research-sync",
                }
            ],
            "namespaceResourceWhitelist": [{"group": "resource.k8s.io", "kind": "ResourceClaim"}],
        },
    }
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": RESEARCH_CLAIMS, "namespace": argocd.NAMESPACE},
        "spec": {
            "project": "research",
            "source": {"repoURL": f"file://{origin}", "targetRevision": "main", "path": "."},
            "destination": {"server": control_plane.server, "namespace": "research"},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }
    argocd.apply_manifest(api, project)
    argocd.apply_manifest(api, app)
    return work


def test_argocd_syncs_the_rendered_objects(
    control_plane: devcluster.ControlPlane,
    argo: argocd.ArgoCD,
    tmp_path: Path,
    impersonation: str,
) -> None:
    assert impersonation == "system:serviceaccount:cu-system:cu-sync"
    with control_plane.api_client() as api:
        devsnapshot.load(api, EXAMPLE / "observed" / "snapshot.yaml")
        for ns in NAMESPACES:
            identity.ensure_namespace(api, ns)

        # The desired state in a bare remote; only the CU Application's sync identity admitted.
        origin = tmp_path / "desired.git"
        git.Repo.init(origin, bare=True, initial_branch="main")
        work = git.Repo.clone_from(str(origin), tmp_path / "work")
        shutil.copytree(EXAMPLE, work.working_dir, dirs_exist_ok=True)
        with work.config_writer() as cfg:
            cfg.set_value("user", "name", "Alice")
            cfg.set_value("user", "email", "alice@example.invalid")
        _edit(
            work,
            "cluster.yaml",
            "  reconcilerNamespace: cu-system\n",
            f"  reconcilerNamespace: cu-system\n  admittedIdentities:\n    - {impersonation}\n",
        )
        # A pool the end of this test removes with a tenant loop running (issue 18, item 5).
        _edit(
            work,
            "pools/dev.yaml",
            "  selector:\n",
            "  selector:\n    vendors: [nvidia, iluvatar]\n",
        )
        Path(work.working_dir, "pools", f"{NEW_POOL}.yaml").write_text(DEV_HYGON)
        work.git.checkout("-b", "main")
        first = _commit(work, "desired state")

        # Engine mode's prerequisites (deploy/engine): the CUEngineStatus CRD, and RBAC that
        # lets the sync identity write that one object.
        engine_install.install(api)

        # The shipped AppProject and Application, pointed at this remote and this apiserver.
        text = (ROOT / "deploy/argocd/mode2/application.yaml").read_text()
        text = text.replace(
            "https://git.example.com/platform/cu-desired-state.git", f"file://{origin}"
        )
        text = text.replace("https://kubernetes.default.svc", control_plane.server)
        for doc in YAML(typ="safe").load_all(text):
            argocd.apply_manifest(api, doc)

        app = _wait(
            lambda: _synced_healthy(api, first), 300, "Synced+Healthy at the first commit", argo
        )
        resources = app["status"]["resources"]
        kinds = {r["kind"] for r in resources}
        assert {
            "ValidatingAdmissionPolicy",
            "ResourceSlice",
            "ResourceClaim",
            "DeviceTaintRule",
        } <= kinds
        live = _owned(api)
        assert len(live) >= 40

        # The ResourceClaim health check from argocd-cm reports (Argo CD ships none).
        claims = [r for r in resources if r["kind"] == "ResourceClaim"]
        assert claims and all(
            (r.get("health") or {}).get("status") == "Healthy"
            and "allocated" in (r.get("health") or {}).get("message", "").lower()
            for r in claims
        ), claims

        # Engine mode has eyes: the plugin's render carried the engine status (shipped
        # plugin.yaml passes --status); Argo CD applied it as cu-sync and evaluated the shipped
        # Lua health on it; it holds this revision's admission result.
        expected = _engine_report(work)
        assert expected["revision"] == first
        _assert_engine_status(api, app, expected)

        # At rest: several resyncs later, still Synced, and no single object OutOfSync.
        time.sleep(25)
        argocd.refresh(api, APP)
        time.sleep(5)
        app = _wait(lambda: _synced_healthy(api, first), 60, "still Synced", argo)
        drift = [r for r in app["status"]["resources"] if r.get("status") != "Synced"]
        assert drift == [], drift
        assert _owned(api).keys() == live.keys()

        # The fence is in force: a tenant's toleration of the fence taint is denied.
        tolerating = workloads.resource_claim(
            "sneaky",
            "cu-vendor-nvidia",
            namespace="research",
            tolerations=[workloads.FENCE_TOLERATION],
        )
        with pytest.raises(ApiException) as denied:
            rawapi.request(
                api,
                "POST",
                "/apis/resource.k8s.io/v1/namespaces/research/resourceclaims",
                body=tolerating,
            )
        assert denied.value.status in (403, 422)
        # Argo CD's own identity is not admitted: the claims above were synced as cu-sync.
        assert argocd.USERNAME not in json.dumps(
            live[("ValidatingAdmissionPolicy", "", fence.POLICY_NAME)]["spec"]
        )

        # A second team's Application, in another AppProject, syncs as its own destination
        # ServiceAccount: its plain claim is created, a fence-tolerating one is refused.
        research = _second_team(api, control_plane, tmp_path)
        plain_path = "/apis/resource.k8s.io/v1/namespaces/research/resourceclaims/plain"
        _wait(lambda: _exists(api, plain_path), 180, "the second team's plain claim", argo)
        sneaky = workloads.resource_claim(
            "sneaky-synced",
            "cu-vendor-nvidia",
            namespace="research",
            tolerations=[workloads.FENCE_TOLERATION],
        )
        Path(research.working_dir, "sneaky.yaml").write_text(json.dumps(sneaky))
        _commit(research, "a claim that tolerates the fence")
        argocd.refresh(api, RESEARCH_CLAIMS)

        def refused() -> str | None:
            # Argo CD keeps retrying an automated sync that failed (phase Running between
            # attempts); each attempt's message names the claim and the fence's denial.
            op = (argocd.application(api, RESEARCH_CLAIMS).get("status") or {}).get(
                "operationState"
            ) or {}
            text = json.dumps(op)
            if "sneaky-synced" in text and fence.POLICY_NAME in text and "forbidden" in text:
                return text
            return None

        _wait(refused, 240, "the second team's sync to be refused by the fence", argo)
        assert not _exists(
            api, "/apis/resource.k8s.io/v1/namespaces/research/resourceclaims/sneaky-synced"
        ), "a fence-tolerating claim was created by another AppProject's Application"
        rawapi.delete(api, f"{argocd.APPS}/{RESEARCH_CLAIMS}")
        rawapi.delete(api, plain_path)

        # A claim change converges: the template is re-created (immutable spec), by Argo CD.
        template_key = ("ResourceClaimTemplate", "ads-batch", "ads-backfill")
        old_uid = live[template_key]["metadata"]["uid"]
        _edit(work, "claims/ads-embedding/backfill.yaml", "minMemory: 32Gi", "minMemory: 48Gi")
        second = _commit(work, "Backfill needs 48Gi devices")
        argocd.refresh(api, APP)
        _wait(lambda: _synced_healthy(api, second), 300, "Synced+Healthy at the claim change", argo)
        now = _owned(api)
        assert now[template_key]["metadata"]["uid"] != old_uid, "replaced, not patched"
        assert "memoryMiB >= 49152" in json.dumps(now[template_key]["spec"])
        assert now.keys() == live.keys()
        _assert_engine_status(api, argocd.application(api, APP), _engine_report(work))

        # Audit: the live template was produced by the claim-change commit (content hash).
        result = CliRunner().invoke(
            cli.app,
            [
                "history",
                str(work.working_dir),
                "--object",
                "ResourceClaimTemplate/ads-batch/ads-backfill",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "-o",
                "json",
            ],
        )
        assert result.exit_code == 0, result.output
        produced = json.loads(result.stdout)
        assert produced["revision"] == second and produced["author"] == "Alice"

        # Server-Side Diff cannot diff an immutable claim spec (its SSA dry run is refused):
        # switched on, the next claim change is a ComparisonError and nothing syncs. The
        # shipped Application opts out (compare-options ServerSideDiff=false, docs/gitops.md);
        # restored, the same commit converges.
        shipped = argocd.application(api, APP)["metadata"]["annotations"][COMPARE]
        assert shipped == "ServerSideDiff=false"
        _compare_options(api, "ServerSideDiff=true")
        _edit(work, "claims/ads-embedding/backfill.yaml", "minMemory: 48Gi", "minMemory: 64Gi")
        third = _commit(work, "Backfill needs 64Gi devices")
        argocd.refresh(api, APP)

        def ssd_error() -> str | None:
            status = argocd.application(api, APP).get("status") or {}
            for c in status.get("conditions") or ():
                if c.get("type") == "ComparisonError" and "ads-backfill" in c.get("message", ""):
                    return str(c["message"])
            return None

        message = _wait(ssd_error, 180, "Server-Side Diff's ComparisonError on the template", argo)
        assert "invalid" in message or "immutable" in message, message
        assert _owned(api)[template_key]["metadata"]["uid"] == now[template_key]["metadata"]["uid"]
        _compare_options(api, shipped)
        argocd.refresh(api, APP)
        _wait(lambda: _synced_healthy(api, third), 300, "Synced+Healthy with the opt-out", argo)
        assert "memoryMiB >= 65536" in json.dumps(_owned(api)[template_key]["spec"])
        second = third

        # An invalid commit: nothing changes on the cluster; the Application says why, where.
        before = {k: v["metadata"]["resourceVersion"] for k, v in _owned(api).items()}
        _edit(work, "claims/ads-embedding/backfill.yaml", "cu: 80", "cu: -80")
        bad = _commit(work, "Broken claim")
        argocd.refresh(api, APP)

        def comparison_error() -> str | None:
            status = argocd.application(api, APP).get("status") or {}
            for c in status.get("conditions") or ():
                if c.get("type") == "ComparisonError" and "backfill.yaml" in c.get("message", ""):
                    return str(c["message"])
            return None

        message = _wait(comparison_error, 180, "a ComparisonError naming the file", argo)
        assert "claims/ads-embedding/backfill.yaml:" in message
        time.sleep(10)
        after = {k: v["metadata"]["resourceVersion"] for k, v in _owned(api).items()}
        assert after == before, "an invalid commit changed the cluster"
        status = argocd.application(api, APP)["status"]
        assert status["operationState"]["syncResult"]["revision"] == second
        assert bad != second
        # The engine status still says what the cluster runs: the last good revision.
        assert rawapi.request(api, "GET", ENGINE_STATUS)["report"]["revision"] == second

        # A valid commit whose promise the devices cannot keep (a guarantee raised tenfold,
        # within the size the pool is now declared at: the nodes are on order): Argo CD
        # applies it and the shipped check, in Argo CD's Lua engine, says Degraded with the
        # shortfall, the Application with it.
        _edit(work, "claims/ads-embedding/backfill.yaml", "cu: -80", "cu: 80")
        _edit(
            work, "pools/inference-prod.yaml", "declaredCapacity: 9400", "declaredCapacity: 30000"
        )
        _edit(work, "tenants/chat-assistant.yaml", "guaranteed: 2000", "guaranteed: 20000")
        _edit(work, "tenants/chat-assistant.yaml", "limit: 3000", "limit: 30000")
        overcommitted = _commit(work, "Guarantee chat ten times its devices")
        expected = _engine_report(work)
        assert expected["shortfalls"], "the commit overcommits the pool"
        argocd.refresh(api, APP)

        def degraded() -> dict[str, Any] | None:
            app = argocd.application(api, APP)
            status = app.get("status") or {}
            entries = [r for r in status.get("resources") or () if r["kind"] == "CUEngineStatus"]
            live = rawapi.request(api, "GET", ENGINE_STATUS)["report"]
            if (
                entries
                and (entries[0].get("health") or {}).get("status") == "Degraded"
                and live["revision"] == overcommitted
                and (status.get("health") or {}).get("status") == "Degraded"
            ):
                return dict(entries[0])
            return None

        entry = _wait(degraded, 300, "the engine status Degraded on a shortfall", argo)
        assert entry["health"]["message"].startswith("promise not deliverable: tenant "), entry
        assert f"revision {overcommitted}:" in entry["health"]["message"]
        assert rawapi.request(api, "GET", ENGINE_STATUS)["report"] == expected

        # Issue 18: a tenant creates claims in a tight loop (each one the fence must refuse)
        # while Argo CD prunes a pool; none is admitted. The guarantee goes back first, so the
        # Application is Healthy again.
        _edit(work, "tenants/chat-assistant.yaml", "guaranteed: 20000", "guaranteed: 2000")
        _edit(work, "tenants/chat-assistant.yaml", "limit: 30000", "limit: 3000")
        _edit(
            work, "pools/inference-prod.yaml", "declaredCapacity: 30000", "declaredCapacity: 9400"
        )
        _argocd_pool_removal_with_a_tenant_loop(api, control_plane, work, argo)


def _argocd_pool_removal_with_a_tenant_loop(
    api: ApiClient, control_plane: devcluster.ControlPlane, work: git.Repo, argo: argocd.ArgoCD
) -> None:
    """The rendered policy matches ``cu-*`` and never changes with the pools, so no sync wave
    order (the class, quotas, slices and taint rules pruned last) opens a window: before, a
    claim created while Argo CD pruned a pool got a CU device (2.3-5.7 s)."""
    identity.ensure_namespace(api, ARGO_TENANT_NS)
    tenant_loop.grant_claims(api, ARGO_TENANT_NS, ARGO_TENANT)
    attempts = tenant_loop.fence_attempts(
        ARGO_TENANT_NS,
        cu_classes=(f"cu-{NEW_POOL}", "cu-vendor-hygon"),
        tolerating_classes=("gpu.hygon.example.com",),
    )
    plain = workloads.resource_claim("plain", "gpu.hygon.example.com", namespace=ARGO_TENANT_NS)
    _wait(
        lambda: tenant_loop.post_as(api, ARGO_TENANT, plain, dry_run=True).status == 201,
        60,
        "the tenant's RBAC",
        argo,
    )
    cu_class = f"/apis/resource.k8s.io/v1/deviceclasses/cu-{NEW_POOL}"
    assert _exists(api, cu_class), "the pool to remove is live"
    with control_plane.api_client() as tenant_api:
        loop = tenant_loop.Loop(tenant_api, ARGO_TENANT, attempts)
        with loop.running():
            time.sleep(1.0)
            before, t0 = loop.attempts_made, time.monotonic()
            Path(work.working_dir, "pools", f"{NEW_POOL}.yaml").unlink()
            sha = _commit(work, "no Hygon pool")
            argocd.refresh(api, APP)
            _wait(lambda: _synced_healthy(api, sha), 300, "Synced without the pool", argo)
            _wait(lambda: not _exists(api, cu_class), 60, "the pool's class pruned", argo)
            during, took = loop.attempts_made - before, time.monotonic() - t0
            time.sleep(1.0)
    print(
        f"fence window through Argo CD's prune of a pool ({took:.1f} s, {during} attempts "
        f"during it): {loop.summary()}"
    )
    assert loop.unexpected == [], loop.unexpected[:5]
    assert loop.admitted == [], loop.admitted[:5]
    assert loop.forbidden == 0
    assert during >= 3, "the loop ran through the prune"
    rawapi.delete(api, f"/api/v1/namespaces/{ARGO_TENANT_NS}")


COMPARE = "argocd.argoproj.io/compare-options"


def _compare_options(api: ApiClient, value: str) -> None:
    """Set the Application's compare options (Argo CD's per-Application diff switch)."""
    rawapi.request(
        api,
        "PATCH",
        f"{argocd.APPS}/{APP}",
        body={"metadata": {"annotations": {COMPARE: value}}},
        content_type=rawapi.MERGE_PATCH,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mode1_argocd_reports_the_controllers_cusync_health(
    control_plane: devcluster.ControlPlane, argo: argocd.ArgoCD, tmp_path: Path
) -> None:
    """Mode 1: the controller (cuctl run) reconciles; Argo CD manages its CUSync and reports
    its health through the Lua check in argocd-cm: Healthy at the applied revision, Degraded
    (with file:line) when a commit stalls it.

    The controller runs as a process with its own ServiceAccount (no kubelet runs Pods here);
    Argo CD syncs the shipped mode-1 AppProject and the cu-sync Application.
    """
    with control_plane.api_client() as api:
        # Switch from mode 2: delete the Application, then what Argo CD created. The
        # controller never adopts objects another field manager created (issue 8: ownership
        # cannot be faked), so a switch of modes starts from a clean slate.
        rawapi.delete(api, f"{argocd.APPS}/{APP}")
        _delete_owned(api)
        # The tenants' namespaces exist in a real cluster (mode 2 made them; this test may
        # also run alone): the controller writes their claims and quotas there.
        devsnapshot.load(api, EXAMPLE / "observed" / "snapshot.yaml")
        for ns in NAMESPACES:
            identity.ensure_namespace(api, ns)
        crd = YAML(typ="safe").load((ROOT / "deploy" / "crd.yaml").read_text())
        rawapi.apply(
            api,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
            crd,
            field_manager="platform-team",
        )
        account = identity.install_rbac(api)
        kubeconfig = identity.service_account_kubeconfig(api, control_plane.kubeconfig, *account)
        time.sleep(3)

        desired = tmp_path / "desired.git"
        git.Repo.init(desired, bare=True, initial_branch="main")
        work = git.Repo.clone_from(str(desired), tmp_path / "desired")
        shutil.copytree(EXAMPLE, work.working_dir, dirs_exist_ok=True)
        with work.config_writer() as cfg:
            cfg.set_value("user", "name", "Bob")
            cfg.set_value("user", "email", "bob@example.invalid")
        work.git.checkout("-b", "main")
        good = _commit(work, "desired state")

        deploy = tmp_path / "deploy.git"
        git.Repo.init(deploy, bare=True, initial_branch="main")
        dwork = git.Repo.clone_from(str(deploy), tmp_path / "deploy")
        with dwork.config_writer() as cfg:
            cfg.set_value("user", "name", "Platform")
            cfg.set_value("user", "email", "platform@example.invalid")
        target = Path(dwork.working_dir, "deploy/argocd/mode1/cusync")
        target.mkdir(parents=True)
        text = (ROOT / "deploy/argocd/mode1/cusync/cusync.yaml").read_text()
        text = text.replace("https://git.example.com/platform/cu-desired-state.git", str(desired))
        (target / "cusync.yaml").write_text(text)
        dwork.git.checkout("-b", "main")
        _commit(dwork, "cusync")
        manifests = (ROOT / "deploy/argocd/mode1/application.yaml").read_text()
        manifests = manifests.replace(
            "https://github.com/cu-reconciler/cu-reconciler.git", f"file://{deploy}"
        )
        manifests = manifests.replace("https://kubernetes.default.svc", control_plane.server)
        for doc in YAML(typ="safe").load_all(manifests):
            if doc["kind"] == "AppProject" or doc["metadata"]["name"] == "cu-sync":
                argocd.apply_manifest(api, doc)
        _wait(
            lambda: rawapi.request(api, "GET", "/apis/cu-reconciler.io/v1alpha1/cusyncs")["items"],
            180,
            "Argo CD to create the CUSync",
            argo,
        )

        log = tmp_path / "controller.log"
        with log.open("wb") as out:
            controller = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reconciler.cli",
                    "run",
                    "--repo",
                    str(desired),
                    "--name",
                    "default",  # deploy/deployment.yaml's, and the shipped CUSync's name
                    "--interval",
                    "2s",
                    "--resync",
                    "5s",
                    "--metrics-port",
                    str(_free_port()),
                    "--webhook-port",
                    str(_free_port()),
                    "--kubeconfig",
                    str(kubeconfig),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--identity",
                    "mode1-test",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT), "CU_WEBHOOK_SECRET": "mode1-test"},
            )
        try:

            def health() -> tuple[str, str] | None:
                app = argocd.application(api, "cu-sync")
                for r in (app.get("status") or {}).get("resources") or ():
                    if r["kind"] == "CUSync" and r.get("health"):
                        return (r["health"].get("status", ""), r["health"].get("message", ""))
                return None

            def reports(expected: tuple[str, str]) -> bool:
                argocd.refresh(api, "cu-sync")
                return health() == expected

            _wait(
                lambda: reports(("Healthy", f"Applied revision {good}")),
                240,
                "Argo CD to report the CUSync Healthy at the first commit",
                argo,
            )
            _edit(work, "claims/ads-embedding/backfill.yaml", "cu: 80", "cu: -80")
            bad = _commit(work, "Broken claim")

            def degraded() -> bool:
                argocd.refresh(api, "cu-sync")
                found = health()
                return bool(
                    found
                    and found[0] == "Degraded"
                    and "claims/ads-embedding/backfill.yaml:" in found[1]
                )

            _wait(degraded, 240, "Argo CD to report the stalled CUSync Degraded", argo)
            status = rawapi.request(api, "GET", "/apis/cu-reconciler.io/v1alpha1/cusyncs/default")[
                "status"
            ]
            assert status["lastAppliedRevision"] == good
            assert status["lastAttemptedRevision"] == bad
        finally:
            controller.terminate()
            controller.wait(timeout=60)
            # The session's cluster is shared with later tests: the Application first (its
            # automated sync would re-create the CUSync), then what it and the controller made.
            rawapi.delete(api, f"{argocd.APPS}/cu-sync")
            rawapi.delete(api, "/apis/cu-reconciler.io/v1alpha1/cusyncs/default")
            _delete_owned(api)
        assert controller.returncode == 0, log.read_text()[-3000:]

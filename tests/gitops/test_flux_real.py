"""The Flux recipe (deploy/flux) with real Flux controllers (hack/build-flux.sh).

source-controller and kustomize-controller of Flux v2.9.5 run against the local control plane.
The desired-state repository is a bare remote served over Git's smart HTTP (Flux accepts no
file:// URL); its branch ``rendered`` holds what ``cuctl render`` made of examples/gitrepo, in
a commit signed with a fresh OpenPGP key (the hydration bot's). The shipped GitRepository and
Kustomization are applied unchanged except for the URL.

Proves: the GitRepository verifies the signature and the Kustomization applies every rendered
object as the reconciler's ServiceAccount (impersonation; the fence admits it) and reports
Ready (health, claims included); the fence is in force; a changed claim converges by
re-creation (``force``); an unsigned head is refused and changes nothing; deleting the
Kustomization prunes exactly what it applied.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
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

from reconciler import cli, devcluster, kube
from reconciler.controller import engine_status
from reconciler.devcluster import flux, githttp, identity, rawapi, workloads
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.model import kinds, ownership
from reconciler.plan import fence

pytestmark = pytest.mark.integration

__import__("reconciler.cli.plan")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitrepo"
UPSTREAM = "https://git.example.com/platform/cu-desired-state.git"
KS = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/cu-system/kustomizations/cu-desired-state"
GITREPO = "/apis/source.toolkit.fluxcd.io/v1/namespaces/cu-system/gitrepositories/cu-desired-state"
NAMESPACES = (
    "search-prod",
    "search-canary",
    "chat-prod",
    "ads-prod",
    "ads-batch",
    "research",
    "ml-dev",
)
OWNED_KINDS = (
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
)


@pytest.fixture(scope="module")
def running_flux(
    control_plane: devcluster.ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[flux.Flux]:
    bin_dir = flux.build()
    started = flux.start(control_plane, tmp_path_factory.mktemp("flux"), bin_dir)
    try:
        yield started
    finally:
        started.stop()


def _owned(api: ApiClient) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    selector = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"
    for path, kind in OWNED_KINDS:
        for item in rawapi.request(api, "GET", path, query={"labelSelector": selector})["items"]:
            meta = item["metadata"]
            out[(kind, meta.get("namespace", ""), meta["name"])] = item
    return out


def _pruned(api: ApiClient) -> bool:
    """The Kustomization is gone, so its finalizer pruned its whole inventory (the driver-name
    ConfigMap included: without delete on it, deletion hangs on the finalizer forever)."""
    driver = "/api/v1/namespaces/cu-system/configmaps/cu-reconciler-driver"
    return (
        not _owned(api)
        and kube.call(api, "GET", KS).status == 404
        and kube.call(api, "GET", driver).status == 404
    )


def _install_flux_source(api: ApiClient, public_key: str, server: githttp.GitHTTPServer) -> None:
    """What the platform team applies: the hydration bot's public key, then the shipped
    deploy/flux GitRepository (its URL pointed at ``server``) and CU Kustomization."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cu-hydration-signing-keys", "namespace": "cu-system"},
        "stringData": {"cu-hydrate.asc": public_key},
    }
    path = "/api/v1/namespaces/cu-system/secrets/cu-hydration-signing-keys"
    rawapi.apply(api, path, secret, field_manager="platform-team")
    text = (ROOT / "deploy/flux/gitrepository.yaml").read_text()
    assert UPSTREAM in text
    text = text.replace(UPSTREAM, server.url("cu-desired-state.git"))
    text += "---\n" + (ROOT / "deploy/flux/desired-state.yaml").read_text()
    for doc in YAML(typ="safe").load_all(text):
        path = GITREPO if doc["kind"] == "GitRepository" else KS
        rawapi.apply(api, path, doc, field_manager="platform-team")


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c["type"] == kind:
            return dict(c)
    return {}


def _ready_at(api: ApiClient, sha: str) -> dict[str, Any] | None:
    ks = rawapi.request(api, "GET", KS)
    status = ks.get("status") or {}
    ready = _condition(ks, "Ready")
    if ready.get("status") == "True" and status.get("lastAppliedRevision", "").endswith(sha):
        return dict(ks)
    return None


def _reconcile_now(api: ApiClient, path: str, stamp: str) -> None:
    """Flux's `flux reconcile`: the requestedAt annotation triggers a reconcile at once."""
    rawapi.request(
        api,
        "PATCH",
        path,
        body={"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": stamp}}},
        content_type=rawapi.MERGE_PATCH,
    )


class _Hydrator:
    """The hydration bot: renders the desired state and commits it, signed, to `rendered`."""

    def __init__(self, tmp: Path, origin: Path) -> None:
        self.gnupg = tmp / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        self.env = {**os.environ, "GNUPGHOME": str(self.gnupg)}
        subprocess.run(
            [
                *("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", ""),
                *("--quick-gen-key", "cu-hydrate <cu-hydrate@example.invalid>"),
                *("ed25519", "sign", "never"),
            ],
            env=self.env,
            check=True,
            capture_output=True,
        )
        listing = subprocess.run(
            ["gpg", "--batch", "--with-colons", "--list-secret-keys"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.key = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr")
        )
        self.public = subprocess.run(
            ["gpg", "--batch", "--armor", "--export", self.key],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        self.repo = git.Repo.clone_from(str(origin), tmp / "rendered")
        self.repo.git.checkout("--orphan", "rendered")

    def close(self) -> None:
        """Stop the gpg-agent that gpg started for this key ring."""
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.env, check=False)

    def publish(self, desired: Path, message: str, *, sign: bool = True) -> str:
        # As deploy/flux/hydrate.yaml: the engine status too, naming the source commit (a
        # stand-in id here: the desired state is a plain directory).
        source_sha = hashlib.sha1(message.encode()).hexdigest()
        result = CliRunner().invoke(
            cli.app, ["render", str(desired), "--status", "--source-revision", source_sha]
        )
        assert result.exit_code == 0, result.output
        Path(self.repo.working_dir, "cu-reconciler.yaml").write_text(result.stdout)
        self.repo.git.add(A=True)
        args = ["-c", "user.name=cu-hydrate", "-c", "user.email=cu-hydrate@example.invalid"]
        if sign:
            args += ["-c", f"user.signingkey={self.key}", "-c", "gpg.program=gpg"]
        commit = ["commit", "-q", "-m", message] + (["-S"] if sign else [])
        subprocess.run(["git", *args, *commit], cwd=self.repo.working_dir, env=self.env, check=True)
        self.repo.git.push("origin", "rendered")
        return str(self.repo.head.commit.hexsha)


def test_flux_applies_the_rendered_objects(
    control_plane: devcluster.ControlPlane, running_flux: flux.Flux, tmp_path: Path
) -> None:
    with control_plane.api_client() as api:
        devsnapshot.load(api, EXAMPLE / "observed" / "snapshot.yaml")
        for ns in NAMESPACES:
            identity.ensure_namespace(api, ns)
        identity.ensure_namespace(api, "cu-system")
        identity.install_rbac(api)
        engine_install.install(api)  # the engine status CRD, and RBAC for cu-reconciler

        desired = tmp_path / "desired"
        shutil.copytree(EXAMPLE, desired)
        served = tmp_path / "served"
        origin = served / "cu-desired-state.git"
        git.Repo.init(origin, bare=True, initial_branch="main")
        bot = _Hydrator(tmp_path, origin)
        first = bot.publish(desired, "Render 1")

        with contextlib.closing(bot), githttp.GitHTTPServer(served) as server:
            _install_flux_source(api, bot.public, server)

            ks = running_flux.wait_for(
                lambda: _ready_at(api, first), 300, "the Kustomization Ready at the first render"
            )
            source = rawapi.request(api, "GET", GITREPO)
            assert _condition(source, "SourceVerified").get("status") == "True", source["status"]
            rendered = [
                d
                for d in YAML(typ="safe").load_all(
                    Path(bot.repo.working_dir, "cu-reconciler.yaml").read_text()
                )
                if d
            ]
            live = _owned(api)
            inventory = ks["status"]["inventory"]["entries"]
            assert len(inventory) == len(rendered) >= 40
            # Every rendered object is live and was written by Flux's kustomize-controller.
            for doc in rendered:
                meta = doc["metadata"]
                key = (doc["kind"], meta.get("namespace", ""), meta["name"])
                if doc["kind"] == "ValidatingAdmissionPolicyBinding":
                    continue
                if doc["kind"] == "CUEngineStatus":
                    # Applied, and Current by desired-state.yaml's health expression (the
                    # Kustomization waits for it to be Ready).
                    status = rawapi.request(api, "GET", engine_status.path("cu-system"))
                    assert status["report"] == doc["report"]
                    assert status["report"]["revision"] == hashlib.sha1(b"Render 1").hexdigest()
                    continue
                if doc["kind"] == "ConfigMap":  # the plugin's driver name: not a DRA object
                    cm = rawapi.request(
                        api, "GET", f"/api/v1/namespaces/{key[1]}/configmaps/{key[2]}"
                    )
                    assert cm["data"] == doc["data"]
                    managers = {m["manager"] for m in cm["metadata"]["managedFields"]}
                    assert "kustomize-controller" in managers, (key, managers)
                    continue
                assert key in live, key
                managers = {m["manager"] for m in live[key]["metadata"]["managedFields"]}
                assert "kustomize-controller" in managers, (key, managers)

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

            # A claim change converges: the template is re-created (force), not patched.
            key = ("ResourceClaimTemplate", "ads-batch", "ads-backfill")
            old_uid = live[key]["metadata"]["uid"]
            backfill = desired / "claims/ads-embedding/backfill.yaml"
            assert "minMemory: 32Gi" in backfill.read_text()
            backfill.write_text(backfill.read_text().replace("minMemory: 32Gi", "minMemory: 48Gi"))
            second = bot.publish(desired, "Render 2")
            _reconcile_now(api, GITREPO, "2")
            _reconcile_now(api, KS, "2")
            running_flux.wait_for(
                lambda: _ready_at(api, second), 300, "the Kustomization Ready at the claim change"
            )
            now = _owned(api)
            assert now[key]["metadata"]["uid"] != old_uid, "re-created, not patched"
            moved = rawapi.request(api, "GET", engine_status.path("cu-system"))["report"]
            assert moved["revision"] == hashlib.sha1(b"Render 2").hexdigest()
            assert now.keys() == live.keys()

            # An unsigned head is refused; nothing on the cluster changes.
            before = {k: v["metadata"]["resourceVersion"] for k, v in now.items()}
            backfill.write_text(backfill.read_text().replace("minMemory: 48Gi", "minMemory: 64Gi"))
            unsigned = bot.publish(desired, "Render 3, unsigned", sign=False)
            _reconcile_now(api, GITREPO, "3")

            def refused() -> str | None:
                cond = _condition(rawapi.request(api, "GET", GITREPO), "SourceVerified")
                if cond.get("status") == "False" and unsigned[:7] in cond.get("message", ""):
                    return str(cond["message"])
                return None

            running_flux.wait_for(refused, 120, "the GitRepository to refuse the unsigned head")
            _reconcile_now(api, KS, "3")
            ks = running_flux.wait_for(
                lambda: _ready_at(api, second), 60, "still at the signed head"
            )
            after = {k: v["metadata"]["resourceVersion"] for k, v in _owned(api).items()}
            assert after == before, "an unsigned commit changed the cluster"

            # Deleting the Kustomization prunes what it applied (its inventory), nothing else.
            vendor = rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/resourceslices")["items"]
            vendor_names = {
                s["metadata"]["name"]
                for s in vendor
                if (s["metadata"].get("labels") or {}).get(ownership.MANAGED_BY_KEY)
                != ownership.MANAGED_BY_VALUE
            }
            rawapi.delete(api, KS)
            running_flux.wait_for(lambda: _pruned(api), 180, "prune to delete every object")
            left = rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/resourceslices")["items"]
            assert {s["metadata"]["name"] for s in left} >= vendor_names
            rawapi.delete(api, GITREPO)
            for item in rawapi.request(
                api,
                "GET",
                f"/apis/admissionregistration.k8s.io/v1/{kinds.VAP_BINDINGS}",
                query={"labelSelector": f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"},
            )["items"]:
                raise AssertionError(f"binding left after prune: {item['metadata']['name']}")


_FLUX_PATHS = {"./deploy/flux": "install-engine", "./deploy/flux/controller": "install-controller"}
_SUSPEND = "- op: add\n  path: /spec/suspend\n  value: true\n"


def test_a_flux_kustomization_applies_each_shipped_flux_path(
    control_plane: devcluster.ControlPlane, running_flux: flux.Flux, tmp_path: Path
) -> None:
    """The Flux paths of this repository (deploy/flux, deploy/flux/controller) as Flux itself
    builds and applies them, from a Git repository holding this checkout's deploy/: each
    Kustomization is Ready with exactly what ``kustomize build`` lists. The applied Flux objects
    land in a namespace of their own and are suspended (a patch), so they fetch nothing; and
    ``kubectl apply -k`` of each path passes the apiserver's server-side dry run."""
    served = tmp_path / "served"
    origin = served / "cu-reconciler.git"
    git.Repo.init(origin, bare=True, initial_branch="main")
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    shutil.copytree(ROOT / "deploy", Path(work.working_dir) / "deploy")
    work.git.add(A=True)
    work.git.commit("-q", "-m", "deploy/", "--author", "CI <ci@example.invalid>")
    work.git.push(str(origin), "main")
    sha = work.head.commit.hexsha
    base = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations"
    with control_plane.api_client() as api, githttp.GitHTTPServer(served) as server:
        source = {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "cu-install", "namespace": "flux-system"},
            "spec": {
                "interval": "10m",
                "url": server.url("cu-reconciler.git"),
                "ref": {"branch": "main"},
            },
        }
        repo_path = "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories"
        rawapi.apply(api, f"{repo_path}/cu-install", source, field_manager="platform-team")
        for path, ns in _FLUX_PATHS.items():
            identity.ensure_namespace(api, ns)
            ks = {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "metadata": {"name": ns, "namespace": "flux-system"},
                "spec": {
                    "interval": "10m",
                    "sourceRef": {"kind": "GitRepository", "name": "cu-install"},
                    "path": path,
                    "prune": True,
                    "targetNamespace": ns,
                    "patches": [
                        {"patch": _SUSPEND, "target": {"group": g, "kind": k}}
                        for g, k in (
                            ("kustomize.toolkit.fluxcd.io", "Kustomization"),
                            ("source.toolkit.fluxcd.io", "GitRepository"),
                        )
                    ],
                },
            }
            rawapi.apply(api, f"{base}/{ns}", ks, field_manager="platform-team")
        for path, ns in _FLUX_PATHS.items():

            def ready(ns: str = ns) -> dict[str, Any] | None:
                obj = rawapi.request(api, "GET", f"{base}/{ns}")
                ok = _condition(obj, "Ready").get("status") == "True"
                at = (obj.get("status") or {}).get("lastAppliedRevision", "").endswith(sha)
                return dict(obj) if ok and at else None

            ks = running_flux.wait_for(ready, 180, f"the Kustomization on {path} Ready")
            entries = {e["id"] for e in ks["status"]["inventory"]["entries"]}
            built = [d for d in YAML(typ="safe").load_all(_kubectl("kustomize", ROOT / path)) if d]
            assert entries == {
                f"{ns}_{d['metadata']['name']}_{d['apiVersion'].split('/')[0]}_{d['kind']}"
                for d in built
            }, entries
            for d in built:
                group, version = d["apiVersion"].split("/")
                plural = {"GitRepository": "gitrepositories", "Kustomization": "kustomizations"}
                live = rawapi.request(
                    api,
                    "GET",
                    f"/apis/{group}/{version}/namespaces/{ns}/{plural[d['kind']]}/"
                    f"{d['metadata']['name']}",
                )
                assert live["spec"]["suspend"] is True
            rawapi.delete(api, f"{base}/{ns}")
        rawapi.delete(api, f"{repo_path}/cu-install")
        identity.ensure_namespace(api, "cu-system")
        for path in _FLUX_PATHS:
            out = _kubectl(
                "apply", "-k", ROOT / path, "--dry-run=server", kubeconfig=control_plane.kubeconfig
            )
            assert "(server dry run)" in out, out


def _kubectl(*args: str | Path, kubeconfig: Path | None = None) -> str:
    kubectl = devcluster.ensure_built().kubectl
    extra = ["--kubeconfig", str(kubeconfig)] if kubeconfig else []
    proc = subprocess.run(
        [kubectl, *extra, *map(str, args)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TENANT_NS = "fence-tenant-flux"
TENANT = f"system:serviceaccount:{TENANT_NS}:tenant"
TEAM_SA = "team-sync"
NEW_POOL, DEV_HYGON = tenant_loop.NEW_POOL, tenant_loop.DEV_HYGON
TEAM_BASE = f"/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/{TENANT_NS}/kustomizations"
TEAM_SOURCE = f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{TENANT_NS}/gitrepositories"


def _team_rbac(api: ApiClient) -> None:
    """The other team's ServiceAccount, with every right on claims in its namespace."""
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": TEAM_SA, "namespace": TENANT_NS},
    }
    base = f"/api/v1/namespaces/{TENANT_NS}/serviceaccounts/{TEAM_SA}"
    rawapi.apply(api, base, sa, field_manager="team")
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{TENANT_NS}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": TEAM_SA, "namespace": TENANT_NS},
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
        "metadata": {"name": TEAM_SA, "namespace": TENANT_NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TEAM_SA},
        "subjects": [{"kind": "ServiceAccount", "name": TEAM_SA, "namespace": TENANT_NS}],
    }
    rawapi.apply(api, f"{rbac}/roles/{TEAM_SA}", role, field_manager="team")
    rawapi.apply(api, f"{rbac}/rolebindings/{TEAM_SA}", binding, field_manager="team")


def _team_ready(api: ApiClient, sha: str) -> dict[str, Any] | None:
    ks = rawapi.request(api, "GET", f"{TEAM_BASE}/claims")
    ready = _condition(ks, "Ready")
    at = (ks.get("status") or {}).get("lastAppliedRevision", "").endswith(sha)
    return dict(ks) if ready.get("status") == "True" and at else None


def test_flux_pool_removal_opens_no_window_and_another_kustomization_cannot_pass_the_fence(
    control_plane: devcluster.ControlPlane, running_flux: flux.Flux, tmp_path: Path
) -> None:
    """Issue 18 with the real Flux: a tenant creates claims in a tight loop (each one the
    fence must refuse: the removed pool's class before, during and after its prune, the fence
    and wildcard tolerations) while the CU Kustomization prunes a pool; none is admitted.
    Then another team's Kustomization, in its own namespace with its own
    ``serviceAccountName`` (RBAC for claims there), syncs a plain claim but cannot create one
    that tolerates the fence: its apply fails on the fence's denial and nothing is created,
    while the CU Kustomization (serviceAccountName cu-reconciler) applies tolerating claims."""
    with control_plane.api_client() as api:
        devsnapshot.load(api, EXAMPLE / "observed" / "snapshot.yaml")
        for ns in (*NAMESPACES, "cu-system", TENANT_NS):
            identity.ensure_namespace(api, ns)
        identity.install_rbac(api)
        engine_install.install(api)  # the hydration renders --status, as deploy/flux does
        tenant_loop.grant_claims(api, TENANT_NS, TENANT)
        _team_rbac(api)

        desired = tmp_path / "desired"
        shutil.copytree(EXAMPLE, desired)
        dev = desired / "pools" / "dev.yaml"
        dev.write_text(
            dev.read_text().replace(
                "  selector:\n", "  selector:\n    vendors: [nvidia, iluvatar]\n", 1
            )
        )
        (desired / "pools" / f"{NEW_POOL}.yaml").write_text(DEV_HYGON)
        served = tmp_path / "served"
        origin = served / "cu-desired-state.git"
        git.Repo.init(origin, bare=True, initial_branch="main")
        bot = _Hydrator(tmp_path, origin)
        first = bot.publish(desired, "Render with the Hygon pool")
        team_origin = served / "team.git"
        git.Repo.init(team_origin, bare=True, initial_branch="main")
        team = git.Repo.clone_from(str(team_origin), tmp_path / "team")
        team.git.checkout("-b", "main")
        with team.config_writer() as cfg:
            cfg.set_value("user", "name", "Team")
            cfg.set_value("user", "email", "team@example.invalid")

        with contextlib.closing(bot), githttp.GitHTTPServer(served) as server:
            try:
                _install_flux_source(api, bot.public, server)
                running_flux.wait_for(
                    lambda: _ready_at(api, first), 300, "the Kustomization Ready with the pool"
                )
                cu_class = f"/apis/resource.k8s.io/v1/deviceclasses/cu-{NEW_POOL}"
                assert rawapi.request(api, "GET", cu_class)

                attempts = tenant_loop.fence_attempts(
                    TENANT_NS,
                    cu_classes=(f"cu-{NEW_POOL}", "cu-vendor-hygon"),
                    tolerating_classes=("gpu.hygon.example.com",),
                )
                plain = workloads.resource_claim(
                    "plain", "gpu.hygon.example.com", namespace=TENANT_NS
                )
                assert tenant_loop.post_as(api, TENANT, plain, dry_run=True).status == 201
                for _, body in attempts(0):
                    assert tenant_loop.fenced(
                        tenant_loop.post_as(api, TENANT, body, dry_run=True)
                    ), body["metadata"]["name"]

                with control_plane.api_client() as tenant_api:
                    loop = tenant_loop.Loop(tenant_api, TENANT, attempts)
                    with loop.running():
                        time.sleep(1.0)
                        (desired / "pools" / f"{NEW_POOL}.yaml").unlink(missing_ok=True)
                        second = bot.publish(desired, "Render without the Hygon pool")
                        t0, before = time.monotonic(), loop.attempts_made
                        _reconcile_now(api, GITREPO, "pool-removal")
                        _reconcile_now(api, KS, "pool-removal")
                        running_flux.wait_for(
                            lambda: _ready_at(api, second), 300, "Ready without the pool"
                        )
                        running_flux.wait_for(
                            lambda: kube.call(api, "GET", cu_class).status == 404,
                            60,
                            "the pool's class pruned",
                        )
                        took, during = time.monotonic() - t0, loop.attempts_made - before
                        time.sleep(1.0)
                print(
                    f"fence window through Flux's prune of a pool ({took:.1f} s, {during} "
                    f"attempts during it): {loop.summary()}"
                )
                assert loop.unexpected == [], loop.unexpected[:5]
                assert loop.admitted == [], loop.admitted[:5]
                assert loop.forbidden == 0
                assert during >= 3, "the loop ran through the prune"

                # Another team's Kustomization: its own namespace and serviceAccountName.
                Path(team.working_dir, "plain.yaml").write_text(json.dumps(plain))
                team.git.add(A=True)
                team.index.commit("a plain claim")
                team.git.push("origin", "main")
                plain_sha = team.head.commit.hexsha
                source = {
                    "apiVersion": "source.toolkit.fluxcd.io/v1",
                    "kind": "GitRepository",
                    "metadata": {"name": "team", "namespace": TENANT_NS},
                    "spec": {
                        "interval": "10m",
                        "url": server.url("team.git"),
                        "ref": {"branch": "main"},
                    },
                }
                rawapi.apply(api, f"{TEAM_SOURCE}/team", source, field_manager="team")
                ks = {
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                    "kind": "Kustomization",
                    "metadata": {"name": "claims", "namespace": TENANT_NS},
                    "spec": {
                        "interval": "10m",
                        "retryInterval": "5s",
                        "sourceRef": {"kind": "GitRepository", "name": "team"},
                        "path": "./",
                        "prune": True,
                        "targetNamespace": TENANT_NS,
                        "serviceAccountName": TEAM_SA,
                    },
                }
                rawapi.apply(api, f"{TEAM_BASE}/claims", ks, field_manager="team")
                running_flux.wait_for(
                    lambda: _team_ready(api, plain_sha), 180, "the team's plain claim synced"
                )
                claims = f"/apis/resource.k8s.io/v1/namespaces/{TENANT_NS}/resourceclaims"
                assert rawapi.request(api, "GET", f"{claims}/plain")

                sneaky = workloads.resource_claim(
                    "sneaky",
                    "cu-vendor-nvidia",
                    namespace=TENANT_NS,
                    tolerations=[workloads.FENCE_TOLERATION],
                )
                Path(team.working_dir, "sneaky.yaml").write_text(json.dumps(sneaky))
                team.git.add(A=True)
                team.index.commit("a claim that tolerates the fence")
                team.git.push("origin", "main")
                _reconcile_now(api, TEAM_SOURCE + "/team", "sneaky")
                _reconcile_now(api, f"{TEAM_BASE}/claims", "sneaky")

                def refused() -> str | None:
                    cond = _condition(rawapi.request(api, "GET", f"{TEAM_BASE}/claims"), "Ready")
                    message = str(cond.get("message", ""))
                    if cond.get("status") == "False" and "sneaky" in message:
                        return message
                    return None

                message = running_flux.wait_for(refused, 180, "the team's sync to be refused")
                assert fence.POLICY_NAME in message, message
                assert kube.call(api, "GET", f"{claims}/sneaky").status == 404
                # The CU Kustomization, meanwhile, holds its fence-tolerating claims.
                assert _ready_at(api, second)
                ours = _owned(api)
                assert any(
                    kind in ("ResourceClaim", "ResourceClaimTemplate")
                    and tenant_loop.FENCE_KEY in json.dumps(obj["spec"])
                    for (kind, _, _), obj in ours.items()
                ), "the CU Kustomization's claims tolerate the fence"
            finally:
                rawapi.delete(api, f"{TEAM_BASE}/claims")
                rawapi.delete(api, f"{TEAM_SOURCE}/team")
                rawapi.delete(api, KS)
                running_flux.wait_for(lambda: _pruned(api), 180, "prune to delete every object")
                rawapi.delete(api, GITREPO)
                rawapi.delete(api, f"/api/v1/namespaces/{TENANT_NS}")

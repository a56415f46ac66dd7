"""Many clusters with a real Argo CD ApplicationSet controller (v3.3.9, hack/build-argocd.sh).

Two more local control planes stand in for the fleet's clusters dc-east and cloud-west; they
are registered in Argo CD with the fleet label, next to the session's own (unlabelled) cluster.
The shipped AppProject and ApplicationSet (deploy/argocd/fleet) are applied unchanged except
for the repository URL (a bare remote holding this checkout's deploy/, served to Argo CD as a
file:// URL, as in test_argocd_real.py).

Proves: the cluster generator makes exactly one Application per labelled cluster, with the
templated name, project, source (deploy/ through kustomize, the CUSync patched to the
cluster's name) and destination; those Applications sync, so each cluster runs the
controller's objects and one CUSync whose spec.cluster is its own name; a cluster that loses
the label loses its Application and, through the resources finalizer, what it deployed, while
the other cluster is left alone.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import engine_install
import git
import pytest
from kubernetes.client.exceptions import ApiException
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli, devcluster
from reconciler.controller import engine_status
from reconciler.devcluster import argocd, identity, rawapi

pytestmark = pytest.mark.integration

for _name in ("plan",):
    __import__(f"reconciler.cli.{_name}")

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = "https://github.com/cu-reconciler/cu-reconciler.git"
FLEET = {"cu-reconciler.io/fleet": "gpu"}
CLUSTERS = ("dc-east", "cloud-west")
CUSYNC = "/apis/cu-reconciler.io/v1alpha1/cusyncs/default"


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, devcluster.ControlPlane]]:
    """Two more real control planes, the fleet's clusters."""
    bins = devcluster.ensure_built()
    started: dict[str, devcluster.ControlPlane] = {}
    try:
        for name in CLUSTERS:
            started[name] = devcluster.start(tmp_path_factory.mktemp(name), binaries=bins)
        yield started
    finally:
        for cp in started.values():
            cp.stop()


@pytest.fixture(scope="module")
def appset(
    control_plane: devcluster.ControlPlane, argo: argocd.ArgoCD, argo_bin_dir: Path
) -> argocd.ArgoCD:
    """The running Argo CD with its ApplicationSet controller started too."""
    argocd.start_applicationset_controller(argo, control_plane, argo_bin_dir)
    return argo


@pytest.fixture(scope="module")
def deploy_remote(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A bare remote whose main branch holds this checkout's deploy/ directory."""
    tmp = tmp_path_factory.mktemp("deploy-remote")
    origin = tmp / "cu-reconciler.git"
    git.Repo.init(origin, bare=True, initial_branch="main")
    work = git.Repo.clone_from(str(origin), tmp / "work")
    shutil.copytree(ROOT / "deploy", Path(work.working_dir, "deploy"))
    with work.config_writer() as cfg:
        cfg.set_value("user", "name", "Platform")
        cfg.set_value("user", "email", "platform@example.invalid")
    work.git.checkout("-b", "main")
    work.git.add(A=True)
    work.index.commit("deploy")
    work.remote("origin").push("main")
    return f"file://{origin}"


def _fleet_apps(api: Any) -> dict[str, dict[str, Any]]:
    items = rawapi.request(
        api, "GET", argocd.APPS, query={"labelSelector": "cu-reconciler.io/cluster"}
    )["items"]
    return {a["metadata"]["name"]: a for a in items}


def _get(api: Any, path: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = rawapi.request(api, "GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def _synced(app: dict[str, Any]) -> bool:
    status = app.get("status") or {}
    return bool(
        (status.get("sync") or {}).get("status") == "Synced"
        and (status.get("operationState") or {}).get("phase") == "Succeeded"
    )


def test_applicationset_makes_and_syncs_one_application_per_fleet_cluster(
    control_plane: devcluster.ControlPlane,
    appset: argocd.ArgoCD,
    fleet: dict[str, devcluster.ControlPlane],
    deploy_remote: str,
) -> None:
    with control_plane.api_client() as api:
        for name, cp in fleet.items():
            argocd.register_cluster(api, name, cp, FLEET)
        text = (ROOT / "deploy/argocd/fleet/applicationset.yaml").read_text()
        assert text.count(UPSTREAM) == 2, "the AppProject's and the template's repository"
        for doc in YAML(typ="safe").load_all(text.replace(UPSTREAM, deploy_remote)):
            argocd.apply_manifest(api, doc)

        # Generation: one Application per labelled cluster, none for the session's own.
        expected = {f"cu-reconciler-{name}": name for name in CLUSTERS}
        apps = appset.wait_for(
            lambda: (found := _fleet_apps(api)).keys() == expected.keys() and found,
            120,
            "the ApplicationSet to generate one Application per fleet cluster",
        )
        for app_name, cluster in expected.items():
            app = apps[app_name]
            owners = app["metadata"].get("ownerReferences") or []
            assert [(o["kind"], o["name"]) for o in owners] == [("ApplicationSet", "cu-reconciler")]
            assert app["metadata"]["labels"]["cu-reconciler.io/cluster"] == cluster
            spec = app["spec"]
            assert spec["project"] == "cu-fleet"
            assert spec["destination"] == {
                "server": fleet[cluster].server,
                "namespace": "cu-system",
            }
            source = spec["source"]
            assert (source["repoURL"], source["path"], source["targetRevision"]) == (
                deploy_remote,
                "deploy",
                "main",
            )
            patches = {p["target"]["kind"]: p for p in source["kustomize"]["patches"]}
            assert set(patches) == {"CUSync", "Deployment"}
            assert patches["CUSync"]["target"]["name"] == "default"
            ops = YAML(typ="safe").load(patches["CUSync"]["patch"])
            assert ops == [{"op": "add", "path": "/spec/cluster", "value": cluster}]
            # The same name is the `cluster` label of every metric the controller exports.
            ops = YAML(typ="safe").load(patches["Deployment"]["patch"])
            assert ops == [
                {
                    "op": "add",
                    "path": "/spec/template/spec/containers/0/args/-",
                    "value": f"--cluster={cluster}",
                }
            ]
            assert "resources-finalizer.argocd.argoproj.io" in app["metadata"]["finalizers"]
        appsets = rawapi.request(api, "GET", f"{argocd.APPSETS}/cu-reconciler")
        conditions = {c["type"]: c["status"] for c in appsets["status"]["conditions"]}
        assert conditions.get("ErrorOccurred") == "False", appsets["status"]

        # Sync: each cluster runs the controller's objects and its own CUSync.
        for app_name in expected:
            argocd.refresh(api, app_name)
        try:
            appset.wait_for(
                lambda: all(_synced(a) for a in _fleet_apps(api).values()),
                300,
                "both fleet Applications to be Synced",
            )
        except AssertionError as exc:
            states = {n: (a.get("status") or {}) for n, a in _fleet_apps(api).items()}
            raise AssertionError(f"{states}\n{exc}") from None
        for cluster, cp in fleet.items():
            with cp.api_client() as remote:
                cusync = _get(remote, CUSYNC)
                assert cusync is not None, f"no CUSync in {cluster}"
                assert cusync["spec"]["cluster"] == cluster
                assert _get(remote, "/apis/apps/v1/namespaces/cu-system/deployments/cu-reconciler")
                assert _get(
                    remote,
                    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/"
                    "cu-reconciler-fence-bootstrap",
                )
        # The session's cluster (unlabelled) got nothing.
        assert _get(api, CUSYNC) is None

        # cloud-west leaves the fleet: its Application goes, and with it what it deployed.
        argocd.register_cluster(api, "cloud-west", fleet["cloud-west"], {})
        appset.wait_for(
            lambda: set(_fleet_apps(api)) == {"cu-reconciler-dc-east"},
            120,
            "the Application of the unlabelled cluster to be deleted",
        )
        with fleet["cloud-west"].api_client() as remote:
            appset.wait_for(
                lambda: _get(remote, CUSYNC) is None, 120, "cloud-west's CUSync to be deleted"
            )
        with fleet["dc-east"].api_client() as remote:
            assert (_get(remote, CUSYNC) or {}).get("spec", {}).get("cluster") == "dc-east"

        # Leave the session's Argo CD without fleet objects (the clusters stop with the module).
        rawapi.delete(api, f"{argocd.APPSETS}/cu-reconciler")
        appset.wait_for(lambda: not _fleet_apps(api), 120, "the fleet Applications to be deleted")
        for name in CLUSTERS:
            rawapi.delete(api, f"{argocd.SECRETS}/cluster-{name}")
        rawapi.delete(api, f"{argocd.PROJECTS}/cu-fleet")


ENGINE_UPSTREAM = "https://git.example.com/platform/cu-fleet.git"
FLEET_EXAMPLE = ROOT / "examples" / "fleet"
ARGO_IDENTITY = "cu-reconciler-admin"
"""The username of the client certificate register_cluster gives Argo CD for each cluster."""


@pytest.fixture(scope="module")
def fleet_remote(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A bare remote holding examples/fleet, each cluster admitting Argo CD's sync identity
    (the fleet AppProject has no sync impersonation: Argo CD syncs as the cluster Secret's)."""
    tmp = tmp_path_factory.mktemp("fleet-remote")
    origin = tmp / "cu-fleet.git"
    git.Repo.init(origin, bare=True, initial_branch="main")
    work = git.Repo.clone_from(str(origin), tmp / "work")
    shutil.copytree(FLEET_EXAMPLE, work.working_dir, dirs_exist_ok=True)
    for name in CLUSTERS:
        settings = Path(work.working_dir, "clusters", name, "cluster.yaml")
        text = settings.read_text()
        anchor = "  reconcilerNamespace: cu-system\n"
        assert anchor in text
        settings.write_text(
            text.replace(anchor, f"{anchor}  admittedIdentities:\n    - {ARGO_IDENTITY}\n")
        )
    with work.config_writer() as cfg:
        cfg.set_value("user", "name", "Platform")
        cfg.set_value("user", "email", "platform@example.invalid")
    work.git.checkout("-b", "main")
    work.git.add(A=True)
    work.index.commit("fleet")
    work.remote("origin").push("main")
    return f"file://{origin}", str(work.working_dir)


def _engine_apps(api: Any) -> dict[str, dict[str, Any]]:
    return {n: a for n, a in _fleet_apps(api).items() if n.startswith("cu-desired-state-")}


def _synced_healthy(app: dict[str, Any], revision: str) -> bool:
    status = app.get("status") or {}
    return bool(
        _synced(app)
        and (status.get("sync") or {}).get("revision") == revision
        and (status.get("health") or {}).get("status") == "Healthy"
    )


def _render(work: str, cluster: str, sha: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        cli.app, ["render", work, "--cluster", cluster, "--status", "--source-revision", sha]
    )
    assert result.exit_code == 0, result.output
    return [d for d in YAML(typ="safe").load_all(result.stdout) if d]


def test_engine_applicationset_renders_and_syncs_each_fleet_cluster(
    control_plane: devcluster.ControlPlane,
    appset: argocd.ArgoCD,
    fleet: dict[str, devcluster.ControlPlane],
    fleet_remote: tuple[str, str],
) -> None:
    """Mode 2 fleet (deploy/argocd/fleet/engine-applicationset.yaml, shipped unchanged but for
    the repository URL): one Application per labelled cluster, each rendering its own cluster
    through the plugin (CU_CLUSTER), both Synced and Healthy, each cluster holding exactly its
    own render, with its engine status (deploy/engine installed per cluster) at the commit."""
    url, work = fleet_remote
    sha = git.Repo(work).head.commit.hexsha
    expected: dict[str, list[dict[str, Any]]] = {}
    for name, cp in fleet.items():
        expected[name] = _render(work, name, sha)
        with cp.api_client() as remote:
            engine_install.install(remote)
            for ns in {d["metadata"].get("namespace") for d in expected[name]} - {None, ""}:
                identity.ensure_namespace(remote, ns)
    claims = {
        name: {
            (d["metadata"]["namespace"], d["metadata"]["name"])
            for d in docs
            if d["kind"] == "ResourceClaim"
        }
        for name, docs in expected.items()
    }
    assert claims["dc-east"] != claims["cloud-west"], "the clusters' renders differ"

    with control_plane.api_client() as api:
        for name, cp in fleet.items():
            argocd.register_cluster(api, name, cp, FLEET)
        text = (ROOT / "deploy/argocd/fleet/engine-applicationset.yaml").read_text()
        assert text.count(ENGINE_UPSTREAM) == 2, "the AppProject's and the template's repository"
        for doc in YAML(typ="safe").load_all(text.replace(ENGINE_UPSTREAM, url)):
            argocd.apply_manifest(api, doc)
        names = {f"cu-desired-state-{name}": name for name in CLUSTERS}
        apps = appset.wait_for(
            lambda: (found := _engine_apps(api)).keys() == names.keys() and found,
            120,
            "the engine ApplicationSet to generate one Application per fleet cluster",
        )
        for app_name, cluster in names.items():
            app = apps[app_name]
            owners = app["metadata"].get("ownerReferences") or []
            assert [(o["kind"], o["name"]) for o in owners] == [
                ("ApplicationSet", "cu-desired-state")
            ]
            assert (
                app["metadata"]["annotations"]["argocd.argoproj.io/compare-options"]
                == "ServerSideDiff=false"
            )
            assert not app["metadata"].get("finalizers"), "a cluster leaving keeps its objects"
            spec = app["spec"]
            assert spec["project"] == "cu-desired-state-fleet"
            assert spec["destination"] == {"server": fleet[cluster].server}
            plugin = spec["source"]["plugin"]
            assert plugin["name"] == "cu-reconciler-v1"
            assert plugin["env"] == [{"name": "CU_CLUSTER", "value": cluster}]

        for app_name in names:
            argocd.refresh(api, app_name)
        try:
            appset.wait_for(
                lambda: (
                    all(_synced_healthy(a, sha) for a in _engine_apps(api).values())
                    and len(_engine_apps(api)) == 2
                ),
                420,
                "both engine fleet Applications to be Synced and Healthy",
            )
        except AssertionError as exc:
            states = {n: (a.get("status") or {}) for n, a in _engine_apps(api).items()}
            raise AssertionError(f"{states}\n{exc}") from None

        for cluster, cp in fleet.items():
            with cp.api_client() as remote:
                live = {
                    (i["metadata"]["namespace"], i["metadata"]["name"])
                    for i in rawapi.request(
                        remote, "GET", "/apis/resource.k8s.io/v1/resourceclaims"
                    )["items"]
                }
                assert claims[cluster] <= live, cluster
                others = claims[next(c for c in CLUSTERS if c != cluster)] - claims[cluster]
                assert not (others & live), f"{cluster} got another cluster's claims"
                status = rawapi.request(remote, "GET", engine_status.path("cu-system"))
                [rendered] = [d for d in expected[cluster] if d["kind"] == "CUEngineStatus"]
                assert status["report"] == rendered["report"], cluster
                assert status["report"]["revision"] == sha

        # cloud-west leaves the fleet: its Application goes, its DRA objects stay (no
        # resources finalizer: preserveResourcesOnDeletion in the shipped ApplicationSet).
        argocd.register_cluster(api, "cloud-west", fleet["cloud-west"], {})
        appset.wait_for(
            lambda: set(_engine_apps(api)) == {"cu-desired-state-dc-east"},
            120,
            "the Application of the unlabelled cluster to be deleted",
        )
        time.sleep(10)  # a resources finalizer would be pruning by now
        with fleet["cloud-west"].api_client() as remote:
            assert _get(remote, engine_status.path("cu-system")), "the cluster kept its objects"
            kept = {
                (i["metadata"]["namespace"], i["metadata"]["name"])
                for i in rawapi.request(remote, "GET", "/apis/resource.k8s.io/v1/resourceclaims")[
                    "items"
                ]
            }
            assert claims["cloud-west"] <= kept

        # Leave the session's Argo CD without fleet objects (the clusters stop with the module).
        rawapi.delete(api, f"{argocd.APPSETS}/cu-desired-state")
        appset.wait_for(lambda: not _engine_apps(api), 120, "the fleet Applications to go")
        with fleet["dc-east"].api_client() as remote:
            assert _get(remote, engine_status.path("cu-system")), "no finalizer: objects stay"
        for name in CLUSTERS:
            rawapi.delete(api, f"{argocd.SECRETS}/cluster-{name}")
        rawapi.delete(api, f"{argocd.PROJECTS}/cu-desired-state-fleet")

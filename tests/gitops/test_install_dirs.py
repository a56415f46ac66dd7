"""Every shipped install directory builds as docs/gitops.md says, with the pinned kustomize.

The kustomize is the one hack/build-argocd.sh builds next to Argo CD (v5.8.1, the version
Argo CD v3.3.9's repo-server runs; hack/versions.env), so these builds are the ones an
Argo CD Kustomize source or a user's ``kustomize build`` performs. ``CU_KUSTOMIZE`` may name
another binary of that version (a quicker check while the cache is cold).

Proves: each directory with a kustomization.yaml under deploy/ builds alone, except the
Components meant for an install kustomization, which build there (a stand-in for Argo CD's
install.yaml: a namespace-less argocd-cm with a key of its own and the argocd-repo-server
Deployment); no kustomization.yaml holds anything but kustomize's own configuration (a Flux
Kustomization named so broke ``./deploy/flux``); the builds contain what the docs promise.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from ruamel.yaml import YAML

from reconciler import devcluster
from reconciler.devcluster import argocd, identity, rawapi

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE_KINDS = {
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    ("kustomize.config.k8s.io/v1alpha1", "Component"),
}
COMPONENTS = {"argocd/resource_customizations", "argocd/impersonation"}
"""Components that merge into what an install kustomization brings; not built alone."""


@pytest.fixture(scope="module")
def kustomize() -> Path:
    override = os.environ.get("CU_KUSTOMIZE")
    binary = Path(override) if override else argocd.build() / "kustomize"
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True)
    pinned = (ROOT / "hack" / "versions.env").read_text()
    assert f"KUSTOMIZE_VERSION={version.stdout.strip().lstrip('v')}" in pinned, version.stdout
    return binary


def _dirs() -> list[Path]:
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def _build(kustomize: Path, directory: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [kustomize, "build", directory], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"kustomize build {directory.relative_to(ROOT)}: {proc.stderr}"
    return [d for d in YAML(typ="safe").load_all(proc.stdout) if d]


def _by_id(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_kustomization_file_is_kustomize_configuration() -> None:
    found = _dirs()
    assert len(found) >= 9, found
    for directory in found:
        (doc,) = YAML(typ="safe").load_all((directory / "kustomization.yaml").read_text())
        assert (doc.get("apiVersion"), doc.get("kind")) in KUSTOMIZE_KINDS, directory


@pytest.mark.parametrize(
    "directory",
    [
        pytest.param(d, id=str(d.relative_to(DEPLOY)))
        for d in _dirs()
        if str(d.relative_to(DEPLOY)) not in COMPONENTS
    ],
)
def test_each_directory_builds_alone(kustomize: Path, directory: Path) -> None:
    docs = _build(kustomize, directory)
    assert docs, f"{directory} builds nothing"
    assert all(d.get("apiVersion") and d.get("kind") and d["metadata"].get("name") for d in docs)


def test_the_builds_hold_what_the_docs_promise(kustomize: Path) -> None:
    health = _by_id(_build(kustomize, DEPLOY / "argocd" / "health"))
    cm = health[("ConfigMap", "argocd-cm")]
    assert cm["metadata"]["namespace"] == "argocd"
    assert cm["metadata"]["labels"]["app.kubernetes.io/part-of"] == "argocd"
    assert set(cm["data"]) == set(argocd.health_customizations())
    assert cm["data"] == argocd.health_customizations(), "the very Lua files Argo CD is tested with"
    cmp = _by_id(_build(kustomize, DEPLOY / "argocd" / "cmp"))
    plugin = cmp[("ConfigMap", "cu-reconciler-plugin")]
    assert plugin["data"]["plugin.yaml"] == (DEPLOY / "argocd" / "cmp" / "plugin.yaml").read_text()
    engine = _by_id(_build(kustomize, DEPLOY / "flux"))
    assert set(engine) == {
        ("GitRepository", "cu-desired-state"),
        ("Kustomization", "cu-desired-state"),
    }
    engine_mode = _by_id(_build(kustomize, DEPLOY / "engine"))
    assert {
        ("CustomResourceDefinition", "cuenginestatuses.cu-reconciler.io"),
        ("Role", "cu-engine-status-writer"),
        ("Role", "cu-engine-exporter"),
        ("Deployment", "cu-engine-exporter"),
        ("Service", "cu-engine-exporter"),
    } <= set(engine_mode)
    exporter = engine_mode[("Deployment", "cu-engine-exporter")]["spec"]["template"]["spec"]
    assert exporter["containers"][0]["args"][0] == "export"
    controller = _by_id(_build(kustomize, DEPLOY / "flux" / "controller"))
    assert set(controller) == {
        ("GitRepository", "cu-reconciler"),
        ("Kustomization", "cu-reconciler"),
    }


_INSTALL = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
data:
  url: https://argocd.example
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: argocd-repo-server
spec:
  selector: {matchLabels: {app.kubernetes.io/name: argocd-repo-server}}
  template:
    metadata: {labels: {app.kubernetes.io/name: argocd-repo-server}}
    spec:
      containers:
        - name: argocd-repo-server
          image: quay.io/argoproj/argocd:v3.3.9
"""


def test_the_components_merge_into_an_argo_cd_install(kustomize: Path, tmp_path: Path) -> None:
    (tmp_path / "install.yaml").write_text(_INSTALL)
    rel = os.path.relpath(DEPLOY / "argocd", tmp_path)  # kustomize refuses absolute roots
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: argocd\n"
        "resources: [install.yaml]\n"
        f"components: [{rel}/cmp, {rel}/resource_customizations, {rel}/impersonation]\n"
    )
    built = _by_id(_build(kustomize, tmp_path))
    cm = built[("ConfigMap", "argocd-cm")]
    assert cm["data"] == {
        "url": "https://argocd.example",
        **argocd.health_customizations(),
        argocd.IMPERSONATION_KEY: "true",
    }
    repo = built[("Deployment", "argocd-repo-server")]
    containers = {c["name"]: c for c in repo["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"argocd-repo-server", "cu-reconciler"}
    assert containers["cu-reconciler"]["command"] == ["/var/run/argocd/argocd-cmp-server"]
    volumes = {v["name"]: v for v in repo["spec"]["template"]["spec"]["volumes"]}
    plugin = built[("ConfigMap", "cu-reconciler-plugin")]
    assert plugin["metadata"]["namespace"] == "argocd"
    assert any(
        v.get("configMap", {}).get("name") == "cu-reconciler-plugin" for v in volumes.values()
    )


@pytest.mark.integration
def test_the_health_checks_apply_server_side_into_a_live_argocd_cm(
    control_plane: devcluster.ControlPlane,
) -> None:
    """The docs' command for a running Argo CD, ``kustomize build deploy/argocd/health |
    kubectl apply --server-side -f -`` (here ``kubectl apply -k``, kubectl's own kustomize):
    the two checks land in the live argocd-cm, whose other keys (Argo CD's and the operator's)
    stay; the plugin ConfigMap applies too."""
    kubectl = devcluster.ensure_built().kubectl
    with control_plane.api_client() as api:
        identity.ensure_namespace(api, "argocd")
        path = "/api/v1/namespaces/argocd/configmaps/argocd-cm"
        try:  # an Argo CD test earlier in the session leaves its own argocd-cm
            before = dict(rawapi.request(api, "GET", path).get("data") or {})
        except ApiException as exc:
            assert exc.status == 404
            before = {}
        data = {"url": "https://argocd.example", "admin.enabled": "false"}
        live = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": "argocd", "labels": argocd.PART_OF},
            "data": data,
        }
        rawapi.apply(
            api, "/api/v1/namespaces/argocd/configmaps/argocd-cm", live, field_manager="helm"
        )
        for directory, extra in (
            (DEPLOY / "argocd" / "health", ["--server-side"]),
            (DEPLOY / "argocd" / "cmp", []),
        ):
            proc = subprocess.run(
                [
                    kubectl,
                    "--kubeconfig",
                    control_plane.kubeconfig,
                    "apply",
                    "-k",
                    directory,
                    *extra,
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
        cm = rawapi.request(api, "GET", path)
        assert cm["data"] == {**before, **data, **argocd.health_customizations()}
        plugin = rawapi.request(
            api, "GET", "/api/v1/namespaces/argocd/configmaps/cu-reconciler-plugin"
        )
        assert (
            plugin["data"]["plugin.yaml"] == (DEPLOY / "argocd" / "cmp" / "plugin.yaml").read_text()
        )
        rawapi.delete(api, "/api/v1/namespaces/argocd/configmaps/cu-reconciler-plugin")
        if not before:
            rawapi.delete(api, path)

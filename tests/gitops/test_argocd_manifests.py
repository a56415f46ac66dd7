"""The shipped Argo CD manifests match Argo CD's own CRD schemas (from the pinned module).

hack/build-argocd.sh (run by hack/test.sh before the tests) downloads the pinned argo-cd module;
its manifests/crds hold the OpenAPI schemas the apiserver would enforce. Every Application,
AppProject and ApplicationSet under deploy/argocd validates against them, and a broken copy
does not. (The real Argo CD test also applies the mode-2 pair to a live apiserver.)
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from reconciler import devcluster
from reconciler.devcluster import argocd

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
CRDS = {
    "Application": "application-crd.yaml",
    "AppProject": "appproject-crd.yaml",
    "ApplicationSet": "applicationset-crd.yaml",
}


def _schema(kind: str) -> dict[str, Any]:
    crd = YAML(typ="safe").load((argocd.crd_dir() / CRDS[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _documents() -> list[Any]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in YAML(typ="safe").load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in CRDS:
                out.append(pytest.param(doc, id=f"{path.relative_to(DEPLOY)}:{doc['kind']}"))
    return out


@pytest.mark.parametrize("doc", _documents())
def test_manifest_matches_the_crd_schema(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, _schema(doc["kind"]))


def test_the_schema_check_can_fail() -> None:
    app = next(d.values[0] for d in _documents() if d.values[0]["kind"] == "Application")
    broken = copy.deepcopy(app)
    broken["spec"]["syncPolicy"]["automated"]["prune"] = "yes please"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema("Application"))


def test_every_kind_is_shipped() -> None:
    assert {d.values[0]["kind"] for d in _documents()} == set(CRDS)


# --- What the Kustomize Applications deploy is what their AppProject admits -----------------

ROOT = DEPLOY.parents[1]
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "CUSync",
    "ResourceSlice",
    "DeviceClass",
    "DeviceTaintRule",
}


def _docs(rel: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all((DEPLOY / rel).read_text()) if d]


def _build(source: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    """Build a Kustomize source as Argo CD does: its path plus the Application's patches."""
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # kustomize takes a base only by a relative path
        "resources": [os.path.relpath(ROOT / source["path"], tmp)],
        "patches": (source.get("kustomize") or {}).get("patches", []),
    }
    (tmp / "kustomization.yaml").write_text(json.dumps(kustomization))
    kubectl = devcluster.ensure_built().kubectl
    out = subprocess.run(
        [str(kubectl), "kustomize", str(tmp)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in YAML(typ="safe").load_all(out) if d]


def _refusals(project: dict[str, Any], objs: list[dict[str, Any]], default_ns: str) -> list[str]:
    """Objects the AppProject would refuse to sync: kind not whitelisted, namespace not a
    destination (Argo CD checks both before it applies anything)."""
    spec = project["spec"]
    namespaces = {d["namespace"] for d in spec["destinations"]}
    out = []
    for obj in objs:
        group = obj["apiVersion"].rpartition("/")[0]
        kind = obj["kind"]
        scoped = kind in CLUSTER_SCOPED
        allowed = spec["clusterResourceWhitelist" if scoped else "namespaceResourceWhitelist"]
        name = f"{kind}/{obj['metadata']['name']}"
        if not any(a["group"] in (group, "*") and a["kind"] in (kind, "*") for a in allowed):
            out.append(f"{name}: kind not whitelisted")
        ns = obj["metadata"].get("namespace") or default_ns
        if not scoped and ns not in namespaces and "*" not in namespaces:
            out.append(f"{name}: namespace {ns} is not a destination")
    return out


def _controller_name(objs: list[dict[str, Any]]) -> str:
    dep = next(d for d in objs if d["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    return next(a.split("=", 1)[1] for a in args if a.startswith("--name="))


def test_mode1_deploys_what_its_project_admits_and_one_cusync_the_controller_writes(
    tmp_path: Path,
) -> None:
    docs = _docs("mode1/application.yaml")
    project = next(d for d in docs if d["kind"] == "AppProject")
    app = next(
        d for d in docs if d["kind"] == "Application" and d["metadata"]["name"] == "cu-reconciler"
    )
    assert "directory" not in app["spec"]["source"], "a directory source applies every file"
    objs = _build(app["spec"]["source"], tmp_path)
    assert {"Deployment", "ValidatingAdmissionPolicy", "CustomResourceDefinition"} <= {
        o["kind"] for o in objs
    }
    assert _refusals(project, objs, app["spec"]["destination"]["namespace"]) == []
    assert [o for o in objs if o["kind"] == "CUSync"] == [], "cu-sync owns the CUSync"
    (cusync,) = _docs("mode1/cusync/cusync.yaml")
    assert cusync["metadata"]["name"] == _controller_name(objs)
    # The check can fail: without the patch deploy/ ships its own CUSync too, and the events
    # Role in `default` is refused by a project that names only cu-system.
    plain = _build({"path": app["spec"]["source"]["path"]}, tmp_path)
    assert [o["kind"] for o in plain].count("CUSync") == 1
    narrow = json.loads(json.dumps(project))
    narrow["spec"]["destinations"] = narrow["spec"]["destinations"][:1]
    assert any("namespace default" in r for r in _refusals(narrow, plain, "cu-system"))


def test_the_fleet_template_deploys_what_its_project_admits(tmp_path: Path) -> None:
    docs = _docs("fleet/applicationset.yaml")
    project = next(d for d in docs if d["kind"] == "AppProject")
    template = next(d for d in docs if d["kind"] == "ApplicationSet")["spec"]["template"]
    source = json.loads(json.dumps(template["spec"]["source"]).replace("{{.name}}", "dc-east"))
    objs = _build(source, tmp_path)
    assert _refusals(project, objs, template["spec"]["destination"]["namespace"]) == []
    (cusync,) = [o for o in objs if o["kind"] == "CUSync"]
    assert cusync["metadata"]["name"] == _controller_name(objs)
    assert cusync["spec"]["cluster"] == "dc-east"
    dep = next(o for o in objs if o["kind"] == "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--cluster=dc-east" in args, "the same overlay, and the metrics' cluster label"


def test_the_engine_fleet_template_renders_each_cluster_into_what_its_project_admits() -> None:
    """Mode 2 for a fleet: per cluster, the plugin with CU_CLUSTER=<name>; what `cuctl render
    --cluster` gives for each cluster of examples/fleet is admitted by the project, and the
    sync options are those of the single-cluster Application."""
    docs = _docs("fleet/engine-applicationset.yaml")
    project = next(d for d in docs if d["kind"] == "AppProject")
    appset = next(d for d in docs if d["kind"] == "ApplicationSet")
    (single,) = [d for d in _docs("mode2/application.yaml") if d["kind"] == "Application"]
    (plugin,) = YAML(typ="safe").load_all((DEPLOY / "cmp" / "plugin.yaml").read_text())
    assert appset["spec"]["generators"][0]["clusters"]["selector"]["matchLabels"] == {
        "cu-reconciler.io/fleet": "gpu"
    }
    for cluster in ("dc-east", "cloud-west"):
        spec = json.loads(
            json.dumps(appset["spec"]["template"]["spec"])
            .replace("{{.name}}", cluster)
            .replace("{{.server}}", f"https://{cluster}.example")
        )
        source = spec["source"]
        assert (
            source["plugin"]["name"] == f"{plugin['metadata']['name']}-{plugin['spec']['version']}"
        )
        assert source["plugin"]["env"] == [{"name": "CU_CLUSTER", "value": cluster}]
        assert "CU_CLUSTER" in {p["name"] for p in plugin["spec"]["parameters"]["static"]}
        assert spec["destination"] == {"server": f"https://{cluster}.example"}
        assert spec["syncPolicy"] == single["spec"]["syncPolicy"]
        assert spec["ignoreDifferences"] == single["spec"]["ignoreDifferences"]
        assert spec["project"] == project["metadata"]["name"]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler.cli",
                "render",
                str(ROOT / "examples" / "fleet"),
                "--cluster",
                cluster,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        objs = [d for d in YAML(typ="safe").load_all(proc.stdout) if d]
        assert len(objs) > 10
        assert _refusals(project, objs, "default") == [], cluster
    assert "finalizers" not in appset["spec"]["template"]["metadata"], (
        "never prune a fleet by leaving"
    )

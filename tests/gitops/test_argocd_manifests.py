"""The shipped Argo CD manifests match Argo CD's own CRD schemas (from the pinned module).

hack/build-argocd.sh (run by hack/test.sh before the tests) downloads the pinned argo-cd module;
its manifests/crds hold the OpenAPI schemas the apiserver would enforce. Every Application,
AppProject and ApplicationSet under deploy/argocd validates against them, and a broken copy
does not. (The real Argo CD test also applies the mode-2 pair to a live apiserver.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

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

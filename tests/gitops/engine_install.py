"""Install deploy/engine's CRD and RBAC on a real apiserver, as `kubectl apply -k` would."""

from __future__ import annotations

import functools
from pathlib import Path

from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler.devcluster import identity, rawapi, supervised, workloads

ENGINE = Path(__file__).resolve().parents[2] / "deploy" / "engine"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def install(api: ApiClient) -> tuple[str, str]:
    """The CUEngineStatus CRD (established) and the RBAC; returns the exporter's account."""
    identity.ensure_namespace(api, "cu-system")  # deploy/namespace.yaml, applied first
    crd = YAML(typ="safe").load((ENGINE / "crd.yaml").read_text())
    name = crd["metadata"]["name"]
    rawapi.apply(api, f"{CRDS}/{name}", crd, field_manager="platform-team")
    workloads.wait_for(
        functools.partial(supervised.crd_established, api, name),
        timeout=60,
        what=f"CRD {name} to be established",
    )
    return identity.install_rbac(api, ENGINE / "rbac.yaml")

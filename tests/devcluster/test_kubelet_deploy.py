"""deploy/kubeletplugin is accepted by the real apiserver and grants exactly what the plugin uses.

``kubectl kustomize`` renders the directory; every object passes a server-side dry run and
is then applied; SubjectAccessReviews for the plugin's ServiceAccount show it may read
claims and slices and renew its Lease in its own namespace, and may not write slices,
claims, or Leases elsewhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler import devcluster
from reconciler.devcluster import identity, kubelets, rawapi

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubeletplugin"
SA = "system:serviceaccount:cu-system:cu-kubelet-plugin"
PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "DaemonSet": "daemonsets",
}


def _path(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    ns = obj["metadata"].get("namespace")
    ns_part = f"/namespaces/{ns}" if ns else ""
    return f"{base}{ns_part}/{PLURALS[obj['kind']]}/{obj['metadata']['name']}"


def _allowed(api: ApiClient, verb: str, resource: str, group: str, namespace: str = "") -> bool:
    attrs = {"verb": verb, "resource": resource, "group": group}
    if namespace:
        attrs["namespace"] = namespace
    return identity.allowed(api, SA, attrs)


def test_kustomization_applies_and_rbac_is_least_privilege(
    control_plane: devcluster.ControlPlane, api: ApiClient
) -> None:
    bins = devcluster.ensure_built(quiet=True)
    rendered = subprocess.run(
        [str(bins.kubectl), "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    objects = [o for o in YAML(typ="safe").load_all(rendered) if o]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(PLURALS), kinds
    [ds] = [o for o in objects if o["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["tolerations"] and spec["affinity"]["nodeAffinity"]
    assert ds["metadata"]["namespace"] == "cu-system"
    kubelets.ensure_namespace(api, "cu-system")
    for obj in objects:
        query = {"fieldManager": "cu-reconciler-test", "force": "true"}
        rawapi.request(
            api,
            "PATCH",
            _path(obj),
            body=obj,
            query={**query, "dryRun": "All"},
            content_type=rawapi.APPLY_PATCH,
        )
    for obj in objects:
        if obj["kind"] != "DaemonSet":
            rawapi.apply(api, _path(obj), obj, field_manager="cu-reconciler-test")
    identity.await_bindings(api, objects)

    assert _allowed(api, "list", "resourceslices", "resource.k8s.io")
    assert _allowed(api, "get", "resourceclaims", "resource.k8s.io", "any-tenant")
    assert _allowed(api, "update", "leases", "coordination.k8s.io", "cu-system")
    assert not _allowed(api, "create", "resourceslices", "resource.k8s.io")
    assert not _allowed(api, "update", "resourceclaims", "resource.k8s.io", "any-tenant")
    assert not _allowed(api, "create", "leases", "coordination.k8s.io", "kube-node-lease")

"""Run as the reconciler's own identity: its ServiceAccount, RBAC and a kubeconfig for it.

The fence's admission policy exempts exactly the reconciler's ServiceAccount, so the demo and
the integration tests converge as that identity (with the least-privilege RBAC shipped in
``deploy/rbac.yaml``), never as the all-powerful admin: what works here works in a cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler.devcluster import rawapi

RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
FIELD_MANAGER = "platform-team"
_COLLECTIONS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


def ensure_namespace(api: ApiClient, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    rawapi.apply(api, f"/api/v1/namespaces/{name}", body, field_manager=FIELD_MANAGER)


def install_rbac(api: ApiClient, rbac: Path = RBAC) -> tuple[str, str]:
    """Apply every document of ``rbac``; return the ServiceAccount's (namespace, name)."""
    account: tuple[str, str] | None = None
    docs = [d for d in YAML(typ="safe").load_all(rbac.read_text(encoding="utf-8")) if d]
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "ServiceAccount":
            account = (meta["namespace"], meta["name"])
            ensure_namespace(api, meta["namespace"])
        collection = _COLLECTIONS[doc["kind"]].format(ns=meta.get("namespace", ""))
        rawapi.apply(api, f"{collection}/{meta['name']}", doc, field_manager=FIELD_MANAGER)
    if account is None:
        raise ValueError(f"{rbac}: no ServiceAccount document")
    await_bindings(api, docs)
    return account


def await_bindings(api: ApiClient, docs: Iterable[dict[str, Any]], timeout: float = 30.0) -> None:
    """Wait until the apiserver's RBAC authorizer grants what ``docs`` bind.

    The authorizer answers from an informer cache, so a SubjectAccessReview sent right after
    a binding is written may still say no (a CI run failed on exactly that). For each
    binding to a ServiceAccount, the first rule of its role (found among ``docs``) is asked
    for until it is allowed.
    """
    roles = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"].endswith("Role")}
    pending: list[dict[str, Any]] = []
    for doc in docs:
        if not doc["kind"].endswith("RoleBinding"):
            continue
        role = roles.get((doc["roleRef"]["kind"], doc["roleRef"]["name"]))
        rules = [r for r in (role or {}).get("rules", []) if r.get("resources")]
        if not rules:
            continue
        rule = rules[0]
        attrs = {
            "verb": rule["verbs"][0],
            "group": rule.get("apiGroups", [""])[0],
            "resource": rule["resources"][0],
        }
        if rule.get("resourceNames"):
            attrs["name"] = rule["resourceNames"][0]
        if doc["kind"] == "RoleBinding":
            attrs["namespace"] = doc["metadata"]["namespace"]
        for subject in doc.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                user = username(subject["namespace"], subject["name"])
                pending.append({"user": user, "resourceAttributes": attrs})
    deadline = time.monotonic() + timeout
    for spec in pending:
        while not allowed(api, spec["user"], spec["resourceAttributes"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"RBAC did not grant {spec} within {timeout:.0f} s")
            time.sleep(0.1)


def allowed(api: ApiClient, user: str, attrs: dict[str, str]) -> bool:
    """The apiserver's answer to a SubjectAccessReview for ``user`` (a ServiceAccount)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": ["system:serviceaccounts"], "resourceAttributes": attrs},
    }
    out = rawapi.request(
        api, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review
    )
    return bool(out["status"].get("allowed"))


def username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_kubeconfig(
    api: ApiClient, admin_kubeconfig: Path, namespace: str, name: str, *, seconds: int = 3600
) -> Path:
    """A kubeconfig beside ``admin_kubeconfig`` that authenticates as the ServiceAccount.

    The token comes from the TokenRequest API (bound, expiring), as a Pod's would.
    """
    token: str = rawapi.request(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    )["status"]["token"]
    config: dict[str, Any] = YAML(typ="safe").load(admin_kubeconfig.read_text(encoding="utf-8"))
    config["users"] = [{"name": name, "user": {"token": token}}]
    for ctx in config["contexts"]:
        ctx["context"]["user"] = name
    out = admin_kubeconfig.with_name(f"{namespace}-{name}.kubeconfig")
    with out.open("w", encoding="utf-8") as fh:
        YAML(typ="safe").dump(config, fh)
    out.chmod(0o600)
    return out

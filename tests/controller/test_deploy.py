"""deploy/: the kustomize base builds, every object passes a strict server-side dry run on the
real 1.37 apiserver, and the ServiceAccount can do its job and nothing more."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from harness import DEPLOY, install_crd
from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler import devcluster, source, validate
from reconciler.devcluster import identity, rawapi, workloads
from reconciler.plan import fence, quota

pytestmark = pytest.mark.integration
ROOT = DEPLOY.parent
SA = identity.username("cu-system", "cu-reconciler")

_PATHS = {
    "Namespace": "/api/v1/namespaces/{name}",
    "CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{name}",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}",
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{name}"
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{name}"
    ),
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "Service": "/api/v1/namespaces/{ns}/services/{name}",
    "CUSync": "/apis/cu-reconciler.io/v1alpha1/cusyncs/{name}",
}


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = devcluster.ensure_built().kubectl
    out = subprocess.run(
        [str(kubectl), "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in YAML(typ="safe").load_all(out) if d]


def test_the_base_holds_what_the_issue_lists(rendered: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in rendered}
    assert kinds == set(_PATHS)
    dep = next(d for d in rendered if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"livenessProbe", "readinessProbe", "resources"} <= set(c)
    assert any(v.get("secret", {}).get("secretName") == "cu-reconciler-git" for v in pod["volumes"])
    assert pod["serviceAccountName"] == "cu-reconciler"


def test_every_object_passes_a_strict_server_side_dry_run(
    rendered: list[dict[str, Any]], api: ApiClient
) -> None:
    install_crd(api)  # a CUSync can only be checked once its CRD is served
    identity.ensure_namespace(api, "cu-system")
    for doc in rendered:
        meta = doc["metadata"]
        path = _PATHS[doc["kind"]].format(name=meta["name"], ns=meta.get("namespace", ""))
        stored = rawapi.request(
            api,
            "PATCH",
            path,
            body=doc,
            query={
                "fieldManager": "deploy-test",
                "dryRun": "All",
                "fieldValidation": "Strict",
                "force": "true",
            },
            content_type=rawapi.APPLY_PATCH,
        )
        assert stored["metadata"]["name"] == meta["name"]


def _allowed(api: ApiClient, attrs: dict[str, str], user: str = SA) -> bool:
    return identity.allowed(api, user, attrs)


@pytest.fixture
def rbac(api: ApiClient) -> Iterator[None]:
    identity.install_rbac(api)
    yield


_ADMISSION = "admissionregistration.k8s.io"
_VAP_RESOURCES = ("validatingadmissionpolicies", "validatingadmissionpolicybindings")

CAN = [
    {"group": "resource.k8s.io", "resource": "resourceslices", "verb": "create"},
    {"group": "resource.k8s.io", "resource": "devicetaintrules", "verb": "patch"},
    {"group": "resource.k8s.io", "resource": "resourceclaims", "verb": "delete", "namespace": "x"},
    {"group": "", "resource": "nodes", "verb": "watch"},
    {"group": "cu-reconciler.io", "resource": "cusyncs", "verb": "get"},
    {"group": "cu-reconciler.io", "resource": "cusyncs", "subresource": "status", "verb": "update"},
    {
        "group": "coordination.k8s.io",
        "resource": "leases",
        "verb": "update",
        "namespace": "cu-system",
        "name": "cu-reconciler",
    },
    {
        "group": "coordination.k8s.io",
        "resource": "leases",
        "verb": "create",
        "namespace": "cu-system",
    },
    {"group": "events.k8s.io", "resource": "events", "verb": "create", "namespace": "default"},
    {
        "group": "coordination.k8s.io",
        "resource": "leases",
        "verb": "list",
        "namespace": "cu-system",
    },
    # The inventory (model/inventory.py), in the reconciler's namespace only.
    {"group": "", "resource": "configmaps", "verb": "patch", "namespace": "cu-system"},
    # Exactly our fence and quotas (issue 18, item 9), by their fixed names.
    *(
        {"group": _ADMISSION, "resource": resource, "verb": verb, "name": fence.POLICY_NAME}
        for resource in _VAP_RESOURCES
        for verb in ("get", "update", "patch", "delete")
    ),
    *(
        {"group": _ADMISSION, "resource": resource, "verb": verb}
        for resource in _VAP_RESOURCES
        for verb in ("create", "list", "watch")
    ),
    *(
        {
            "group": "",
            "resource": "resourcequotas",
            "verb": verb,
            "namespace": "research",
            "name": quota.NAME,
        }
        for verb in ("get", "update", "patch", "delete")
    ),
    {"group": "", "resource": "resourcequotas", "verb": "create", "namespace": "research"},
    {"group": "", "resource": "resourcequotas", "verb": "list"},
    # CUSync spec.git.secretRef: the one Secret the Role names (issue 20, item 5).
    {
        "group": "",
        "resource": "secrets",
        "verb": "get",
        "namespace": "cu-system",
        "name": "cu-reconciler-git",
    },
]
CANNOT = [
    *(
        {"group": "", "resource": "secrets", "verb": verb, "namespace": "cu-system"}
        for verb in ("list", "watch")
    ),
    {"group": "", "resource": "secrets", "verb": "get", "namespace": "cu-system", "name": "other"},
    {
        "group": "",
        "resource": "secrets",
        "verb": "get",
        "namespace": "x",
        "name": "cu-reconciler-git",
    },
    {
        "group": "",
        "resource": "secrets",
        "verb": "update",
        "namespace": "cu-system",
        "name": "cu-reconciler-git",
    },
    {"group": "", "resource": "configmaps", "verb": "patch", "namespace": "x"},
    {"group": "", "resource": "configmaps", "verb": "list"},
    {"group": "coordination.k8s.io", "resource": "leases", "verb": "list"},
    {"group": "coordination.k8s.io", "resource": "leases", "verb": "list", "namespace": "x"},
    {"group": "", "resource": "secrets", "verb": "get", "namespace": "cu-system"},
    {"group": "", "resource": "pods", "verb": "create", "namespace": "x"},
    {"group": "", "resource": "nodes", "verb": "patch"},
    {"group": "", "resource": "namespaces", "verb": "delete"},
    {"group": "cu-reconciler.io", "resource": "cusyncs", "verb": "update"},
    {"group": "cu-reconciler.io", "resource": "cusyncs", "verb": "delete"},
    {
        "group": "coordination.k8s.io",
        "resource": "leases",
        "verb": "update",
        "namespace": "cu-system",
        "name": "someone-else",
    },
    {
        "group": "coordination.k8s.io",
        "resource": "leases",
        "verb": "update",
        "namespace": "kube-system",
        "name": "cu-reconciler",
    },
    {"group": "events.k8s.io", "resource": "events", "verb": "create", "namespace": "x"},
    {"group": "rbac.authorization.k8s.io", "resource": "clusterroles", "verb": "escalate"},
    {"group": "apps", "resource": "deployments", "verb": "patch", "namespace": "cu-system"},
    # Nobody else's admission policies, bindings or quotas (issue 18, item 9).
    *(
        {"group": _ADMISSION, "resource": resource, "verb": verb, "name": name}
        for resource in _VAP_RESOURCES
        for verb in ("get", "update", "patch", "delete")
        for name in ("pod-security-baseline", "cu-reconciler-fence-bootstrap")
    ),
    {"group": _ADMISSION, "resource": "validatingadmissionpolicies", "verb": "deletecollection"},
    *(
        {
            "group": "",
            "resource": "resourcequotas",
            "verb": verb,
            "namespace": namespace,
            "name": "compute",
        }
        for verb in ("get", "update", "patch", "delete")
        for namespace in ("kube-system", "research")
    ),
    {"group": "", "resource": "resourcequotas", "verb": "deletecollection", "namespace": "x"},
]


@pytest.mark.parametrize("attrs", CAN, ids=lambda a: f"{a['verb']}-{a['resource']}")
def test_the_service_account_can_do_its_job(
    api: ApiClient, rbac: None, attrs: dict[str, str]
) -> None:
    assert _allowed(api, attrs)


@pytest.mark.parametrize("attrs", CANNOT, ids=lambda a: f"{a['verb']}-{a['resource']}")
def test_and_nothing_more(api: ApiClient, rbac: None, attrs: dict[str, str]) -> None:
    assert not _allowed(api, attrs)


_VAP = "validatingadmissionpolicies.admissionregistration.k8s.io"
_VAPB = "validatingadmissionpolicybindings.admissionregistration.k8s.io"
CAN_I = [
    ("yes", "patch", f"{_VAP}/{fence.POLICY_NAME}"),
    ("yes", "delete", f"{_VAPB}/{fence.POLICY_NAME}"),
    ("no", "delete", f"{_VAP}/pod-security-baseline"),
    ("no", "patch", f"{_VAPB}/pod-security-baseline"),
    ("no", "deletecollection", _VAP),
    ("yes", "update", f"resourcequotas/{quota.NAME}", "-n", "research"),
    ("no", "delete", "resourcequotas/compute", "-n", "kube-system"),
    ("no", "update", "resourcequotas/compute", "-n", "research"),
    ("yes", "create", "resourceclaims.resource.k8s.io", "-n", "research"),
    ("no", "get", "secrets", "-n", "cu-system"),
    ("yes", "delete", "configmaps/cu-reconciler-driver", "-n", "cu-system"),
    ("no", "delete", "configmaps/cu-hydration-keys", "-n", "cu-system"),
    ("no", "escalate", "clusterroles.rbac.authorization.k8s.io"),
]


def test_kubectl_auth_can_i_as_the_service_account(
    api: ApiClient, rbac: None, control_plane: devcluster.ControlPlane
) -> None:
    """Issue 18 item 9 as an operator checks it: ``kubectl auth can-i`` with the
    ServiceAccount's own token (a SelfSubjectAccessReview), on the real apiserver."""
    kubeconfig = identity.service_account_kubeconfig(
        api, control_plane.kubeconfig, "cu-system", "cu-reconciler"
    )
    kubectl = devcluster.ensure_built().kubectl
    answers = {}
    for expected, *args in CAN_I:
        proc = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "auth", "can-i", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        answers[" ".join(args)] = (expected, proc.stdout.strip() or proc.stderr.strip())
    wrong = {k: v for k, v in answers.items() if v[0] != v[1]}
    assert wrong == {}, wrong


def test_the_bootstrap_fence_is_the_controllers_toleration_rule() -> None:
    docs = list(YAML(typ="safe").load_all((DEPLOY / "fence-policy.yaml").read_text()))
    state = validate.validate_tree(source.read(str(ROOT / "examples" / "gitrepo"), None)).state
    assert state is not None
    policy, _ = fence.admission_policy(state.settings.spec, {}, {})
    # The policy does not depend on the pools, so the bootstrap copy is the whole rule set:
    # a tenant can neither tolerate the fence nor name a cu-* class before the first reconcile.
    assert docs[0]["spec"]["validations"] == policy["spec"]["validations"]
    assert docs[0]["spec"]["variables"] == policy["spec"]["variables"]
    assert docs[0]["spec"]["matchConditions"] == policy["spec"]["matchConditions"]
    assert docs[1]["spec"]["policyName"] == docs[0]["metadata"]["name"]


def test_the_image_is_multi_stage_non_root_with_git() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "COPY --from=build" in text
    assert "USER 65532" in text
    assert " git " in text


SYNC_IDENTITY = DEPLOY / "argocd" / "mode2" / "sync-identity.yaml"
SYNC_CAN = [
    {"group": "resource.k8s.io", "resource": "resourceclaims", "verb": "create", "namespace": "x"},
    {"group": "resource.k8s.io", "resource": "deviceclasses", "verb": "delete"},
    {
        "group": _ADMISSION,
        "resource": "validatingadmissionpolicies",
        "verb": "patch",
        "name": fence.POLICY_NAME,
    },
    {
        "group": "",
        "resource": "resourcequotas",
        "verb": "patch",
        "namespace": "x",
        "name": quota.NAME,
    },
]
SYNC_CANNOT = [
    {
        "group": _ADMISSION,
        "resource": "validatingadmissionpolicies",
        "verb": "delete",
        "name": "other",
    },
    {
        "group": "",
        "resource": "resourcequotas",
        "verb": "delete",
        "namespace": "kube-system",
        "name": "compute",
    },
    {"group": "", "resource": "secrets", "verb": "get", "namespace": "cu-system"},
    {"group": "", "resource": "pods", "verb": "create", "namespace": "x"},
    {"group": "", "resource": "serviceaccounts", "verb": "impersonate", "namespace": "cu-system"},
]


def test_the_argocd_sync_identity_writes_the_rendered_kinds_and_nothing_more(
    api: ApiClient,
) -> None:
    """deploy/argocd/mode2/sync-identity.yaml: the ServiceAccount Argo CD impersonates for the
    CU Application (the one engine identity the fence admits) has exactly the rendered kinds."""
    namespace, name = identity.install_rbac(api, SYNC_IDENTITY)
    user = identity.username(namespace, name)
    assert user == "system:serviceaccount:cu-system:cu-sync"
    # A new binding reaches the authorizer's cache asynchronously.
    workloads.wait_for(
        lambda: _allowed(api, SYNC_CAN[0], user) or None, timeout=60, what="the binding"
    )
    assert [a for a in SYNC_CAN if not _allowed(api, a, user)] == []
    assert [a for a in SYNC_CANNOT if _allowed(api, a, user)] == []

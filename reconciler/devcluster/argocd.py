"""A real Argo CD (application controller, repo-server, plugin sidecar, ApplicationSet controller).

Built from Go modules by ``hack/build-argocd.sh`` (pinned in ``hack/versions.env``, cached like
the control plane), run as plain processes against the local kube-apiserver, with Debian's
``redis-server``. The recipe (research note "real Argo CD"): CRDs from the module's
``manifests/crds``; ``argocd-cm`` carrying our Lua health checks; the local apiserver
registered as a cluster Secret (outside a Pod the in-cluster address does not resolve), with
the bearer token of a ServiceAccount ``argocd:argocd-application-controller`` (Argo CD reads
as it, and with sync impersonation on, :func:`set_sync_impersonation`, writes as each
AppProject's destination ServiceAccount); the config management plugin
from ``deploy/argocd/cmp/plugin.yaml`` served by ``argocd-cmp-server`` over a Unix socket; the
``kustomize`` Argo CD's image ships on the repo-server's PATH; other control planes registered as
labelled cluster Secrets for the ApplicationSet's cluster generator.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler import errors
from reconciler.devcluster import binaries, controlplane, identity, rawapi, supervised, workloads

NAMESPACE = "argocd"
CONTROLLER_SA = "argocd-application-controller"
USERNAME = identity.username(NAMESPACE, CONTROLLER_SA)
DEPLOY = binaries.repo_root() / "deploy" / "argocd"
PART_OF = {"app.kubernetes.io/part-of": "argocd"}
APPS = f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/applications"
PROJECTS = f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/appprojects"
APPSETS = f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/applicationsets"
SECRETS = f"/api/v1/namespaces/{NAMESPACE}/secrets"
_MANAGER = "argocd-harness"
IMPERSONATION_KEY = "application.sync.impersonation.enabled"


def build() -> Path:
    """The directory holding the Argo CD binaries and kustomize (building them when not cached)."""
    return binaries.tool_dir("build-argocd.sh", "ARGOCD_BIN_DIR")


def crd_dir() -> Path:
    """``manifests/crds`` of the pinned argo-cd module in the Go module cache."""
    version = _pinned_version()
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(gomodcache) / f"github.com/argoproj/argo-cd/v3@v{version}" / "manifests" / "crds"


def _pinned_version() -> str:
    env = (binaries.repo_root() / "hack" / "versions.env").read_text()
    for line in env.splitlines():
        if line.startswith("ARGOCD_VERSION="):
            return line.split("=", 1)[1].strip()
    raise errors.ToolchainError("hack/versions.env has no ARGOCD_VERSION")


def health_customizations() -> dict[str, str]:
    """``argocd-cm`` keys for every shipped Lua health check."""
    out = {}
    for lua in sorted((DEPLOY / "resource_customizations").glob("*/*/health.lua")):
        kind, group = lua.parent.name, lua.parent.parent.name
        out[f"resource.customizations.health.{group}_{kind}"] = lua.read_text()
    return out


@dataclass(slots=True)
class ArgoCD(supervised.Supervised):
    cluster_url: str
    repo_server: str = ""
    env: dict[str, str] = field(default_factory=dict)


def _apply(api: ApiClient, path: str, body: dict[str, Any]) -> Any:
    return rawapi.apply(api, path, body, field_manager=_MANAGER)


def install(api: ApiClient, cp: controlplane.ControlPlane) -> str:
    """CRDs, namespace, ServiceAccount, ConfigMaps, Secrets; returns the SA's bearer token."""
    for name in ("application-crd.yaml", "appproject-crd.yaml", "applicationset-crd.yaml"):
        crd = YAML(typ="safe").load((crd_dir() / name).read_text())
        _apply(
            api,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
            crd,
        )
    for name in (
        "applications.argoproj.io",
        "appprojects.argoproj.io",
        "applicationsets.argoproj.io",
    ):
        established = functools.partial(supervised.crd_established, api, name)
        workloads.wait_for(established, timeout=60, what=f"CRD {name} to be established")
    identity.ensure_namespace(api, NAMESPACE)
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": CONTROLLER_SA, "namespace": NAMESPACE},
    }
    _apply(api, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{CONTROLLER_SA}", sa)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "argocd-application-controller"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": CONTROLLER_SA, "namespace": NAMESPACE}],
    }
    _apply(
        api,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/argocd-application-controller",
        binding,
    )
    token: str = rawapi.request(
        api,
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{CONTROLLER_SA}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200},
        },
    )["status"]["token"]
    cm_data = {"timeout.reconciliation": "10s", **health_customizations()}
    for name, data in (
        ("argocd-cm", cm_data),
        ("argocd-rbac-cm", {}),
        ("argocd-cmd-params-cm", {}),
    ):
        _apply(
            api,
            f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": NAMESPACE, "labels": PART_OF},
                "data": data,
            },
        )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "argocd-secret", "namespace": NAMESPACE, "labels": PART_OF},
        "stringData": {"server.secretkey": base64.b64encode(os.urandom(24)).decode()},
    }
    _apply(api, f"{SECRETS}/argocd-secret", secret)
    kubeconfig = json.loads(cp.kubeconfig.read_text())
    ca = Path(kubeconfig["clusters"][0]["cluster"]["certificate-authority"]).read_bytes()
    cluster = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "local-cluster",
            "namespace": NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "cluster"},
        },
        "stringData": {
            "name": "local",
            "server": cp.server,
            "config": json.dumps(
                {
                    "bearerToken": token,
                    "tlsClientConfig": {"caData": base64.b64encode(ca).decode()},
                }
            ),
        },
    }
    _apply(api, f"{SECRETS}/local-cluster", cluster)
    return token


def start(cp: controlplane.ControlPlane, workdir: Path, bin_dir: Path) -> ArgoCD:
    """Install the objects and start redis, the plugin server, repo-server, controller."""
    redis = shutil.which("redis-server")
    if redis is None:
        raise errors.ToolchainError(
            "redis-server is not installed (hack/bootstrap.sh installs Debian's redis-server)"
        )
    with cp.api_client() as api:
        install(api, cp)
    argo = ArgoCD(workdir, cp.server)
    argo.log_dir.mkdir(parents=True, exist_ok=True)
    redis_port, repo_port, repo_metrics, ctl_metrics = controlplane._free_ports(4)
    sockets = workdir / "plugins"
    config = workdir / "cmp-config"
    for d in (sockets, config, *(workdir / n for n in ("gnupg", "gpg", "tls", "ssh", "tmp"))):
        d.mkdir(parents=True, exist_ok=True)
    (workdir / "gnupg").chmod(0o700)
    shutil.copy(DEPLOY / "cmp" / "plugin.yaml", config / "plugin.yaml")
    env = {
        **os.environ,
        "ARGOCD_PLUGINSOCKFILEPATH": str(sockets),
        "ARGOCD_GPG_ENABLED": "false",
        "ARGOCD_GNUPGHOME": str(workdir / "gnupg"),
        "ARGOCD_GPG_DATA_PATH": str(workdir / "gpg"),
        "ARGOCD_TLS_DATA_PATH": str(workdir / "tls"),
        "ARGOCD_SSH_DATA_PATH": str(workdir / "ssh"),
        "TMPDIR": str(workdir / "tmp"),
        # The plugin runs `cuctl` from this interpreter's environment, this checkout first; the
        # repo-server runs kustomize from the build directory.
        "PATH": f"{Path(sys.executable).parent}:{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(binaries.repo_root()),
    }
    redis_bin = Path(redis)
    argo.spawn(
        "redis",
        [
            redis,
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        env,
        binary=redis_bin,
    )
    argo.spawn(
        "cmp-server",
        [
            str(bin_dir / "argocd-cmp-server"),
            "--config-dir-path",
            str(config),
            "--loglevel",
            "info",
        ],
        env,
        binary=bin_dir / "argocd",
    )
    workloads.wait_for(lambda: any(sockets.glob("*.sock")), timeout=60, what="the plugin socket")
    redis_addr = f"127.0.0.1:{redis_port}"
    argo.repo_server = f"127.0.0.1:{repo_port}"
    argo.env = env
    argo.spawn(
        "repo-server",
        [
            str(bin_dir / "argocd-repo-server"),
            "--redis",
            redis_addr,
            "--port",
            str(repo_port),
            "--metrics-port",
            str(repo_metrics),
            "--disable-tls",
            "--loglevel",
            "info",
        ],
        env,
        binary=bin_dir / "argocd",
    )
    argo.spawn(
        "application-controller",
        [
            str(bin_dir / "argocd-application-controller"),
            "--kubeconfig",
            str(cp.kubeconfig),
            "--namespace",
            NAMESPACE,
            "--redis",
            redis_addr,
            "--repo-server",
            f"127.0.0.1:{repo_port}",
            "--repo-server-plaintext",
            "--metrics-port",
            str(ctl_metrics),
            "--app-resync",
            "10",
            "--app-resync-jitter",
            "0",
            "--self-heal-timeout-seconds",
            "2",
            # Argo CD 3 keeps per-resource health out of the Application by default; the tests
            # (and `kubectl get application -o yaml` users) read it there.
            "--persist-resource-health",
            "--loglevel",
            "info",
        ],
        env,
        binary=bin_dir / "argocd",
    )
    return argo


def start_applicationset_controller(
    argo: ArgoCD, cp: controlplane.ControlPlane, bin_dir: Path
) -> None:
    """Start the ApplicationSet controller next to a running Argo CD (same namespace, repo-server).

    SCM providers are off: the cluster generator needs none, and the controller refuses to start
    with them on and no allow-list when it watches more than its own namespace.
    """
    metrics, probe, webhook = controlplane._free_ports(3)
    argo.spawn(
        "applicationset-controller",
        [
            str(bin_dir / "argocd-applicationset-controller"),
            "--kubeconfig",
            str(cp.kubeconfig),
            "--namespace",
            NAMESPACE,
            "--argocd-repo-server",
            argo.repo_server,
            "--repo-server-plaintext",
            "--metrics-addr",
            f"127.0.0.1:{metrics}",
            "--probe-addr",
            f"127.0.0.1:{probe}",
            "--webhook-addr",
            f"127.0.0.1:{webhook}",
            "--enable-scm-providers=false",
            "--logformat",
            "text",
            "--loglevel",
            "info",
        ],
        # Its manager reads the kubeconfig the controller-runtime way (not the flag).
        {**argo.env, "KUBECONFIG": str(cp.kubeconfig)},
        binary=bin_dir / "argocd",
    )


def register_cluster(
    api: ApiClient, name: str, cluster: controlplane.ControlPlane, labels: dict[str, str]
) -> None:
    """Register another control plane as an Argo CD cluster (its admin client certificate).

    ``labels`` go on the Secret, where the ApplicationSet cluster generator selects them.
    """
    kubeconfig = json.loads(cluster.kubeconfig.read_text())
    ca = Path(kubeconfig["clusters"][0]["cluster"]["certificate-authority"]).read_bytes()
    user = kubeconfig["users"][0]["user"]
    tls = {
        "caData": base64.b64encode(ca).decode(),
        "certData": base64.b64encode(Path(user["client-certificate"]).read_bytes()).decode(),
        "keyData": base64.b64encode(Path(user["client-key"]).read_bytes()).decode(),
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"cluster-{name}",
            "namespace": NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "cluster", **labels},
        },
        "stringData": {
            "name": name,
            "server": cluster.server,
            "config": json.dumps({"tlsClientConfig": tls}),
        },
    }
    _apply(api, f"{SECRETS}/cluster-{name}", secret)


def application(api: ApiClient, name: str) -> dict[str, Any]:
    app: dict[str, Any] = rawapi.request(api, "GET", f"{APPS}/{name}")
    return app


def apply_manifest(api: ApiClient, doc: dict[str, Any]) -> None:
    """Apply an Application, AppProject or ApplicationSet document."""
    base = {"Application": APPS, "AppProject": PROJECTS, "ApplicationSet": APPSETS}[doc["kind"]]
    _apply(api, f"{base}/{doc['metadata']['name']}", doc)


def set_sync_impersonation(api: ApiClient, enabled: bool) -> None:
    """Turn Argo CD's sync impersonation on or off in ``argocd-cm`` (read live by Argo CD).

    On, every sync runs as the AppProject's destination ServiceAccount
    (``spec.destinationServiceAccounts``) instead of the cluster Secret's identity, which then
    only reads (deploy/argocd/impersonation ships the same key).
    """
    rawapi.request(
        api,
        "PATCH",
        f"/api/v1/namespaces/{NAMESPACE}/configmaps/argocd-cm",
        body={"data": {IMPERSONATION_KEY: "true" if enabled else "false"}},
        content_type=rawapi.MERGE_PATCH,
    )


def refresh(api: ApiClient, name: str) -> None:
    """Ask Argo CD to re-read Git now (the refresh annotation), instead of waiting for a poll."""
    with contextlib.suppress(Exception):
        rawapi.request(
            api,
            "PATCH",
            f"{APPS}/{name}",
            body={"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}},
            content_type=rawapi.MERGE_PATCH,
        )

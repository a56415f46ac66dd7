"""A live cluster as a Source, through the ``kubernetes`` client's transport.

Objects are read as raw JSON (``call_api``), not through the generated models: a model
round-trip can drop or add fields, and the diff must see what the apiserver stored. Lists
are paged (``limit``/``continue``). Client and HTTP errors become ObserveError here, once.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config import incluster_config
from kubernetes.config.config_exception import ConfigException

from reconciler import errors, kube
from reconciler.model import observed as obs
from reconciler.model import ownership, presence
from reconciler.observe import capabilities, informer, sources

PAGE = 500
READERS = 4
"""Lists read in parallel by :meth:`Cluster.read`."""
OWNER_SELECTOR = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"

# (path, apiVersion, kind, only ours?)
_LISTS: tuple[tuple[str, str, str, bool], ...] = (
    ("/api/v1/nodes", "v1", "Node", False),
    ("/apis/resource.k8s.io/v1/resourceslices", "resource.k8s.io/v1", "ResourceSlice", False),
    ("/apis/resource.k8s.io/v1/resourceclaims", "resource.k8s.io/v1", "ResourceClaim", False),
    ("/apis/resource.k8s.io/v1/deviceclasses", "resource.k8s.io/v1", "DeviceClass", True),
    ("/api/v1/resourcequotas", "v1", "ResourceQuota", True),
    ("/apis/resource.k8s.io/v1/devicetaintrules", "resource.k8s.io/v1", "DeviceTaintRule", True),
    (
        "/apis/resource.k8s.io/v1/resourceclaimtemplates",
        "resource.k8s.io/v1",
        "ResourceClaimTemplate",
        True,
    ),
    # Whole (sources.WATCHED_WHOLE): a hand edit may have stripped our label from the fence.
    (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        False,
    ),
    (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        False,
    ),
)
INVENTORY_SELECTOR = "app.kubernetes.io/name=cu-reconciler"


SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    serviceaccount_dir: Path = SERVICEACCOUNT_DIR,
) -> k8s_client.ApiClient:
    """An ApiClient, found the way controller-runtime finds one; problems are ObserveErrors.

    In order: ``--kubeconfig`` (with ``--context``), the ``KUBECONFIG`` variable (a
    ``:``-separated list, merged), the Pod's ServiceAccount when running in a cluster
    (``KUBERNETES_SERVICE_HOST`` set and a token mounted; the token is re-read as the
    kubelet rotates it), then ``~/.kube/config``.
    """
    env = os.environ if environ is None else environ
    if kubeconfig:
        return _from_file(kubeconfig, context, f"--kubeconfig {kubeconfig}")
    if env.get("KUBECONFIG"):
        return _from_file(env["KUBECONFIG"], context, f"KUBECONFIG={env['KUBECONFIG']}")
    token = serviceaccount_dir / "token"
    if env.get("KUBERNETES_SERVICE_HOST") and token.exists():
        if context:
            raise errors.ObserveError(f"--context {context}: no kubeconfig to pick it from")
        return _in_cluster(env, serviceaccount_dir)
    home = Path(env.get("HOME") or Path.home()) / ".kube" / "config"
    if home.exists():
        return _from_file(str(home), context, str(home))
    raise errors.ObserveError(
        "no cluster to talk to: pass --kubeconfig FILE, set KUBECONFIG, run in a Pod with a "
        f"ServiceAccount, or create {home}"
    )


def _from_file(files: str, context: str | None, where: str) -> k8s_client.ApiClient:
    try:
        # A ``:``-separated list is merged by the client, as kubectl merges it.
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=files, context=context
        )
        return api
    except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        ctx = f" --context {context}" if context else ""
        raise errors.ObserveError(f"{where}{ctx}: cannot load: {exc}") from exc


def _in_cluster(env: Mapping[str, str], sa_dir: Path) -> k8s_client.ApiClient:
    try:
        config = k8s_client.Configuration()
        loader = incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(sa_dir / "token"),
            cert_filename=str(sa_dir / "ca.crt"),
            try_refresh_token=True,
            environ=env,
        )
        loader.load_and_set(config)  # type: ignore[no-untyped-call]
        return k8s_client.ApiClient(configuration=config)
    except (ConfigException, OSError, ValueError) as exc:
        raise errors.ObserveError(f"in-cluster ServiceAccount {sa_dir}: {exc}") from exc


def get_json(api: k8s_client.ApiClient, path: str, query: Mapping[str, str]) -> Any:
    try:
        resp = kube.call(api, "GET", path, query=query, timeout=60)
    except Exception as exc:  # urllib3 / ssl / socket errors: translate once, here
        raise errors.ObserveError(f"GET {path}: {exc}") from exc
    if not resp.ok:
        raise errors.ObserveError(f"GET {path}: {resp.reason()}")
    return resp.data if resp.data is not None else {}


def list_all(
    api: k8s_client.ApiClient, path: str, api_version: str, kind: str, selector: str | None
) -> Iterator[dict[str, Any]]:
    token = ""
    while True:
        query = {"limit": str(PAGE)}
        if token:
            query["continue"] = token
        if selector:
            query["labelSelector"] = selector
        page = get_json(api, path, query)
        for item in page.get("items") or ():
            yield {"apiVersion": api_version, "kind": kind, **item}
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return


PRESENCE_NAMESPACE = "cu-system"
"""Where kubelet plugins keep their presence Leases and we keep our inventory:
ClusterSettings.reconcilerNamespace's default. Listed there only, so the reconciler needs
no cluster-wide read of Leases; a Lease elsewhere could not count anyway
(:mod:`reconciler.model.presence` checks the namespace)."""
PROBE_DRIVER = "cu.cu-reconciler.io"
"""Driver named by the capability probe (any valid name would do; nothing is stored)."""


@dataclass(frozen=True, slots=True)
class Cluster:
    api: k8s_client.ApiClient
    presence_namespace: str = PRESENCE_NAMESPACE

    def read(self) -> obs.RawObjects:
        lists = [
            (path, api_version, kind, OWNER_SELECTOR if ours else None)
            for path, api_version, kind, ours in _LISTS
        ]
        # The kubelet plugin's presence Leases (model/presence.py decides which count).
        lists.append(
            (
                f"/apis/coordination.k8s.io/v1/namespaces/{self.presence_namespace}/leases",
                "coordination.k8s.io/v1",
                "Lease",
                f"{presence.PRESENCE_LABEL}=true",
            )
        )
        # Our inventories (model/inventory.py): which objects we created, by uid.
        lists.append(
            (
                f"/api/v1/namespaces/{self.presence_namespace}/configmaps",
                "v1",
                "ConfigMap",
                INVENTORY_SELECTOR,
            )
        )
        # The lists are independent: a few at a time, so the apiserver encodes one while
        # this process decodes another; results keep the order above.
        with ThreadPoolExecutor(max_workers=READERS) as pool:
            probe = pool.submit(capabilities.skip_node_operations, self.api, PROBE_DRIVER)
            pages = [pool.submit(lambda a: list(list_all(self.api, *a)), a) for a in lists]
            items = [item for page in pages for item in page.result()]
            skip = probe.result()
        return _finish(sources.classify(items), skip)

    def finish(self, raw: obs.RawObjects) -> obs.RawObjects:
        """What a read of the cluster adds to its objects: the time, the capability probe."""
        return _finish(raw, capabilities.skip_node_operations(self.api, PROBE_DRIVER))


def _finish(raw: obs.RawObjects, skip: bool) -> obs.RawObjects:
    return dataclasses.replace(
        raw,
        read_at=time.time(),
        skip_node_operations=skip,
        inventories=raw.inventories or {},  # a live cluster always has one, maybe empty
    )


def cached(api: k8s_client.ApiClient, stores: Mapping[str, informer.Store]) -> informer.Cache:
    """The cluster read from watch-fed ``stores``, listing when they are not in step."""
    fallback = Cluster(api)
    return informer.Cache(stores, fallback, fallback.finish)

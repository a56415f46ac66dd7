"""A live cluster as a Source, through the ``kubernetes`` client's transport.

Objects are read as raw JSON (``call_api``), not through the generated models: a model
round-trip can drop or add fields, and the diff must see what the apiserver stored. Lists
are paged (``limit``/``continue``). Client and HTTP errors become ObserveError here, once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from reconciler import errors, kube
from reconciler.model import observed as obs
from reconciler.model import ownership
from reconciler.observe import sources

PAGE = 500
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
    (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        True,
    ),
    (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        True,
    ),
)


def connect(kubeconfig: str, context: str | None = None) -> k8s_client.ApiClient:
    """An ApiClient from a kubeconfig file; a bad file or context is an ObserveError."""
    try:
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
        return api
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        where = f"--kubeconfig {kubeconfig}" + (f" --context {context}" if context else "")
        raise errors.ObserveError(f"{where}: cannot load: {exc}") from exc


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


@dataclass(frozen=True, slots=True)
class Cluster:
    api: k8s_client.ApiClient

    def read(self) -> obs.RawObjects:
        items: list[dict[str, Any]] = []
        for path, api_version, kind, ours in _LISTS:
            items.extend(
                list_all(self.api, path, api_version, kind, OWNER_SELECTOR if ours else None)
            )
        return sources.classify(items)

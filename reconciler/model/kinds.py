"""The Kubernetes kinds cu-reconciler reads or writes, and where they live in the API.

One table, so that observing, applying and pruning agree on paths and scope.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def collection_path(self, namespace: str = "") -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, name: str, namespace: str = "") -> str:
        return f"{self.collection_path(namespace)}/{name}"


RESOURCE = "resource.k8s.io/v1"
ADMISSION = "admissionregistration.k8s.io/v1"
VAP_BINDINGS = "validatingadmissionpolicybindings"

KINDS: dict[str, Kind] = {
    k.kind: k
    for k in (
        Kind("v1", "Node", "nodes", namespaced=False),
        Kind("v1", "Namespace", "namespaces", namespaced=False),
        Kind("v1", "ResourceQuota", "resourcequotas", namespaced=True),
        Kind("v1", "ConfigMap", "configmaps", namespaced=True),
        Kind(RESOURCE, "ResourceSlice", "resourceslices", namespaced=False),
        Kind(RESOURCE, "DeviceClass", "deviceclasses", namespaced=False),
        # The engine status `cuctl render --status` adds (an engine writes it, deploy/engine).
        Kind("cu-reconciler.io/v1alpha1", "CUEngineStatus", "cuenginestatuses", namespaced=True),
        Kind(RESOURCE, "DeviceTaintRule", "devicetaintrules", namespaced=False),
        Kind(RESOURCE, "ResourceClaim", "resourceclaims", namespaced=True),
        Kind(RESOURCE, "ResourceClaimTemplate", "resourceclaimtemplates", namespaced=True),
        Kind(ADMISSION, "ValidatingAdmissionPolicy", "validatingadmissionpolicies", False),
        Kind(
            ADMISSION,
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            False,
        ),
    )
}


def of(kind: str) -> Kind:
    """The registry entry for ``kind``; KeyError names the kinds we know."""
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown kind {kind!r}; cu-reconciler handles {sorted(KINDS)}") from None

"""What the live cluster's DRA API keeps, detected by asking it rather than assumed.

Why: the apiserver drops fields of disabled feature gates silently on write. Publishing
``skipNodeOperations`` (1.37 alpha, gate ``DRAOptionalNodeOperations``) to a cluster without
the gate would make every diff flap and leave our CU needing a kubelet plugin anyway. A
server-side dry-run create of a probe ResourceSlice shows whether the field survives; nothing
is stored.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s_client

from reconciler import errors, kube

SLICES_PATH = "/apis/resource.k8s.io/v1/resourceslices"
PROBE_NAME = "cu-reconciler-capability-probe"


def probe_slice(driver: str) -> dict[str, Any]:
    """A valid, empty slice asking to skip both node operations."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": PROBE_NAME},
        "spec": {
            "driver": driver,
            "allNodes": True,
            "pool": {"name": PROBE_NAME, "generation": 0, "resourceSliceCount": 1},
            "devices": [],
            "skipNodeOperations": ["*"],
        },
    }


def skip_node_operations(api: k8s_client.ApiClient, driver: str) -> bool:
    """True when the apiserver keeps ``spec.skipNodeOperations`` on a ResourceSlice."""
    try:
        resp = kube.call(
            api,
            "POST",
            SLICES_PATH,
            query={"dryRun": "All"},
            body=probe_slice(driver),
            timeout=30,
        )
    except Exception as exc:  # transport errors: translate once, here
        raise errors.ObserveError(f"dry-run POST {SLICES_PATH}: {exc}") from exc
    if resp.status == 409:
        # A real object of that name exists (someone created it): not ours to judge by.
        return False
    if not resp.ok:
        raise errors.ObserveError(
            f"dry-run POST {SLICES_PATH} (probing DRAOptionalNodeOperations): {resp.reason()}"
        )
    data = resp.data if isinstance(resp.data, dict) else {}
    return bool((data.get("spec") or {}).get("skipNodeOperations"))

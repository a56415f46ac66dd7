"""Node objects without a kubelet, the way kwok makes them.

kube-scheduler only places Pods on Nodes in its cache, and a Node is just an API object: create
it with a Ready condition and allocatable ``pods`` and the scheduler uses it. No kubelet runs,
so bound Pods stay Pending, which is all an allocation test needs. No node-lifecycle controller
runs either, so nothing marks these Nodes NotReady for missing heartbeats; only
:func:`set_ready` does, to simulate a node loss.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler.devcluster import rawapi

#: Label that marks Nodes made here, so tests can list and clean them up.
FAKE_NODE_LABEL = "devcluster.cu-reconciler.io/fake-node"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def create_node(
    api: ApiClient,
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    cpu: str = "64",
    memory: str = "512Gi",
    pods: str = "110",
    taints: list[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Create (or return the existing) Ready Node ``name`` with the given allocatable."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                FAKE_NODE_LABEL: "true",
                **(labels or {}),
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        },
        "spec": {"taints": [dict(t) for t in taints or []]},
        # Nodes allow every status field on create (kubelets register this way).
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": _conditions(ready=True),
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "containerRuntimeVersion": "fake://0",
                "kernelVersion": "",
                "osImage": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        },
    }
    try:
        rawapi.request(api, "POST", "/api/v1/nodes", body=body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    # The TaintNodesByCondition admission plugin adds node.kubernetes.io/not-ready:NoSchedule
    # to every new Node; the node-lifecycle controller would lift it once the Node is Ready.
    # We run no such controller, so do its job here (a merge patch replaces the whole list).
    return _set_taints(api, name, [dict(t) for t in taints or []])


def set_ready(api: ApiClient, name: str, ready: bool) -> dict[str, Any]:
    """Flip the Node's Ready condition and its unreachable taint, as the node-lifecycle
    controller does when a kubelet stops reporting (False) or comes back (True)."""
    rawapi.request(
        api,
        "PATCH",
        f"/api/v1/nodes/{name}/status",
        body={"status": {"conditions": _conditions(ready=ready)}},
        content_type=rawapi.MERGE_PATCH,
    )
    node = rawapi.request(api, "GET", f"/api/v1/nodes/{name}")
    taints = [t for t in node["spec"].get("taints", []) if t["key"] != UNREACHABLE_TAINT]
    if not ready:
        taints.append({"key": UNREACHABLE_TAINT, "effect": "NoSchedule"})
    return _set_taints(api, name, taints)


def delete_node(api: ApiClient, name: str) -> bool:
    """Delete the Node; False if it did not exist."""
    return rawapi.delete(api, f"/api/v1/nodes/{name}")


def _set_taints(api: ApiClient, name: str, taints: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(
        rawapi.request(
            api,
            "PATCH",
            f"/api/v1/nodes/{name}",
            body={"spec": {"taints": taints or None}},
            content_type=rawapi.MERGE_PATCH,
        )
    )


def _conditions(*, ready: bool) -> list[dict[str, str]]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "NodeLost",
            "message": "fake node (devcluster)" if ready else "fake node marked lost (devcluster)",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
    ]

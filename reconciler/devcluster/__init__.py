"""A real local Kubernetes control plane for tests, the demo and people at a shell.

Role: build (through ``hack/build-k8s.sh``) and run etcd, kube-apiserver, kube-scheduler and
kube-controller-manager on loopback, with TLS, RBAC and the DRA feature gates we rely on; make
Nodes without a kubelet; and play vendor DRA drivers that publish per-node ResourceSlices.
Inputs: the pinned versions in ``hack/versions.env``. Outputs: a kubeconfig and helpers that
write through a ``kubernetes.client.ApiClient``. Never: mock the API, or start anything that
outlives :func:`ControlPlane.stop` / ``python -m reconciler.devcluster down``.

Typical use::

    from reconciler import devcluster
    with devcluster.running(tmp_path) as cp, cp.api_client() as api:
        devcluster.create_node(api, "node-a")
        devcluster.publish_node(api, "node-a", "nvidia", "H100", 8)

Import modules for the details: ``devcluster.drivers.DRIVERS``, ``devcluster.controlplane``.
"""

from __future__ import annotations

from reconciler.devcluster import binaries, controlplane, drivers, nodes, pki, rawapi, workloads
from reconciler.devcluster.binaries import Binaries, ensure_built, go_available
from reconciler.devcluster.controlplane import (
    FEATURE_GATES,
    ControlPlane,
    StartError,
    running,
    start,
)
from reconciler.devcluster.drivers import (
    PoolState,
    Vendor,
    create_device_class,
    publish_node,
    update_driver,
    withdraw_node,
)
from reconciler.devcluster.nodes import create_node, delete_node, set_ready
from reconciler.devcluster.workloads import wait_for

__all__ = [
    "FEATURE_GATES",
    "Binaries",
    "ControlPlane",
    "PoolState",
    "StartError",
    "Vendor",
    "binaries",
    "controlplane",
    "create_device_class",
    "create_node",
    "delete_node",
    "drivers",
    "ensure_built",
    "go_available",
    "nodes",
    "pki",
    "publish_node",
    "rawapi",
    "running",
    "set_ready",
    "start",
    "update_driver",
    "wait_for",
    "withdraw_node",
    "workloads",
]

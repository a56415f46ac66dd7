"""The CU driver name as the kubelet plugin reads it: one ConfigMap the reconciler writes.

Why: ``ClusterSettings.spec.driverName`` is the one place the name is written. The
reconciler publishes our ResourceSlices and DeviceClasses under it, and the kubelet plugin
must register under exactly the same name, or the kubelet answers "DRA driver … is not
registered" for every CU claim. A second copy of the name in the plugin's DaemonSet would
drift from the settings (issue 21, item 6). So every writer of our objects also writes
:data:`NAME` (``cuctl apply`` and ``cuctl run`` directly; ``cuctl render`` emits it for the
GitOps engine to apply), and deploy/kubeletplugin/daemonset.yaml takes ``--driver-name``
and its socket directory from it (``configMapKeyRef``, not optional: a plugin never starts
under a guessed name).

A changed name reaches a running plugin only when its Pod restarts (a container's
environment is fixed at start). Until then the plugin's presence Lease still names the old
driver, which :mod:`reconciler.model.presence` reports as ``DriverNameMismatch`` (plan exit
1, CUSync ``DriverRegistered=False``) and whose node's CU is not sold.

Pure: builds the object only.
"""

from __future__ import annotations

from typing import Any

NAME = "cu-reconciler-driver"
KEY = "driverName"
LABELS = {"app.kubernetes.io/name": "cu-reconciler", "app.kubernetes.io/component": "driver"}


def config_map(driver: str, namespace: str) -> dict[str, Any]:
    """The ConfigMap carrying ``driver`` in the reconciler's ``namespace``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(LABELS)},
        "data": {KEY: driver},
    }


def driver_of(obj: dict[str, Any] | None) -> str | None:
    """The driver name a stored ConfigMap carries (None when absent or empty)."""
    value = ((obj or {}).get("data") or {}).get(KEY)
    return str(value) if value else None

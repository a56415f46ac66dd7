"""The driver name comes from one place (issue 21, item 6), on the real control plane.

``cuctl run`` (as the reconciler's ServiceAccount, with deploy/rbac.yaml) writes the kubelet
plugin's ConfigMap ``cu-reconciler-driver`` with ClusterSettings.spec.driverName, the value
deploy/kubeletplugin's DaemonSet takes its ``--driver-name`` from. A plugin that registered
under another name (its presence Lease's holder says which) makes the CUSync
``DriverRegistered=False`` with reason ``DriverNameMismatch``, and Ready False (Stalled: the
plugin must be redeployed); once the plugin serves the settings' name, both recover.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from harness import Env, wait_for

from reconciler.devcluster import rawapi
from reconciler.model import driverconfig, presence

pytestmark = pytest.mark.integration

LEASES = "/apis/coordination.k8s.io/v1/namespaces/cu-system/leases"
NODE = "node-renamed-plugin"


def _lease(holder: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": f"cu-kubelet-plugin-{NODE}",
            "namespace": "cu-system",
            "labels": {presence.PRESENCE_LABEL: "true", presence.NODE_LABEL: NODE},
        },
        "spec": {
            "holderIdentity": f"{holder}@{NODE}",
            "leaseDurationSeconds": 3600,
            "renewTime": now,
        },
    }


def _conditions(env: Env) -> dict[str, tuple[str, str]]:
    return {
        c["type"]: (c["status"], c["reason"])
        for c in (env.sync().get("status") or {}).get("conditions") or ()
    }


def test_a_plugin_under_another_driver_name_is_a_condition_and_ready_is_honest(
    env: Env,
) -> None:
    env.start(interval="1s", resync="2s")
    env.ready_at(env.head())
    # The plugin's name, from the settings, written by the reconciler's own identity.
    cm = rawapi.request(
        env.admin, "GET", f"/api/v1/namespaces/cu-system/configmaps/{driverconfig.NAME}"
    )
    assert cm["data"] == {driverconfig.KEY: "cu.cu-reconciler.io"}
    assert _conditions(env)["DriverRegistered"] == ("True", "DriverNameMatches")

    path = f"{LEASES}/{_lease('x')['metadata']['name']}"
    rawapi.apply(env.admin, path, _lease("cu.edge.example.com"), field_manager="test")
    try:

        def mismatch() -> dict[str, tuple[str, str]] | None:
            conds = _conditions(env)
            return conds if conds.get("DriverRegistered", ("",))[0] == "False" else None

        conds = wait_for("DriverRegistered=False", mismatch, 60)
        assert conds["DriverRegistered"] == ("False", "DriverNameMismatch")
        assert conds["Ready"] == ("False", "DriverNameMismatch")
        assert conds["Stalled"] == ("True", "DriverNameMismatch")
        [registered] = [
            c for c in env.sync()["status"]["conditions"] if c["type"] == "DriverRegistered"
        ]
        assert NODE in registered["message"] and "cu.edge.example.com" in registered["message"]

        # The plugin restarted under the settings' name: both recover.
        rawapi.apply(env.admin, path, _lease("cu.cu-reconciler.io"), field_manager="test")

        def recovered() -> dict[str, tuple[str, str]] | None:
            conds = _conditions(env)
            return conds if conds.get("Ready", ("",))[0] == "True" else None

        conds = wait_for("Ready again", recovered, 60)
        assert conds["DriverRegistered"] == ("True", "DriverNameMatches")
        assert "Stalled" not in conds
    finally:
        rawapi.delete(env.admin, path)

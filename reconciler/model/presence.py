"""Which nodes can prepare our CU devices: the kubelet plugin's presence Leases.

Why: on a real node the kubelet calls ``NodePrepareResources`` on the plugin of every driver
in an allocation. Without our plugin a Pod whose claim holds a CU device never starts
(``FailedPrepareDynamicResources: DRA driver cu.cu-reconciler.io is not registered``). So a
node's CU is only sellable while our plugin runs there.

How it is observed: the plugin (kubeletplugin/internal/driver/lease.go) renews a Lease
``cu-kubelet-plugin-<node>`` labelled :data:`PRESENCE_LABEL` in the reconciler's namespace
while the kubelet has accepted its registration. A node with managed devices and no live
Lease gets a finding and its devices the :data:`TAINT_KEY` ``NoSchedule`` taint: they are
not counted as capacity and the CU devices published for them carry the taint, so nothing
new is scheduled there. Running Pods are untouched.

Exempt: nodes without a kubelet (kwok's ``kwok.x-k8s.io/node: fake`` annotation, as the
devcluster's API-only nodes carry), clusters whose CU slices skip node operations
(``skipNodeOperations``: no plugin is called), and observations without a read time
(snapshots, which cannot say what runs). Only Leases in the reconciler's namespace count:
anyone who can write a Lease elsewhere could otherwise fake a plugin.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.model import observed as obs
from reconciler.model import ownership

PRESENCE_LABEL = f"{ownership.PREFIX}/kubelet-plugin"
NODE_LABEL = ownership.NODE_LABEL
TAINT_KEY = f"{ownership.PREFIX}/no-kubelet-plugin"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_LEASE_SECONDS = 40


def _time(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def lease_driver(lease: Mapping[str, Any]) -> str | None:
    """The driver a presence Lease's plugin serves: its holder is ``<driver>@<node>``
    (kubeletplugin/internal/driver/lease.go); None when the holder does not say."""
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
    driver, at, _ = holder.rpartition("@")
    return driver if at and driver else None


def live_nodes(
    leases: Sequence[Mapping[str, Any]], namespace: str, now: float, driver: str | None = None
) -> set[str]:
    """Nodes whose presence Lease in ``namespace`` was renewed within its duration (and,
    with ``driver``, whose plugin serves that driver name)."""
    out: set[str] = set()
    for lease in leases:
        if driver is not None and lease_driver(lease) not in (None, driver):
            continue
        meta = lease.get("metadata") or {}
        labels = meta.get("labels") or {}
        if meta.get("namespace") != namespace or labels.get(PRESENCE_LABEL) != "true":
            continue
        spec = lease.get("spec") or {}
        renewed = _time(spec.get("renewTime"))
        duration = spec.get("leaseDurationSeconds") or DEFAULT_LEASE_SECONDS
        node = str(labels.get(NODE_LABEL, ""))
        if node and renewed is not None and renewed + float(duration) >= now:
            out.add(node)
    return out


def _needs_plugin(node: Mapping[str, Any]) -> bool:
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    return annotations.get(KWOK_ANNOTATION) != "fake"


def apply(
    state: obs.ObservedState, raw: obs.RawObjects, namespace: str, driver: str | None = None
) -> obs.ObservedState:
    """Taint the devices of nodes that need our plugin and have none; add one finding each.

    With ``driver`` (ClusterSettings.spec.driverName), a plugin registered under another
    name does not count (the kubelet would answer "DRA driver … is not registered" for our
    claims) and is a finding of its own, naming both names."""
    if raw.skip_node_operations:
        return dataclasses.replace(state, skip_node_operations=True)
    if raw.read_at is None:
        return state
    live = live_nodes(raw.plugin_leases, namespace, raw.read_at, driver)
    others = {
        node: served
        for node in live_nodes(raw.plugin_leases, namespace, raw.read_at) - live
        for lease in raw.plugin_leases
        if str(((lease.get("metadata") or {}).get("labels") or {}).get(NODE_LABEL, "")) == node
        and (served := lease_driver(lease)) is not None
    }
    mismatched = [
        obs.Finding(
            obs.FindingCode.DRIVER_MISMATCH,
            node,
            f"the kubelet plugin runs as driver {served!r} but ClusterSettings.spec.driverName "
            f"is {driver!r}: Pods' CU claims cannot be prepared there; deploy the plugin with "
            f"--driver-name={driver} (deploy/kubeletplugin) or change driverName",
        )
        for node, served in sorted(others.items())
    ]
    if mismatched:
        state = dataclasses.replace(state, findings=tuple(sorted((*state.findings, *mismatched))))
    needs = {str((n.get("metadata") or {}).get("name", "")) for n in raw.nodes if _needs_plugin(n)}
    missing: dict[str, int] = defaultdict(int)
    devices = []
    taint = obs.DeviceTaint(TAINT_KEY, "", "NoSchedule")
    for d in state.devices:
        if d.node in needs and d.node not in live:
            missing[d.node] += 1
            d = dataclasses.replace(d, taints=tuple(sorted({*d.taints, taint})))
        devices.append(d)
    if not missing:
        return state
    findings = [
        obs.Finding(
            obs.FindingCode.NO_KUBELET_PLUGIN,
            node,
            f"no live kubelet plugin (Lease {namespace}/cu-kubelet-plugin-{node}): "
            f"{count} device(s) not sold and tainted {TAINT_KEY}; deploy "
            "deploy/kubeletplugin or fix the plugin on this node",
        )
        for node, count in sorted(missing.items())
    ]
    return dataclasses.replace(
        state, devices=tuple(devices), findings=tuple(sorted((*state.findings, *findings)))
    )

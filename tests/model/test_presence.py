"""Which nodes count as having our kubelet plugin (pure rules of model/presence.py)."""

from __future__ import annotations

import datetime
from typing import Any

from reconciler.model import observed as obs
from reconciler.model import presence

NOW = datetime.datetime(2026, 12, 2, 5, 0, tzinfo=datetime.UTC).timestamp()


def _lease(node: str, age: float, *, namespace: str = "cu-system", duration: int = 40) -> Any:
    renewed = datetime.datetime.fromtimestamp(NOW - age, datetime.UTC).isoformat()
    return {
        "kind": "Lease",
        "metadata": {
            "namespace": namespace,
            "name": f"cu-kubelet-plugin-{node}",
            "labels": {presence.PRESENCE_LABEL: "true", presence.NODE_LABEL: node},
        },
        "spec": {"renewTime": renewed, "leaseDurationSeconds": duration},
    }


def _node(name: str, *, kwok: bool = False) -> Any:
    annotations = {presence.KWOK_ANNOTATION: "fake"} if kwok else {}
    return {"kind": "Node", "metadata": {"name": name, "annotations": annotations}}


def _device(node: str) -> obs.ObservedDevice:
    return obs.ObservedDevice(
        id=obs.DeviceId("gpu.nvidia.com", node, "gpu-0"),
        node=node,
        vendor="nvidia",
        model="H100",
        memory_bytes=80 << 30,
        uuid=f"u-{node}",
        uuid_attribute="gpu.nvidia.com/uuid",
        uuid_raw=(("string", f"u-{node}"),),
    )


def _apply(raw: obs.RawObjects, *nodes: str) -> obs.ObservedState:
    state = obs.ObservedState(devices=tuple(_device(n) for n in nodes))
    return presence.apply(state, raw, "cu-system")


def test_live_lease_in_our_namespace_counts() -> None:
    assert presence.live_nodes([_lease("a", 10)], "cu-system", NOW) == {"a"}
    assert presence.live_nodes([_lease("a", 41)], "cu-system", NOW) == set()
    assert presence.live_nodes([_lease("a", 1, namespace="tenant")], "cu-system", NOW) == set()


def test_missing_plugin_taints_devices_and_reports_the_node() -> None:
    raw = obs.RawObjects(
        nodes=(_node("a"), _node("b"), _node("fake", kwok=True)),
        plugin_leases=(_lease("a", 5), _lease("b", 5, namespace="squatter")),
        read_at=NOW,
    )
    state = _apply(raw, "a", "b", "fake")
    by_node = {d.node: d for d in state.devices}
    assert by_node["a"].usable and by_node["fake"].usable
    assert not by_node["b"].usable
    assert [t.key for t in by_node["b"].taints] == [presence.TAINT_KEY]
    assert [(f.code, f.subject) for f in state.findings] == [
        (obs.FindingCode.NO_KUBELET_PLUGIN, "b")
    ]


def test_unknown_time_or_skipped_node_operations_change_nothing() -> None:
    snapshot = obs.RawObjects(nodes=(_node("b"),))
    assert _apply(snapshot, "b").findings == ()
    skipping = obs.RawObjects(nodes=(_node("b"),), read_at=NOW, skip_node_operations=True)
    state = _apply(skipping, "b")
    assert state.findings == () and state.skip_node_operations
    assert state.devices[0].usable


def _serving(lease: Any, driver: str, node: str) -> Any:
    return {**lease, "spec": {**lease["spec"], "holderIdentity": f"{driver}@{node}"}}


def test_a_plugin_serving_another_driver_name_is_a_finding_and_sells_nothing() -> None:
    """Issue 21 item 6: with driverName cu.edge.example.com and the plugin started as
    cu.cu-reconciler.io, Pods stayed ContainerCreating while plan said nothing."""
    raw = obs.RawObjects(
        nodes=(_node("a"), _node("b")),
        plugin_leases=(
            _serving(_lease("a", 5), "cu.edge.example.com", "a"),
            _serving(_lease("b", 5), "cu.cu-reconciler.io", "b"),
        ),
        read_at=NOW,
    )
    state = presence.apply(
        obs.ObservedState(devices=(_device("a"), _device("b"))),
        raw,
        "cu-system",
        "cu.edge.example.com",
    )
    by_node = {d.node: d for d in state.devices}
    assert by_node["a"].usable and not by_node["b"].usable
    assert sorted((str(f.code), f.subject) for f in state.findings) == [
        ("DriverNameMismatch", "b"),
        ("NoKubeletPlugin", "b"),
    ]
    mismatch = next(f for f in state.findings if f.code is obs.FindingCode.DRIVER_MISMATCH)
    assert "'cu.cu-reconciler.io'" in mismatch.message
    assert "--driver-name=cu.edge.example.com" in mismatch.message
    # Without a driver name to check (older callers), a live Lease counts as before.
    assert presence.live_nodes(raw.plugin_leases, "cu-system", NOW) == {"a", "b"}

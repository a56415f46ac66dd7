"""Observe by watch: a memoised build equals a fresh build after any sequence of node events.

The controller keeps an ``obs.Memo`` and rebuilds the observed model on every watch event;
only the vendor pools whose slices changed are normalised again. These tests hold that to
the contract: after every event of a random sequence (a node lost, a node back, a slice
replaced by a newer generation, a device turning unhealthy, a Node object gone while its
slices stay, an adapter edited) the memoised result is exactly the fresh one, and a
one-node event normalises one pool only.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import cu_example as ex
from hypothesis import given, settings
from hypothesis import strategies as hst

from reconciler.devcluster import drivers
from reconciler.model import observed as obs

_VENDORS = (("nvidia", "H100"), ("ascend", "910B3"), ("biren", "BR104"))
_NODES = 8


def _slice(i: int, generation: int = 1, unhealthy: bool = False) -> dict[str, Any]:
    vendor, model = _VENDORS[i % len(_VENDORS)]
    name = f"node-{i}"
    spec = drivers.vendor_driver(vendor)
    devices = drivers.build_devices(vendor, name, model, 2)
    if unhealthy:
        devices = copy.deepcopy(devices)
        devices[0]["taints"] = [{"key": "example.com/broken", "effect": "NoSchedule"}]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{name}-{spec.driver}-{generation}"},
        "spec": {
            "driver": spec.driver,
            "nodeName": name,
            "pool": {"name": name, "generation": generation, "resourceSliceCount": 1},
            "devices": devices,
        },
    }


@dataclasses.dataclass
class _Cluster:
    """What a watch cache would hold: Node objects and slices, keyed by node index."""

    nodes: dict[int, dict[str, Any]]
    slices: dict[int, dict[str, Any]]

    def raw(self) -> obs.RawObjects:
        return obs.RawObjects(
            nodes=tuple(self.nodes[i] for i in sorted(self.nodes)),
            slices=tuple(self.slices[i] for i in sorted(self.slices)),
        )


def _cluster() -> _Cluster:
    return _Cluster(
        nodes={i: ex.node(f"node-{i}") for i in range(_NODES)},
        slices={i: _slice(i) for i in range(_NODES)},
    )


_EVENTS = hst.tuples(
    hst.sampled_from(("lose", "return", "regenerate", "unhealthy", "node_gone", "adapter")),
    hst.integers(0, _NODES - 1),
)


def _apply(cluster: _Cluster, event: tuple[str, int], adapters: list[Any]) -> None:
    kind, i = event
    if kind == "lose":
        cluster.nodes.pop(i, None)
        cluster.slices.pop(i, None)
    elif kind == "return":
        cluster.nodes[i] = ex.node(f"node-{i}")
        cluster.slices[i] = _slice(i)
    elif kind == "regenerate" and i in cluster.slices:
        generation = cluster.slices[i]["spec"]["pool"]["generation"] + 1
        cluster.slices[i] = _slice(i, generation)
    elif kind == "unhealthy" and i in cluster.slices:
        cluster.slices[i] = _slice(i, cluster.slices[i]["spec"]["pool"]["generation"], True)
    elif kind == "node_gone":
        cluster.nodes.pop(i, None)
    elif kind == "adapter":
        # An adapter removed from Git, or put back: its vendor's pools are redone.
        every = ex.adapters()
        chosen = every[i % len(every)]
        if chosen in adapters:
            adapters.remove(chosen)
        else:
            adapters.append(chosen)


@settings(max_examples=40, deadline=None)
@given(events=hst.lists(_EVENTS, min_size=1, max_size=12))
def test_memoised_build_equals_fresh_build_after_every_event(
    events: list[tuple[str, int]],
) -> None:
    cluster = _cluster()
    adapters = list(ex.adapters())
    memo = obs.Memo()
    obs.build(cluster.raw(), adapters, ex.DRIVER, memo)
    for event in events:
        _apply(cluster, event, adapters)
        fresh = obs.build(cluster.raw(), adapters, ex.DRIVER)
        memoised = obs.build(cluster.raw(), adapters, ex.DRIVER, memo)
        assert memoised == fresh, event


def test_one_node_event_normalises_one_pool() -> None:
    cluster = _cluster()
    adapters = ex.adapters()
    memo = obs.Memo()
    first = obs.build(cluster.raw(), adapters, ex.DRIVER, memo)
    assert memo.normalised == _NODES
    assert obs.build(cluster.raw(), adapters, ex.DRIVER, memo) == first
    assert memo.normalised == 0
    cluster.slices[3] = _slice(3, unhealthy=True)
    after = obs.build(cluster.raw(), adapters, ex.DRIVER, memo)
    assert memo.normalised == 1
    assert after != first
    assert not next(d for d in after.devices if d.node == "node-3").usable


def test_a_relist_reuses_slices_by_uid_and_resource_version() -> None:
    """A re-list returns new objects: an unchanged uid and resourceVersion is reused, a new
    resourceVersion (any write) is normalised again."""

    def listed(versions: dict[int, str]) -> obs.RawObjects:
        slices = []
        for i in range(_NODES):
            obj = _slice(i, unhealthy=versions.get(i) == "2")
            obj["metadata"] |= {"uid": f"uid-{i}", "resourceVersion": versions.get(i, "1")}
            slices.append(obj)
        return obs.RawObjects(
            nodes=tuple(ex.node(f"node-{i}") for i in range(_NODES)), slices=tuple(slices)
        )

    adapters = ex.adapters()
    memo = obs.Memo()
    obs.build(listed({}), adapters, ex.DRIVER, memo)
    again = obs.build(listed({}), adapters, ex.DRIVER, memo)
    assert memo.normalised == 0
    assert again == obs.build(listed({}), adapters, ex.DRIVER)
    written = obs.build(listed({5: "2"}), adapters, ex.DRIVER, memo)
    assert memo.normalised == 1
    assert written == obs.build(listed({5: "2"}), adapters, ex.DRIVER)

"""ResourceSlices for our driver: one DRA pool per node, one CU device per physical device.

Why one pool per node: a pool is the unit the scheduler treats atomically (generation,
``resourceSliceCount``), so a change on one node must rewrite only that node's slices.

The API limits are enforced here, not discovered at apply time: at most
:data:`MAX_DEVICES` devices per slice, :data:`MAX_DEVICES_ADVANCED` when any device of the
pool carries taints (or counters, which we never publish), and :data:`MAX_ATTRIBUTES`
attributes plus capacities per device.

Generation rule (pools are atomic, see STYLE §7): the live generation is an input. If the
pool's content (every slice's name and spec, generation aside) equals the live pool's
content at its newest generation, keep that generation; otherwise publish ``live max + 1``
on *every* slice of the pool. A new pool starts at 0.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import observed as obs
from reconciler.model import ownership, sharing, units
from reconciler.plan import capacity

API_VERSION = "resource.k8s.io/v1"
MAX_DEVICES = 128
MAX_DEVICES_ADVANCED = 64
MAX_ATTRIBUTES = 32
MAX_NAME = 253
MAX_DEVICE_NAME = 63
CU_CAPACITY = "cu"
NOT_THIS_VENDOR = "cu-reconciler.io/not-this-vendor"
"""Another vendor's uuid attribute on a CU device (docs/double-allocation.md)."""

JsonObject = Mapping[str, Any]


def _digest(text: str, size: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def label_value(text: str) -> str:
    """A label value (at most 63 characters, alphanumeric at both ends)."""
    return text[:63].rstrip("-._")


def slice_name(node: str, index: int) -> str:
    name = f"cu-{node}-{index}"
    if len(name) <= MAX_NAME:
        return name
    return f"cu-{node[: MAX_NAME - 20]}-{_digest(node)}-{index}"


def device_names(devices: Sequence[obs.ObservedDevice]) -> dict[obs.DeviceId, str]:
    """``<vendor>-<vendor device name>``; hashed when too long or ambiguous within the node."""
    wanted = {d.id: f"{d.vendor}-{d.id.device}" for d in devices}
    counts: dict[str, int] = defaultdict(int)
    for name in wanted.values():
        counts[name] += 1
    out = {}
    for did, name in wanted.items():
        if counts[name] > 1 or len(name) > MAX_DEVICE_NAME:
            name = f"{name[:40].rstrip('-')}-{_digest(str(did))}"
        out[did] = name
    return out


def names_by_node(
    pools: Iterable[capacity.PoolCapacity], memo: Memo | None = None
) -> dict[tuple[str, str], obs.DeviceId]:
    """(node, CU device name) → the vendor device it stands for (to read allocations back).
    With ``memo``: the same dict while every pool is the same object, and a node's names
    reused while its devices are the same objects."""
    pools = tuple(pools)
    if memo is not None and memo.names is not None:
        was, names = memo.names
        if len(was) == len(pools) and all(a is b for a, b in zip(was, pools, strict=True)):
            return names
    by_node: dict[str, list[obs.ObservedDevice]] = defaultdict(list)
    for pool in pools:
        for member in pool.members:
            by_node[member.device.node].append(member.device)
    known = memo.node_names if memo is not None else {}
    fresh: dict[str, tuple[tuple[obs.ObservedDevice, ...], dict[tuple[str, str], obs.DeviceId]]]
    fresh = {}
    out = {}
    for node, devices in by_node.items():
        held = tuple(devices)
        hit = known.get(node)
        if (
            hit is None
            or len(hit[0]) != len(held)
            or any(a is not b for a, b in zip(hit[0], held, strict=True))
        ):
            ordered = sorted(held, key=lambda d: d.id)
            hit = (held, {(node, name): did for did, name in device_names(ordered).items()})
        fresh[node] = hit
        out.update(hit[1])
    if memo is not None:
        memo.node_names, memo.names = fresh, (pools, out)
    return out


def uuid_attributes(pool: capacity.PoolCapacity) -> tuple[str, ...]:
    """Every vendor uuid attribute name used in a pool (one per vendor driver)."""
    return tuple(sorted({m.device.uuid_attribute for m in pool.members}))


def cu_device(
    member: capacity.Member,
    name: str,
    pool: capacity.PoolCapacity,
    pool_uuid_attributes: Sequence[str],
) -> dict[str, Any]:
    """One CU device. It carries the vendor's own uuid attribute (same fully qualified name,
    same value) so a claim can ``matchAttribute`` it with the vendor device; in a pool that
    spans vendors it also carries every *other* vendor's uuid attribute set to a sentinel no
    real device has, which makes a mismatched vendor pairing fail the constraint.
    """
    d = member.device
    attributes: dict[str, Any] = {
        "vendor": {"string": d.vendor},
        "model": {"string": d.model},
        "memoryMiB": {"int": d.memory_bytes // 2**20},
        "pool": {"string": pool.name},
        "uuid": {"string": d.uuid[:64]},
        "node": {"string": d.node[:64]},
    }
    if d.driver_version:
        attributes["driverVersion"] = {"string": d.driver_version[:64]}
    for attr in pool_uuid_attributes:
        if attr == d.uuid_attribute:
            attributes[attr] = dict(d.uuid_raw)
        else:
            attributes[attr] = {"string": NOT_THIS_VENDOR}
    cu: dict[str, Any] = {"value": units.format_cu(member.milli_cu)}
    device: dict[str, Any] = {"name": name, "attributes": dict(sorted(attributes.items()))}
    if pool.fractional:
        step = units.format_cu(pool.min_step_milli)
        if member.milli_cu >= 2 * pool.min_step_milli:
            policy: dict[str, Any] = {"default": step, "validRange": {"min": step, "step": step}}
        else:
            policy = {"default": step, "validValues": [step]}
        cu["requestPolicy"] = policy
        device["allowMultipleAllocations"] = True
    device["capacity"] = {CU_CAPACITY: cu}
    taints = [t.to_json() for t in d.taints]
    if not d.healthy:
        taints.append(
            {"key": obs.UNHEALTHY_TAINT_KEY, "effect": "NoSchedule", "timeAdded": obs.STABLE_TIME}
        )
    if taints:
        device["taints"] = taints
    if len(device["attributes"]) + len(device["capacity"]) > MAX_ATTRIBUTES:
        raise ValueError(f"device {name} would carry more than {MAX_ATTRIBUTES} attributes")
    return device


def _content(spec: JsonObject) -> dict[str, Any]:
    """A slice spec without the generation and server-set taint times: the pool's content.

    Compared as values (``==``), not as serialised text: the same verdict for anything a
    slice can hold, at a fraction of the cost at 5,000 pools."""
    pool = {k: v for k, v in (spec.get("pool") or {}).items() if k != "generation"}
    devices = []
    for device in spec.get("devices") or ():
        if device.get("taints"):
            device = dict(device)
            device["taints"] = [
                {k: v for k, v in t.items() if k != "timeAdded"} for t in device["taints"]
            ]
        devices.append(device)
    rest = {k: v for k, v in spec.items() if k not in ("pool", "devices")}
    return {"pool": pool, "devices": devices, **rest}


def _generation(spec: JsonObject) -> int:
    return int((spec.get("pool") or {}).get("generation", 0) or 0)


def _by_name(entry: tuple[str, Any]) -> str:
    return entry[0]


def decide_generation(target: Sequence[tuple[str, JsonObject]], live: Sequence[JsonObject]) -> int:
    """The pool generation rule (module docstring). ``target`` is (name, spec) without a
    generation; ``live`` are the live slices of the same pool."""
    if not live:
        return 0
    newest = max(_generation(o["spec"]) for o in live)
    current = sorted(
        (
            (str(o["metadata"]["name"]), _content(o["spec"]))
            for o in live
            if _generation(o["spec"]) == newest
        ),
        key=_by_name,
    )
    stale = any(_generation(o["spec"]) != newest for o in live)
    wanted = sorted(((name, _content(spec)) for name, spec in target), key=_by_name)
    if not stale and current == wanted:
        return newest
    return newest + 1


@dataclass(slots=True)
class _NodeSlices:
    key: tuple[Any, ...]
    """What the slices are built from, the live slices aside."""
    versions: tuple[tuple[str, str, int], ...]
    """The live slices they were built against (:func:`obs.object_version`)."""
    objects: tuple[dict[str, Any], ...]
    live: tuple[JsonObject, ...]
    """Held only when :attr:`versions` name live slices by identity, so none is reused."""

    def reusable(self, key: tuple[Any, ...], live: Sequence[JsonObject]) -> bool:
        """The same inputs, against the same live slices or against these very objects
        (the previous plan as live: its content is ours at its generation, so the rule
        keeps that generation and the result is these objects again)."""
        if key != self.key:
            return False
        if tuple(obs.object_version(o) for o in live) == self.versions:
            return True
        return len(live) == len(self.objects) and {id(o) for o in live} == {
            id(o) for o in self.objects
        }


@dataclass(slots=True)
class Memo:
    """The slices :func:`build` wrote last time, per node (one pool per node).

    A node's slices are a function of its CU devices (each with its pool's name, sharing
    and uuid attributes), the labels and annotations, and its live slices (for the
    generation): when all of those are what they were, the same objects are returned again
    instead of being rebuilt and compared. Live slices are the same when they have the same
    uid and resourceVersion (the apiserver changes the version on every write), or are the
    same objects (a previous plan's output, which never saw an apiserver; held so that no
    identity is reused). A node not seen by a build is forgotten. The result is always what
    a build without a memo gives (tests/plan/test_incremental.py); callers must not modify
    the returned objects.
    """

    nodes: dict[str, _NodeSlices] = field(default_factory=dict)
    built: int = 0
    """Nodes built by the last :func:`build` (the rest were reused)."""
    names: tuple[tuple[capacity.PoolCapacity, ...], dict[tuple[str, str], obs.DeviceId]] | None = (
        None
    )
    node_names: dict[
        str, tuple[tuple[obs.ObservedDevice, ...], dict[tuple[str, str], obs.DeviceId]]
    ] = field(default_factory=dict)
    """:func:`names_by_node`'s last result with the pools it was for, and each node's part
    with the devices it was for."""


def build(
    pools: Iterable[capacity.PoolCapacity],
    driver: str,
    labels_for: Mapping[str, str],
    annotations: Mapping[str, str],
    live: Iterable[JsonObject],
    *,
    skip_node_operations: bool = False,
    memo: Memo | None = None,
) -> list[dict[str, Any]]:
    """Every slice of our driver, node by node; ``live`` supplies current generations.

    ``skip_node_operations``: the cluster keeps ``skipNodeOperations`` (detected by
    observe/capabilities.py), so the kubelet need not call a plugin for our devices.
    ``memo``: the previous build's nodes (:class:`Memo`); it saves work, never changes
    the result.
    """
    by_node: dict[str, list[tuple[capacity.Member, capacity.PoolCapacity]]] = defaultdict(list)
    for pool in pools:
        for member in pool.members:
            by_node[member.device.node].append((member, pool))
    live_by_pool: dict[str, list[JsonObject]] = defaultdict(list)
    for obj in live:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "ResourceSlice" and spec.get("driver") == driver:
            live_by_pool[str((spec.get("pool") or {}).get("name", ""))].append(obj)
    attrs_by_pool: dict[str, tuple[str, ...]] = {}
    common = (driver, tuple(labels_for.items()), tuple(annotations.items()), skip_node_operations)
    fresh: dict[str, _NodeSlices] = {}
    out: list[dict[str, Any]] = []
    # A memo is held across plans (the controller): what it holds shares its small maps
    # (model/sharing.py: 40,000 devices repeat a handful of attribute values). One table per
    # build, so it never outlives the objects it shared.
    sharer = sharing.Sharer() if memo is not None else None
    for node in sorted(by_node):
        entries = sorted(by_node[node], key=lambda e: e[0].device.id)
        for _, pool in entries:
            if pool.name not in attrs_by_pool:
                attrs_by_pool[pool.name] = uuid_attributes(pool)
        live_here = live_by_pool.get(node, [])
        key = (
            common,
            tuple(
                (m, p.name, p.sharing, p.min_step_milli, attrs_by_pool[p.name]) for m, p in entries
            ),
        )
        known = memo.nodes.get(node) if memo is not None else None
        if known is None or not known.reusable(key, live_here):
            objects = _node_slices(
                node,
                entries,
                attrs_by_pool,
                driver,
                labels_for,
                annotations,
                live_here,
                skip_node_operations,
            )
            if sharer is not None:
                objects = [sharer.share(o) for o in objects]
            versions = tuple(obs.object_version(o) for o in live_here)
            held = tuple(live_here) if any(v[2] for v in versions) else ()
            known = _NodeSlices(key, versions, tuple(objects), held)
        fresh[node] = known
        out.extend(known.objects)
    if memo is not None:
        memo.built = sum(1 for n, v in fresh.items() if memo.nodes.get(n) is not v)
        memo.nodes = fresh
    return out


def _node_slices(
    node: str,
    entries: Sequence[tuple[capacity.Member, capacity.PoolCapacity]],
    attrs_by_pool: Mapping[str, tuple[str, ...]],
    driver: str,
    labels_for: Mapping[str, str],
    annotations: Mapping[str, str],
    live: Sequence[JsonObject],
    skip_node_operations: bool,
) -> list[dict[str, Any]]:
    """One node's pool: its CU devices in slices of at most the API's limit."""
    names = device_names([m.device for m, _ in entries])
    devices = [
        cu_device(member, names[member.device.id], pool, attrs_by_pool[pool.name])
        for member, pool in entries
    ]
    devices.sort(key=lambda d: d["name"])
    limit = MAX_DEVICES_ADVANCED if any("taints" in d for d in devices) else MAX_DEVICES
    chunks = [devices[i : i + limit] for i in range(0, len(devices), limit)]
    specs = []
    for index, chunk in enumerate(chunks):
        spec = {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "resourceSliceCount": len(chunks)},
            "devices": chunk,
        }
        if skip_node_operations:
            spec["skipNodeOperations"] = ["*"]
        specs.append((slice_name(node, index), spec))
    generation = decide_generation(specs, live)
    labels = dict(sorted({**labels_for, ownership.NODE_LABEL: label_value(node)}.items()))
    out = []
    for name, spec in specs:
        spec["pool"] = {
            "name": node,
            "generation": generation,
            "resourceSliceCount": len(chunks),
        }
        out.append(
            {
                "apiVersion": API_VERSION,
                "kind": "ResourceSlice",
                "metadata": {
                    "name": name,
                    "labels": dict(labels),
                    "annotations": dict(annotations),
                },
                "spec": spec,
            }
        )
    return out

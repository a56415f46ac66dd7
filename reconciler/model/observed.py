"""The observed state: vendor devices normalised into one description, nodes and claims.

Pure: :func:`build` maps the raw objects read by :mod:`reconciler.observe` (plain dicts as
the apiserver returns them) and the desired VendorAdapters to an :class:`ObservedState`.
It lives in ``model`` so that both ``observe`` and ``validate`` may call it.

Rules (each a decision, documented in docs/plan.md):

- A device is normalised only through the VendorAdapter of its driver. A driver without an
  adapter, or a device whose model value is not in the adapter's mapping, is *reported* as
  a :class:`Finding`, never guessed.
- Only the newest *complete* generation of each vendor pool counts. A newer generation
  that is still being written (fewer slices than ``resourceSliceCount``) is reported and the
  previous complete one is used; a pool with no complete generation contributes nothing.
  A pool with a duplicate device name is invalid (the scheduler skips it) and is skipped.
- Vendor devices must be node-local (slice ``nodeName``); others are reported.
- Our own driver's slices are not devices: they are owned objects, compared by the diff.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, TypeGuard

from reconciler import _gc
from reconciler.model import documents as docs
from reconciler.model import inventory as inventories
from reconciler.model import ownership, quantity

JsonObject = Mapping[str, Any]

UNHEALTHY_TAINT_KEY = f"{ownership.PREFIX}/unhealthy"
STABLE_TIME = "1970-01-01T00:00:00Z"
"""``timeAdded`` of a taint whose source recorded none (our own unhealthy taint): a fixed
value, so rendering is a pure function of the inputs. Only ``NoExecute`` eviction reads the
time; the taints given this value either carry the vendor's own time or are ``NoSchedule``."""


class FindingCode(StrEnum):
    """Why an observed object was not used as-is. Stable strings: tools match on them."""

    NO_ADAPTER = "NoAdapter"
    UNKNOWN_MODEL = "UnknownModel"
    MISSING_FIELD = "MissingField"
    INCOMPLETE_POOL = "IncompletePool"
    INVALID_POOL = "InvalidPool"
    NOT_NODE_LOCAL = "NotNodeLocal"
    UNKNOWN_NODE = "UnknownNode"
    # Raised by the planner about otherwise valid devices:
    NO_FACTOR = "NoFactor"
    AMBIGUOUS_POOL = "AmbiguousPool"
    BELOW_MIN_STEP = "BelowMinStep"
    NO_KUBELET_PLUGIN = "NoKubeletPlugin"
    DRIVER_MISMATCH = "DriverNameMismatch"
    """A kubelet plugin runs for another driver name than ClusterSettings.spec.driverName:
    the kubelet cannot prepare our claims there (plan exits 1)."""
    FENCE_BYPASS = "FenceBypass"
    """A claim we did not generate tolerates the fence or holds a CU-managed vendor device."""


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One observation the planner could not use; shown in the plan report."""

    code: FindingCode
    subject: str
    message: str

    def render(self) -> str:
        return f"{self.code}: {self.subject}: {self.message}"


class DeviceId(NamedTuple):
    """A DRA device identity: ``<driver>/<pool>/<device>``.

    A named tuple, not a dataclass: admission keeps devices in sorted, bisected lists and
    dicts, and at 40,000 devices the generated Python ``__lt__``/``__eq__``/``__hash__`` of a
    dataclass were an eighth of the plan; a tuple compares in C, in the same order."""

    driver: str
    pool: str
    device: str

    def __str__(self) -> str:
        return f"{self.driver}/{self.pool}/{self.device}"


@dataclass(frozen=True, slots=True, order=True)
class DeviceTaint:
    key: str
    value: str
    effect: str
    time_added: str = ""
    """The vendor's ``timeAdded`` (RFC 3339), or empty when the source did not record one."""

    @property
    def blocks(self) -> bool:
        """A taint that keeps new allocations off the device."""
        return self.effect in ("NoSchedule", "NoExecute")

    def to_json(self) -> dict[str, str]:
        """The taint as published on our CU device, always with a ``timeAdded``.

        The apiserver fills in an unset ``timeAdded`` with the current time, and a slice's
        device list is replaced whole on every apply, so a taint rendered without one would
        get a new time on each write and never compare equal in a GitOps engine's diff.
        """
        out = {"key": self.key, "effect": self.effect, "timeAdded": self.time_added or STABLE_TIME}
        if self.value:
            out["value"] = self.value
        return out


@dataclass(frozen=True, slots=True)
class ObservedDevice:
    """One physical device in the common description."""

    id: DeviceId
    node: str
    vendor: str
    model: str
    memory_bytes: int
    uuid: str
    uuid_attribute: str
    """The vendor's fully qualified attribute holding ``uuid`` (e.g. ``gpu.nvidia.com/uuid``)."""
    uuid_raw: tuple[tuple[str, Any], ...]
    """The vendor's DeviceAttribute, e.g. ``(("string", "GPU-1"),)``; copied verbatim."""
    healthy: bool = True
    taints: tuple[DeviceTaint, ...] = ()
    driver_version: str | None = None
    pcie_root: str | None = None

    @property
    def usable(self) -> bool:
        """Healthy and not tainted against new allocations by its vendor."""
        return self.healthy and not any(t.blocks for t in self.taints)


@dataclass(frozen=True, slots=True)
class ObservedNode:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, order=True)
class AllocatedDevice:
    request: str
    driver: str
    pool: str
    device: str
    consumed_cu: str | None = None


@dataclass(frozen=True, slots=True)
class ObservedClaim:
    """A ResourceClaim as far as CU accounting cares: where it is allocated, who uses it."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    allocated: tuple[AllocatedDevice, ...] = ()
    reserved_for: tuple[str, ...] = ()
    tolerated: tuple[str, ...] = ()
    """Taint keys its requests tolerate; ``*`` for a toleration of every key."""
    uid: str = ""
    classes: tuple[str, ...] = ()
    """Every DeviceClass its requests and sub-requests name."""
    spec_digest: str = ""
    """:func:`spec_digest` of its spec: a claim stamped from our template has the template's."""

    @property
    def in_use(self) -> bool:
        return bool(self.reserved_for)


def spec_digest(spec: Any) -> str:
    """A digest of a claim spec, to tell a claim stamped from a template by its content."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _classes(spec: JsonObject) -> tuple[str, ...]:
    names: set[str] = set()
    for request in (spec.get("devices") or {}).get("requests") or ():
        if not _is_map(request):
            continue
        for sub in [request.get("exactly") or {}, *(request.get("firstAvailable") or ())]:
            if _is_map(sub) and sub.get("deviceClassName"):
                names.add(str(sub["deviceClassName"]))
    return tuple(sorted(names))


@dataclass(frozen=True, slots=True)
class RawObjects:
    """What the I/O edge read, untouched: plain dicts in apiserver JSON shape."""

    nodes: tuple[JsonObject, ...] = ()
    slices: tuple[JsonObject, ...] = ()
    claims: tuple[JsonObject, ...] = ()
    owned: tuple[JsonObject, ...] = ()
    """Candidates for the diff's live side: objects of every kind we render carrying our
    managed-by label, and every object of the fence's admission kinds (a hand edit may strip
    the label); which are ours is decided by :meth:`ObservedState.ours`."""
    plugin_leases: tuple[JsonObject, ...] = ()
    """The kubelet plugin's presence Leases (model/presence.py)."""
    read_at: float | None = None
    """When a live cluster was read (epoch seconds); None for snapshots (presence unknown)."""
    skip_node_operations: bool = False
    """The cluster keeps ``skipNodeOperations`` on slices (DRAOptionalNodeOperations on)."""
    inventories: Mapping[str, Mapping[str, str]] | None = None
    """ConfigMap name → data of the inventories in the reconciler namespace
    (:mod:`reconciler.model.inventory`); None when the source cannot tell (a snapshot)."""


@dataclass(frozen=True, slots=True)
class ObservedState:
    nodes: tuple[ObservedNode, ...] = ()
    devices: tuple[ObservedDevice, ...] = ()
    claims: tuple[ObservedClaim, ...] = ()
    owned: tuple[JsonObject, ...] = ()
    findings: tuple[Finding, ...] = ()
    skip_node_operations: bool = False
    """Our slices may ask the kubelet to skip node operations (model/presence.py)."""
    inventory: inventories.Inventory | None = None
    """The uids we created (a live cluster); None: ownership falls back to our marks, as for
    a snapshot, which holds no uids we could trust."""

    def ours(self, obj: JsonObject) -> bool:
        """Whether ``obj`` is ours: in the inventory, or (no inventory) wearing our label."""
        if self.inventory is not None:
            return self.inventory.owns(obj)
        return ownership.is_owned(obj)


# ------------------------------------------------------------------------------ helpers


def _is_map(value: object) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, with parsed JSON's dict first: the ABC check costs
    ten times more and runs for every field of 40,000 devices."""
    return type(value) is dict or isinstance(value, Mapping)


def _meta(obj: JsonObject) -> JsonObject:
    meta = obj.get("metadata")
    return meta if _is_map(meta) else {}


def _spec(obj: JsonObject) -> JsonObject:
    spec = obj.get("spec")
    return spec if _is_map(spec) else {}


def qualify(name: str, driver: str) -> str:
    """A DRA attribute name, fully qualified: short names take the driver's domain."""
    return name if "/" in name else f"{driver}/{name}"


def _lookup(table: Mapping[str, Any], name: str, driver: str) -> Any:
    """Find an attribute or capacity by qualified name; the driver's own may be stored short."""
    full = qualify(name, driver)
    domain, _, short = full.rpartition("/")
    if full in table:
        return table[full]
    if domain == driver and short in table:
        return table[short]
    return None


def filter_matches(attr: Any, wanted: str | int | bool) -> bool:
    """Does a DRA attribute equal a filter value, as CEL's ``==`` decides it?

    CEL compares typed values: an int attribute ``0`` is not the string ``"0"`` (comparing
    them is a type error, so the device is not selected), a version attribute is not a
    string, ``true`` is not ``"true"``. The planner must agree with the DeviceClass it
    writes, or it would count devices the scheduler never gives out.
    """
    if not _is_map(attr):
        return False
    if isinstance(wanted, bool):
        return "bool" in attr and attr["bool"] is wanted
    if isinstance(wanted, int):
        value = attr.get("int")
        return "int" in attr and not isinstance(value, bool) and value == wanted
    return "string" in attr and attr["string"] == wanted


def _attribute_value(attr: Any) -> Any:
    if not _is_map(attr):
        return None
    for kind in ("string", "int", "bool", "version"):
        if kind in attr:
            return attr[kind]
    return None


def _field(
    source: docs.FieldSource, device: JsonObject, driver: str
) -> tuple[Any, tuple[tuple[str, Any], ...]]:
    """The raw value of a mapped field, and the verbatim attribute (for attributes)."""
    if source.attribute is not None:
        raw = _lookup(device.get("attributes") or {}, source.attribute, driver)
        value = _attribute_value(raw)
        verbatim = tuple(sorted(raw.items())) if _is_map(raw) else ()
        return value, verbatim
    assert source.capacity is not None
    cap = _lookup(device.get("capacity") or {}, source.capacity, driver)
    return (cap.get("value") if _is_map(cap) else None), ()


def _memory_bytes(source: docs.FieldSource, value: Any) -> int | None:
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            unit = source.unit.bytes if source.unit is not None else 1
            return int(quantity.parse_quantity(value) * unit)
        return _scaled(str(value), source.unit.bytes if source.unit is not None else 1)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _scaled(text: str, unit: int) -> int:
    """``text × unit`` as an int, cached: every device of a model repeats the same memory
    quantity, and exact Fraction arithmetic per device was most of observe at 40,000."""
    return int(quantity.parse_quantity(text) * unit)


def _mapped(source: docs.FieldSource, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if source.values:
        return source.values.get(text)
    return text


def _taints(device: JsonObject) -> tuple[DeviceTaint, ...]:
    out = []
    for taint in device.get("taints") or ():
        if _is_map(taint) and taint.get("key"):
            out.append(
                DeviceTaint(
                    key=str(taint["key"]),
                    value=str(taint.get("value") or ""),
                    effect=str(taint.get("effect") or "NoSchedule"),
                    time_added=str(taint.get("timeAdded") or ""),
                )
            )
    return tuple(sorted(out))


def normalize_device(
    adapter: docs.VendorAdapter, pool: str, node: str, device: JsonObject
) -> ObservedDevice | Finding | None:
    """One vendor device through its adapter: a device, a Finding, or None (filtered out)."""
    spec = adapter.spec
    driver = spec.driver
    name = str(device.get("name", ""))
    did = DeviceId(driver, pool, name)
    attributes = device.get("attributes") or {}
    for key, wanted in sorted(spec.device_filter.items()):
        if not filter_matches(_lookup(attributes, key, driver), wanted):
            return None
    mapping = spec.mapping
    raw_model, _ = _field(mapping.model, device, driver)
    model = _mapped(mapping.model, raw_model)
    if model is None:
        if raw_model is None:
            return Finding(FindingCode.MISSING_FIELD, str(did), "no model field in the device")
        return Finding(
            FindingCode.UNKNOWN_MODEL,
            str(did),
            f"model {raw_model!r} is not in VendorAdapter/{adapter.metadata.name}'s mapping",
        )
    raw_memory, _ = _field(mapping.memory, device, driver)
    memory = _memory_bytes(mapping.memory, raw_memory)
    if memory is None:
        return Finding(FindingCode.MISSING_FIELD, str(did), "no readable memory field")
    if mapping.uuid.attribute is None:
        return Finding(FindingCode.MISSING_FIELD, str(did), "the uuid must come from an attribute")
    raw_uuid, uuid_verbatim = _field(mapping.uuid, device, driver)
    if raw_uuid is None:
        return Finding(FindingCode.MISSING_FIELD, str(did), "no uuid attribute")
    healthy = True
    if mapping.health is not None:
        value = _attribute_value(_lookup(attributes, mapping.health.attribute, driver))
        if value is not None:
            healthy = value in mapping.health.healthy_values
    driver_version = None
    if mapping.driver_version is not None:
        driver_version = _mapped(
            mapping.driver_version, _field(mapping.driver_version, device, driver)[0]
        )
    pcie_root = None
    if mapping.pcie_root is not None:
        pcie_root = _mapped(mapping.pcie_root, _field(mapping.pcie_root, device, driver)[0])
    return ObservedDevice(
        id=did,
        node=node,
        vendor=spec.vendor,
        model=model,
        memory_bytes=memory,
        uuid=str(raw_uuid),
        uuid_attribute=qualify(mapping.uuid.attribute, driver),
        uuid_raw=uuid_verbatim,
        healthy=healthy,
        taints=_taints(device),
        driver_version=driver_version,
        pcie_root=pcie_root,
    )


def _slice_pool(obj: JsonObject) -> tuple[str, int, int]:
    pool = _spec(obj).get("pool") or {}
    return (
        str(pool.get("name", "")),
        int(pool.get("generation", 0) or 0),
        int(pool.get("resourceSliceCount", 1) or 1),
    )


def select_generation(
    driver: str, pool: str, slices: Sequence[JsonObject]
) -> tuple[tuple[JsonObject, ...], tuple[Finding, ...]]:
    """The slices of the newest complete generation of one pool, and what was wrong.

    Complete = as many slices at that generation as each of them announces in
    ``resourceSliceCount`` (and they agree). Older generations are consulted only when the
    newest one is still being written, so capacity does not flap during a driver's rollout.
    """
    subject = f"{driver}/{pool}"
    by_generation: dict[int, list[JsonObject]] = defaultdict(list)
    for obj in slices:
        by_generation[_slice_pool(obj)[1]].append(obj)
    findings: list[Finding] = []
    for generation in sorted(by_generation, reverse=True):
        members = sorted(by_generation[generation], key=lambda o: str(_meta(o).get("name", "")))
        counts = {_slice_pool(o)[2] for o in members}
        if len(counts) == 1 and len(members) == counts.pop():
            names = [
                str(d.get("name", ""))
                for o in members
                for d in (_spec(o).get("devices") or ())
                if _is_map(d)
            ]
            if len(names) != len(set(names)):
                dupes = sorted({n for n in names if names.count(n) > 1})
                findings.append(
                    Finding(
                        FindingCode.INVALID_POOL,
                        subject,
                        f"generation {generation} repeats device names {', '.join(dupes)}; "
                        "the pool is skipped",
                    )
                )
                return (), tuple(findings)
            return tuple(members), tuple(findings)
        announced = max(_slice_pool(o)[2] for o in members)
        findings.append(
            Finding(
                FindingCode.INCOMPLETE_POOL,
                subject,
                f"generation {generation} has {len(members)} of {announced} slices",
            )
        )
    return (), tuple(findings)


def _node(obj: JsonObject) -> ObservedNode:
    meta = _meta(obj)
    labels = meta.get("labels") or {}
    return ObservedNode(name=str(meta.get("name", "")), labels=dict(sorted(labels.items())))


def _claim(obj: JsonObject) -> ObservedClaim:
    meta = _meta(obj)
    status = obj.get("status") or {}
    allocation = status.get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or ()
    allocated = []
    for result in results:
        consumed = (result.get("consumedCapacity") or {}).get("cu")
        allocated.append(
            AllocatedDevice(
                request=str(result.get("request", "")),
                driver=str(result.get("driver", "")),
                pool=str(result.get("pool", "")),
                device=str(result.get("device", "")),
                consumed_cu=None if consumed is None else str(consumed),
            )
        )
    reserved = sorted(
        f"{r.get('resource', 'pods')}/{r.get('name', '')}" for r in status.get("reservedFor") or ()
    )
    return ObservedClaim(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        labels=dict(sorted((meta.get("labels") or {}).items())),
        allocated=tuple(sorted(allocated)),
        reserved_for=tuple(reserved),
        tolerated=_tolerated(obj.get("spec") or {}),
        uid=str(meta.get("uid") or ""),
        classes=_classes(obj.get("spec") or {}),
        spec_digest=spec_digest(obj.get("spec") or {}),
    )


def _tolerated(spec: JsonObject) -> tuple[str, ...]:
    """Every taint key a claim's requests tolerate (``*``: an empty key with Exists)."""
    keys: set[str] = set()
    for request in (spec.get("devices") or {}).get("requests") or ():
        if not _is_map(request):
            continue
        subs = [request.get("exactly") or {}, *(request.get("firstAvailable") or ())]
        for sub in subs:
            for t in (sub.get("tolerations") or ()) if _is_map(sub) else ():
                if _is_map(t):
                    key = str(t.get("key") or "")
                    keys.add(key if key else ("*" if t.get("operator") == "Exists" else ""))
    keys.discard("")
    return tuple(sorted(keys))


def _pick_adapters(adapters: Iterable[docs.VendorAdapter]) -> dict[str, docs.VendorAdapter]:
    """One adapter per driver; with duplicates the first by name wins (validate reports it)."""
    out: dict[str, docs.VendorAdapter] = {}
    for adapter in sorted(adapters, key=lambda a: a.metadata.name):
        out.setdefault(adapter.spec.driver, adapter)
    return out


@dataclass(slots=True)
class _PoolResult:
    """One vendor pool normalised, and the inputs it was normalised from (by identity)."""

    slices: tuple[JsonObject, ...]
    """Held when :attr:`keys` are identities, so one is never reused by another object."""
    nodes_known: tuple[bool, ...]
    adapter: docs.VendorAdapter | None
    devices: list[ObservedDevice]
    findings: list[Finding]
    unadapted: list[str]
    keys: tuple[tuple[str, str, int], ...] = ()


def object_version(obj: JsonObject) -> tuple[str, str, int]:
    """What identifies one version of a slice: its uid and resourceVersion (the apiserver
    changes the resourceVersion on every write, so a re-list of an unchanged slice matches),
    else, for objects that never saw an apiserver (snapshots, tests), the object itself."""
    meta = _meta(obj)
    uid, version = meta.get("uid"), meta.get("resourceVersion")
    if isinstance(uid, str) and uid and isinstance(version, str) and version:
        return (uid, version, 0)
    return ("", "", id(obj))


@dataclass(slots=True)
class Memo:
    """What :func:`build` normalised last time, per vendor pool (a node's slices, usually).

    The controller keeps one: on a node or slice event only the pools whose slices changed
    (another uid or resourceVersion: :func:`object_version`), whose nodes appeared or vanished, or
    whose adapter changed are normalised again; the rest is reused. The result is the same
    :class:`ObservedState` a fresh :func:`build` returns (tests/model/test_observe_memo.py).
    Holds the slices it keyed by identity (never those keyed by uid and resourceVersion),
    so an identity can never be reused."""

    pools: dict[tuple[str, str], _PoolResult] = field(default_factory=dict)
    driver_name: str = ""
    normalised: int = 0
    """Pools normalised by the last :func:`build` (0 when everything was reused)."""


def build(
    raw: RawObjects,
    adapters: Iterable[docs.VendorAdapter],
    driver_name: str,
    memo: Memo | None = None,
) -> ObservedState:
    """Normalise everything read from a cluster or snapshot. Deterministic in input order;
    ``memo`` only saves work (above), it never changes the result. Like planning, it runs
    with the cyclic collector paused (:mod:`reconciler._gc`): at 40,000 devices the
    collections it triggered found nothing and were a third of its time."""
    with _gc.paused():
        return _build(raw, adapters, driver_name, memo)


def _build(
    raw: RawObjects,
    adapters: Iterable[docs.VendorAdapter],
    driver_name: str,
    memo: Memo | None,
) -> ObservedState:
    by_driver = _pick_adapters(adapters)
    nodes = tuple(sorted((_node(n) for n in raw.nodes), key=lambda n: n.name))
    node_names = {n.name for n in nodes}
    findings: list[Finding] = []
    pools: dict[tuple[str, str], list[JsonObject]] = defaultdict(list)
    for obj in raw.slices:
        spec = _spec(obj)
        driver = str(spec.get("driver", ""))
        if driver == driver_name:
            continue
        pools[(driver, _slice_pool(obj)[0])].append(obj)
    devices: list[ObservedDevice] = []
    unadapted: dict[str, list[str]] = defaultdict(list)
    if memo is not None and memo.driver_name != driver_name:
        memo.pools.clear()
        memo.driver_name = driver_name
    fresh: dict[tuple[str, str], _PoolResult] = {}
    for (driver, pool), members in sorted(pools.items()):
        adapter = by_driver.get(driver)
        known = tuple(
            bool(not node_names or str(_spec(o).get("nodeName") or "") in node_names)
            for o in members
        )
        keys = tuple(object_version(o) for o in members)
        cached = memo.pools.get((driver, pool)) if memo is not None else None
        if (
            cached is None
            or cached.adapter != adapter
            or cached.nodes_known != known
            or cached.keys != keys
        ):
            cached = _normalise_pool(driver, pool, members, adapter, node_names)
            # Held only where identity is the key (no apiserver versions): a live cluster's
            # slices are keyed by uid and resourceVersion, so the memo need not keep them.
            cached.slices = tuple(members) if any(k[2] for k in keys) else ()
            cached.nodes_known = known
            cached.keys = keys
        fresh[(driver, pool)] = cached
        devices += cached.devices
        findings += cached.findings
        if cached.unadapted:
            unadapted[driver] += cached.unadapted
    if memo is not None:
        memo.normalised = sum(1 for k, v in fresh.items() if memo.pools.get(k) is not v)
        memo.pools = fresh
    return _assemble(raw, nodes, devices, findings, unadapted)


def _normalise_pool(
    driver: str,
    pool: str,
    members: Sequence[JsonObject],
    adapter: docs.VendorAdapter | None,
    node_names: Set[str],
) -> _PoolResult:
    """One vendor pool: its newest complete generation through its adapter."""
    devices: list[ObservedDevice] = []
    unadapted: dict[str, list[str]] = defaultdict(list)
    chosen, pool_findings = select_generation(driver, pool, members)
    findings: list[Finding] = list(pool_findings)
    for obj in chosen:
        spec = _spec(obj)
        node = spec.get("nodeName")
        slice_devices = [d for d in spec.get("devices") or () if _is_map(d)]
        if adapter is None:
            unadapted[driver].extend(f"{pool}/{d.get('name', '')}" for d in slice_devices)
            continue
        if not node:
            if slice_devices:
                findings.append(
                    Finding(
                        FindingCode.NOT_NODE_LOCAL,
                        f"{driver}/{pool}",
                        f"slice {_meta(obj).get('name', '')} is not node-local "
                        "(no spec.nodeName); its devices are not managed",
                    )
                )
            continue
        if node_names and node not in node_names:
            findings.append(
                Finding(
                    FindingCode.UNKNOWN_NODE,
                    f"{driver}/{pool}",
                    f"node {node} of slice {_meta(obj).get('name', '')} does not exist",
                )
            )
            continue
        for device in slice_devices:
            result = normalize_device(adapter, pool, str(node), device)
            if isinstance(result, ObservedDevice):
                devices.append(result)
            elif isinstance(result, Finding):
                findings.append(result)
    return _PoolResult((), (), adapter, devices, findings, unadapted.get(driver, []))


def _assemble(
    raw: RawObjects,
    nodes: tuple[ObservedNode, ...],
    devices: list[ObservedDevice],
    findings: list[Finding],
    unadapted: Mapping[str, list[str]],
) -> ObservedState:
    """Everything but the vendor pools: the adapter findings, claims and owned objects."""
    for driver, names in sorted(unadapted.items()):
        shown = ", ".join(sorted(names)[:5]) + (" …" if len(names) > 5 else "")
        findings.append(
            Finding(
                FindingCode.NO_ADAPTER,
                driver,
                f"{len(names)} device(s) have no VendorAdapter and are not managed: {shown}",
            )
        )
    claims = tuple(sorted((_claim(c) for c in raw.claims), key=lambda c: (c.namespace, c.name)))
    # Deduplicated by identity: a source may list an owned object twice (slices are read
    # both as devices and as ours); the first copy wins.
    unique: dict[tuple[str, str, str, str], JsonObject] = {}
    # Candidates, not yet ours: plan keeps those :meth:`ObservedState.ours` accepts.
    for o in raw.owned:
        key = (
            str(o.get("apiVersion", "")),
            str(o.get("kind", "")),
            str(_meta(o).get("namespace", "")),
            str(_meta(o).get("name", "")),
        )
        unique.setdefault(key, o)
    owned = tuple(unique[k] for k in sorted(unique))
    return ObservedState(
        nodes=nodes,
        devices=tuple(sorted(devices, key=lambda d: d.id)),
        claims=claims,
        owned=owned,
        findings=tuple(sorted(findings)),
    )

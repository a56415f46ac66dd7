"""Play vendor DRA drivers: publish, change and withdraw per-node ResourceSlices.

A real DRA driver runs on each node and publishes that node's devices as one resource pool:
pool name = node name, ``spec.nodeName`` set, one or more slices that share the pool's
``generation`` and ``resourceSliceCount``. This module writes the same objects from the test
process, so the scheduler, our observer and our publisher see what they would see in a cluster.

Vendors and their driver names (the contract the vendor adapters are written against)::

    vendor    driver                    devices  notable shape
    nvidia    gpu.nvidia.com            gpu-N    real name (NVIDIA's DRA driver); capacity memory
    biren     gpu.biren.example.com     gpu-N    PLACEHOLDER name; capacity memory
    iluvatar  gpu.iluvatar.example.com  gpu-N    PLACEHOLDER; memory only as int attribute memoryMiB
    hygon     dcu.hygon.example.com     dcu-N    PLACEHOLDER; capacity vram, bool attribute healthy
    ascend    npu.ascend.example.com    npu-N    PLACEHOLDER; int attribute hbmMB, string health

Biren, Iluvatar CoreX, Hygon and Huawei Ascend publish no DRA driver that we know of, so their
driver names under ``example.com`` are invented, and their attribute names imitate what each
vendor's own tools call things (deliberately different from NVIDIA's and from each other's).
Device uuids are derived from (vendor, node, index), so every run publishes identical slices.

Pool writes follow the reference publisher (k8s.io/dynamic-resource-allocation
``resourceslice.syncPool``): any change to a pool's devices bumps the generation in all of its
slices; obsolete slices are deleted first (with UID and resourceVersion preconditions), then
matched slices are updated and missing ones created; an unchanged pool writes nothing.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

from reconciler.devcluster import rawapi

SLICES_PATH = "/apis/resource.k8s.io/v1/resourceslices"
DEVICE_CLASSES_PATH = "/apis/resource.k8s.io/v1/deviceclasses"
PCIE_ROOT = "resource.kubernetes.io/pcieRoot"
#: Largest number of devices per slice (64 when devices have taints; see the research notes).
MAX_DEVICES_PER_SLICE = 64
_UUID_NAMESPACE = uuid.UUID("6f1c3a52-8a4e-4c3e-9d6b-2f0c1de0c0de")
_PCIE_BUSES = ("00", "40", "80", "c0")  # two devices per root complex, four roots


class Vendor(enum.StrEnum):
    NVIDIA = "nvidia"
    BIREN = "biren"
    ILUVATAR = "iluvatar"
    HYGON = "hygon"
    ASCEND = "ascend"


@dataclass(frozen=True, slots=True)
class Model:
    """One accelerator model as the vendor's driver would describe it."""

    name: str  # the value of the vendor's model attribute, e.g. "NVIDIA H100 80GB HBM3"
    memory_mib: int
    compute_capability: str | None = None  # NVIDIA only, a semver string


@dataclass(frozen=True, slots=True)
class VendorDriver:
    """How one vendor's (real or simulated) DRA driver names and describes devices."""

    vendor: Vendor
    driver: str
    device_prefix: str
    placeholder: bool  # True: the driver name is invented here, no public driver exists
    version_attribute: str | None  # attribute that a driver update changes
    default_version: str | None
    memory_capacity: str | None  # capacity name for device memory, None if only an attribute
    models: Mapping[str, Model]


DRIVERS: Mapping[Vendor, VendorDriver] = {
    Vendor.NVIDIA: VendorDriver(
        vendor=Vendor.NVIDIA,
        driver="gpu.nvidia.com",
        device_prefix="gpu",
        placeholder=False,
        version_attribute="driverVersion",
        default_version="570.124.6",
        memory_capacity="memory",
        models={
            "H100": Model("NVIDIA H100 80GB HBM3", 81920, "9.0.0"),
            "A100": Model("NVIDIA A100-SXM4-80GB", 81920, "8.0.0"),
            "L40S": Model("NVIDIA L40S", 46068, "8.9.0"),
        },
    ),
    Vendor.BIREN: VendorDriver(
        vendor=Vendor.BIREN,
        driver="gpu.biren.example.com",
        device_prefix="gpu",
        placeholder=True,
        version_attribute="firmwareVersion",
        default_version="1.6.0",
        memory_capacity="memory",
        models={"BR104": Model("BR104", 32768), "BR100": Model("BR100", 65536)},
    ),
    Vendor.ILUVATAR: VendorDriver(
        vendor=Vendor.ILUVATAR,
        driver="gpu.iluvatar.example.com",
        device_prefix="gpu",
        placeholder=True,
        version_attribute="driverVersion",
        default_version="3.4.0",
        memory_capacity=None,
        models={"BI-V100": Model("BI-V100", 32768), "BI-V150": Model("BI-V150", 65536)},
    ),
    Vendor.HYGON: VendorDriver(
        vendor=Vendor.HYGON,
        driver="dcu.hygon.example.com",
        device_prefix="dcu",
        placeholder=True,
        version_attribute=None,
        default_version=None,
        memory_capacity="vram",
        models={"Z100": Model("Z100", 32768), "K100": Model("K100", 65536)},
    ),
    Vendor.ASCEND: VendorDriver(
        vendor=Vendor.ASCEND,
        driver="npu.ascend.example.com",
        device_prefix="npu",
        placeholder=True,
        version_attribute=None,
        default_version=None,
        memory_capacity=None,
        models={"910B2": Model("910B2", 65536), "910B3": Model("910B3", 65536)},
    ),
}

#: The requestPolicy given to the memory capacity of a shared device unless overridden:
#: any whole number of GiB, 1 GiB by default.
DEFAULT_REQUEST_POLICY: Mapping[str, Any] = {
    "default": "1Gi",
    "validRange": {"min": "1Gi", "step": "1Gi"},
}


@dataclass(frozen=True, slots=True)
class PoolState:
    """What a pool looks like after a write: enough for a test to assert on."""

    driver: str
    pool: str
    generation: int
    slices: tuple[str, ...]
    devices: tuple[str, ...]
    writes: int  # API writes this call made (0 = the pool was already as desired)

    @property
    def resource_slice_count(self) -> int:
        return len(self.slices)


def vendor_driver(vendor: Vendor | str) -> VendorDriver:
    """The driver description of ``vendor`` (a :class:`Vendor` or its value)."""
    return DRIVERS[Vendor(vendor)]


def device_uuid(vendor: Vendor | str, node: str, index: int) -> str:
    """Deterministic uuid of device ``index`` on ``node`` (same inputs, same uuid)."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{Vendor(vendor).value}/{node}/{index}"))


def pcie_root(index: int) -> str:
    """PCIe root complex of device ``index``: two devices per root, as on common 8-GPU boards."""
    return f"pci0000:{_PCIE_BUSES[(index // 2) % len(_PCIE_BUSES)]}"


def build_devices(
    vendor: Vendor | str,
    node: str,
    model: str,
    count: int,
    *,
    version: str | None = None,
    shared: bool = False,
    request_policy: Mapping[str, Any] | None = None,
    taints: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    unhealthy: Collection[int] = (),
) -> list[dict[str, Any]]:
    """The ``spec.devices`` entries a vendor's driver would publish for ``node`` (pure)."""
    spec = vendor_driver(vendor)
    m = _model(spec, model)
    version = version or spec.default_version
    devices = []
    for i in range(count):
        attrs = _attributes(spec, m, node, i, version, healthy=i not in unhealthy)
        attrs[PCIE_ROOT] = {"string": pcie_root(i)}
        dev: dict[str, Any] = {"name": f"{spec.device_prefix}-{i}", "attributes": attrs}
        if spec.memory_capacity:
            cap: dict[str, Any] = {"value": f"{m.memory_mib // 1024}Gi"}
            if shared:
                cap["requestPolicy"] = dict(request_policy or DEFAULT_REQUEST_POLICY)
            dev["capacity"] = {spec.memory_capacity: cap}
        if shared:
            dev["allowMultipleAllocations"] = True
        if taints and i in taints:
            dev["taints"] = [dict(t) for t in taints[i]]
        devices.append(dev)
    return devices


def publish_node(
    api: ApiClient,
    node_name: str,
    vendor: Vendor | str,
    model: str,
    count: int,
    *,
    driver_version: str | None = None,
    shared: bool = False,
    request_policy: Mapping[str, Any] | None = None,
    taints: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
    unhealthy: Collection[int] = (),
    devices_per_slice: int = MAX_DEVICES_PER_SLICE,
) -> PoolState:
    """Publish (or re-publish) ``count`` devices of ``model`` as the pool of ``node_name``.

    ``shared`` makes every device ``allowMultipleAllocations`` with ``request_policy`` (default
    :data:`DEFAULT_REQUEST_POLICY`) on its memory capacity. ``taints`` maps a device index to
    its taints; ``unhealthy`` lists indices whose health attribute says so (Hygon, Ascend).
    Calling again with other arguments changes the pool like a driver would (generation + 1);
    calling with ``count=0`` withdraws it.
    """
    spec = vendor_driver(vendor)
    devices = build_devices(
        vendor,
        node_name,
        model,
        count,
        version=driver_version,
        shared=shared,
        request_policy=request_policy,
        taints=taints,
        unhealthy=unhealthy,
    )
    return sync_pool(api, spec.driver, node_name, devices, devices_per_slice=devices_per_slice)


def update_driver(
    api: ApiClient,
    node_name: str,
    vendor: Vendor | str,
    *,
    driver_version: str | None = None,
    attributes: Mapping[str, Mapping[str, Any]] | None = None,
) -> PoolState:
    """Simulate a driver upgrade on ``node_name``: change attributes of every device in the pool.

    ``driver_version`` sets the vendor's version attribute (``driverVersion`` or
    ``firmwareVersion``; Hygon and Ascend publish none, so it is an error for them);
    ``attributes`` sets any other attributes, e.g. ``{"health": {"string": "Unhealthy"}}``.
    All slices of the pool move to the next generation together.
    """
    spec = vendor_driver(vendor)
    changes = dict(attributes or {})
    if driver_version is not None:
        if spec.version_attribute is None:
            raise ValueError(f"{spec.vendor} devices carry no driver version attribute")
        changes[spec.version_attribute] = {"version": driver_version}
    existing = list_pool(api, spec.driver, node_name)
    if not existing:
        raise LookupError(f"no ResourceSlices of {spec.driver} for node {node_name}")
    devices = [d for s in existing for d in s["spec"].get("devices", [])]
    for dev in devices:
        dev["attributes"] = {**dev.get("attributes", {}), **changes}
    per_slice = max(len(s["spec"].get("devices", [])) for s in existing) or MAX_DEVICES_PER_SLICE
    return sync_pool(api, spec.driver, node_name, devices, devices_per_slice=per_slice)


def withdraw_node(api: ApiClient, node_name: str, vendor: Vendor | str | None = None) -> int:
    """Delete the pool(s) of ``node_name`` (one vendor, or every simulated vendor).

    This is what a node loss or a driver uninstall looks like to the scheduler. Returns the
    number of slices deleted.
    """
    vendors = [Vendor(vendor)] if vendor is not None else list(Vendor)
    deleted = 0
    for v in vendors:
        state = sync_pool(api, DRIVERS[v].driver, node_name, [])
        deleted += state.writes
    return deleted


def list_pool(api: ApiClient, driver: str, pool: str) -> list[dict[str, Any]]:
    """The ResourceSlices of ``driver`` whose pool is ``pool`` (here: the node name)."""
    body = rawapi.request(
        api,
        "GET",
        SLICES_PATH,
        query={"fieldSelector": f"spec.driver={driver},spec.nodeName={pool}"},
    )
    items = [s for s in body.get("items", []) if s["spec"]["pool"]["name"] == pool]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def sync_pool(
    api: ApiClient,
    driver: str,
    node_name: str,
    devices: Sequence[Mapping[str, Any]],
    *,
    devices_per_slice: int = MAX_DEVICES_PER_SLICE,
    field_manager: str | None = None,
) -> PoolState:
    """Make the node-local pool ``node_name`` of ``driver`` hold exactly ``devices``.

    Generation rule: keep the current generation if every desired slice already exists with
    the same devices; otherwise bump it in all slices. Write order, as upstream: delete obsolete
    slices first (better to lose devices the driver no longer has than to advertise them),
    then update matched slices, then create missing ones.
    """
    if devices_per_slice < 1:
        raise ValueError("devices_per_slice must be positive")
    manager = field_manager or f"devcluster-driver-{driver}"
    existing = {s["metadata"]["name"]: s for s in list_pool(api, driver, node_name)}
    chunks = [
        list(devices[i : i + devices_per_slice]) for i in range(0, len(devices), devices_per_slice)
    ]
    desired = {_slice_name(node_name, driver, i): chunk for i, chunk in enumerate(chunks)}
    generation = max((s["spec"]["pool"]["generation"] for s in existing.values()), default=0)
    unchanged = existing.keys() == desired.keys() and all(
        s["spec"]["pool"]
        == {"name": node_name, "generation": generation, "resourceSliceCount": len(desired)}
        and _same_devices(desired[name], s["spec"].get("devices", []))
        for name, s in existing.items()
    )
    writes = 0
    if not unchanged:
        generation += 1
        for name in sorted(existing.keys() - desired.keys()):
            meta = existing[name]["metadata"]
            precondition = {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]}
            if rawapi.delete(api, f"{SLICES_PATH}/{name}", preconditions=precondition):
                writes += 1
        order = sorted(desired, key=lambda n: (n not in existing, n))  # update, then create
        for name in order:
            rawapi.apply(
                api,
                f"{SLICES_PATH}/{name}",
                _slice_body(name, driver, node_name, generation, len(desired), desired[name]),
                field_manager=manager,
            )
            writes += 1
    return PoolState(
        driver=driver,
        pool=node_name,
        generation=generation,
        slices=tuple(sorted(desired)),
        devices=tuple(d["name"] for d in devices),
        writes=writes,
    )


def create_device_class(
    api: ApiClient,
    vendor: Vendor | str,
    name: str | None = None,
    *,
    selectors: Iterable[str] = (),
) -> str:
    """Apply a DeviceClass that selects ``vendor``'s devices (plus extra CEL ``selectors``).

    Returns the class name (default ``<vendor>-<prefix>``, e.g. ``nvidia-gpu``).
    """
    spec = vendor_driver(vendor)
    name = name or f"{spec.vendor.value}-{spec.device_prefix}"
    exprs = [f'device.driver == "{spec.driver}"', *selectors]
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": name},
        "spec": {"selectors": [{"cel": {"expression": e}} for e in exprs]},
    }
    rawapi.apply(api, f"{DEVICE_CLASSES_PATH}/{name}", body, field_manager="devcluster")
    return name


# --- vendor shapes -------------------------------------------------------------------------


def _model(spec: VendorDriver, model: str) -> Model:
    for key, m in spec.models.items():
        if model.casefold() in (key.casefold(), m.name.casefold()):
            return m
    known = ", ".join(spec.models)
    raise ValueError(f"unknown {spec.vendor} model {model!r}; known: {known}")


def _attributes(
    spec: VendorDriver, m: Model, node: str, i: int, version: str | None, *, healthy: bool
) -> dict[str, dict[str, Any]]:
    uid = device_uuid(spec.vendor, node, i)
    match spec.vendor:
        case Vendor.NVIDIA:
            return {
                "type": {"string": "gpu"},
                "productName": {"string": m.name},
                "uuid": {"string": f"GPU-{uid}"},
                "index": {"int": i},
                "driverVersion": {"version": version},
                "cudaComputeCapability": {"version": m.compute_capability},
            }
        case Vendor.BIREN:
            return {
                "model": {"string": m.name},
                "uuid": {"string": uid},
                "firmwareVersion": {"version": version},
            }
        case Vendor.ILUVATAR:
            return {
                "productName": {"string": m.name},
                "serial": {"string": uid},
                "driverVersion": {"version": version},
                "memoryMiB": {"int": m.memory_mib},
            }
        case Vendor.HYGON:
            return {
                "deviceName": {"string": m.name},
                "uuid": {"string": uid},
                "healthy": {"bool": healthy},
            }
        case Vendor.ASCEND:
            return {
                "chipName": {"string": m.name},
                "vdieId": {"string": uid},
                "health": {"string": "Healthy" if healthy else "Unhealthy"},
                "hbmMB": {"int": m.memory_mib},
            }


def _slice_name(node: str, driver: str, index: int) -> str:
    return f"{node}-{driver}-{index}"


def _slice_body(
    name: str, driver: str, node: str, generation: int, count: int, devices: list[Mapping[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name, "labels": {"devcluster.cu-reconciler.io/simulated": "true"}},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": node, "generation": generation, "resourceSliceCount": count},
            "devices": [dict(d) for d in devices],
        },
    }


def _same_devices(
    desired: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]]
) -> bool:
    """Desired devices are all in ``actual`` as published (server-set defaults are ignored)."""
    return len(desired) == len(actual) and all(
        _subset(d, a) for d, a in zip(desired, actual, strict=True)
    )


def _subset(want: Any, have: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and _subset(v, have[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(_subset, want, have))
    return bool(want == have)

"""The vendor driver simulator's device shapes: the contract the vendor adapters rely on."""

from __future__ import annotations

import pytest

from reconciler.devcluster import drivers
from reconciler.devcluster.drivers import PCIE_ROOT, Vendor


def test_driver_names_and_placeholders() -> None:
    names = {v: d.driver for v, d in drivers.DRIVERS.items()}
    assert names == {
        Vendor.NVIDIA: "gpu.nvidia.com",
        Vendor.BIREN: "gpu.biren.example.com",
        Vendor.ILUVATAR: "gpu.iluvatar.example.com",
        Vendor.HYGON: "dcu.hygon.example.com",
        Vendor.ASCEND: "npu.ascend.example.com",
    }
    assert [v for v, d in drivers.DRIVERS.items() if not d.placeholder] == [Vendor.NVIDIA]


@pytest.mark.parametrize(
    ("vendor", "model", "attributes", "capacity"),
    [
        pytest.param(
            Vendor.NVIDIA,
            "H100",
            {
                "type": {"string": "gpu"},
                "productName": {"string": "NVIDIA H100 80GB HBM3"},
                "index": {"int": 1},
                "driverVersion": {"version": "570.124.6"},
                "cudaComputeCapability": {"version": "9.0.0"},
            },
            {"memory": {"value": "80Gi"}},
            id="nvidia",
        ),
        pytest.param(
            Vendor.BIREN,
            "BR104",
            {"model": {"string": "BR104"}, "firmwareVersion": {"version": "1.6.0"}},
            {"memory": {"value": "32Gi"}},
            id="biren",
        ),
        pytest.param(
            Vendor.ILUVATAR,
            "BI-V100",
            {
                "productName": {"string": "BI-V100"},
                "driverVersion": {"version": "3.4.0"},
                "memoryMiB": {"int": 32768},
            },
            None,
            id="iluvatar-memory-only-as-int-attribute",
        ),
        pytest.param(
            Vendor.HYGON,
            "Z100",
            {"deviceName": {"string": "Z100"}, "healthy": {"bool": True}},
            {"vram": {"value": "32Gi"}},
            id="hygon",
        ),
        pytest.param(
            Vendor.ASCEND,
            "910B2",
            {
                "chipName": {"string": "910B2"},
                "health": {"string": "Healthy"},
                "hbmMB": {"int": 65536},
            },
            None,
            id="ascend",
        ),
    ],
)
def test_vendor_device_shape(
    vendor: Vendor, model: str, attributes: dict[str, object], capacity: dict[str, object] | None
) -> None:
    dev = drivers.build_devices(vendor, "node-a", model, 2)[1]
    assert dev["name"] == f"{drivers.DRIVERS[vendor].device_prefix}-1"
    assert attributes.items() <= dev["attributes"].items()
    assert dev["attributes"][PCIE_ROOT] == {"string": "pci0000:00"}
    assert dev.get("capacity") == capacity
    assert "allowMultipleAllocations" not in dev


def test_uuids_are_deterministic_and_distinct() -> None:
    first = drivers.build_devices(Vendor.NVIDIA, "node-a", "A100", 4)
    again = drivers.build_devices(Vendor.NVIDIA, "node-a", "A100", 4)
    other = drivers.build_devices(Vendor.NVIDIA, "node-b", "A100", 4)
    uuids = [d["attributes"]["uuid"]["string"] for d in first]
    assert uuids == [d["attributes"]["uuid"]["string"] for d in again]
    assert len(set(uuids) | {d["attributes"]["uuid"]["string"] for d in other}) == 8
    assert uuids[0] == "GPU-" + drivers.device_uuid(Vendor.NVIDIA, "node-a", 0)


def test_shared_devices_get_a_request_policy_and_health_follows_unhealthy() -> None:
    dev = drivers.build_devices(Vendor.HYGON, "n", "K100", 1, shared=True, unhealthy={0})[0]
    assert dev["allowMultipleAllocations"] is True
    assert dev["capacity"]["vram"] == {
        "value": "64Gi",
        "requestPolicy": dict(drivers.DEFAULT_REQUEST_POLICY),
    }
    assert dev["attributes"]["healthy"] == {"bool": False}


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: H100, A100, L40S"):
        drivers.build_devices(Vendor.NVIDIA, "n", "V100", 1)

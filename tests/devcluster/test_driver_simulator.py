"""The vendor driver simulator against the real apiserver: pools, generations, withdrawal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.devcluster import drivers, rawapi
from reconciler.devcluster.drivers import Vendor

pytestmark = pytest.mark.integration


@pytest.fixture
def node(api: ApiClient) -> Iterator[str]:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    devcluster.create_node(api, name)
    yield name
    devcluster.withdraw_node(api, name)
    devcluster.delete_node(api, name)


@pytest.mark.parametrize("vendor", list(Vendor), ids=str)
def test_every_vendor_publishes_a_valid_node_local_pool(
    api: ApiClient, node: str, vendor: Vendor
) -> None:
    model = next(iter(drivers.DRIVERS[vendor].models))
    state = devcluster.publish_node(api, node, vendor, model, 8, shared=True)
    [stored] = drivers.list_pool(api, drivers.DRIVERS[vendor].driver, node)
    assert stored["spec"]["nodeName"] == node
    assert stored["spec"]["pool"] == {"name": node, "generation": 1, "resourceSliceCount": 1}
    assert [d["name"] for d in stored["spec"]["devices"]] == list(state.devices)
    assert state.writes == 1


def test_republishing_the_same_pool_writes_nothing(api: ApiClient, node: str) -> None:
    devcluster.publish_node(api, node, Vendor.ASCEND, "910B3", 4)
    again = devcluster.publish_node(api, node, Vendor.ASCEND, "910B3", 4)
    assert (again.writes, again.generation) == (0, 1)


def test_driver_update_bumps_every_slice_of_the_pool_together(api: ApiClient, node: str) -> None:
    first = devcluster.publish_node(api, node, Vendor.NVIDIA, "A100", 8, devices_per_slice=3)
    assert (first.generation, first.resource_slice_count) == (1, 3)
    updated = devcluster.update_driver(api, node, Vendor.NVIDIA, driver_version="575.51.2")
    assert (updated.generation, updated.resource_slice_count) == (2, 3)
    slices = drivers.list_pool(api, "gpu.nvidia.com", node)
    assert {s["spec"]["pool"]["generation"] for s in slices} == {2}
    assert {s["spec"]["pool"]["resourceSliceCount"] for s in slices} == {3}
    versions = {
        d["attributes"]["driverVersion"]["version"] for s in slices for d in s["spec"]["devices"]
    }
    assert versions == {"575.51.2"}


def test_losing_devices_deletes_obsolete_slices_and_withdraw_removes_the_pool(
    api: ApiClient, node: str
) -> None:
    devcluster.publish_node(api, node, Vendor.ILUVATAR, "BI-V150", 6, devices_per_slice=2)
    shrunk = devcluster.publish_node(api, node, Vendor.ILUVATAR, "BI-V150", 3, devices_per_slice=2)
    assert (shrunk.generation, shrunk.resource_slice_count) == (2, 2)
    names = [
        s["metadata"]["name"] for s in drivers.list_pool(api, "gpu.iluvatar.example.com", node)
    ]
    assert names == list(shrunk.slices)
    assert devcluster.withdraw_node(api, node) == 2
    assert drivers.list_pool(api, "gpu.iluvatar.example.com", node) == []


def test_node_loss_marks_the_node_not_ready(api: ApiClient, node: str) -> None:
    devcluster.set_ready(api, node, False)
    got = rawapi.request(api, "GET", f"/api/v1/nodes/{node}")
    ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    assert {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"} in got["spec"][
        "taints"
    ]
    devcluster.set_ready(api, node, True)
    got = rawapi.request(api, "GET", f"/api/v1/nodes/{node}")
    assert "taints" not in got["spec"]
    assert got["status"]["allocatable"]["pods"] == "110"

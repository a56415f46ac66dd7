"""The real kube-scheduler allocates devices from simulated vendor slices on fake nodes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.devcluster import drivers, workloads
from reconciler.devcluster.drivers import Vendor

pytestmark = pytest.mark.integration


@pytest.fixture
def node(api: ApiClient) -> Iterator[str]:
    """A fresh fake node name; its node object and slices are removed afterwards."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    devcluster.create_node(api, name, {"cu-reconciler.io/test": "scheduling"})
    yield name
    devcluster.withdraw_node(api, name)
    devcluster.delete_node(api, name)


def _uuid_selector(node: str, index: int) -> str:
    """CEL that matches exactly one simulated NVIDIA device (uuids are deterministic)."""
    device_uuid = "GPU-" + drivers.device_uuid(Vendor.NVIDIA, node, index)
    return f'device.attributes["gpu.nvidia.com"].uuid == "{device_uuid}"'


def test_pod_gets_the_selected_device_and_the_requested_capacity(
    api: ApiClient, namespace: str, node: str
) -> None:
    devcluster.publish_node(api, node, Vendor.NVIDIA, "H100", 4, shared=True)
    device_class = devcluster.create_device_class(api, Vendor.NVIDIA)
    selectors = [
        'device.attributes["gpu.nvidia.com"].productName == "NVIDIA H100 80GB HBM3"',
        _uuid_selector(node, 2),
    ]
    claim = workloads.resource_claim(
        "h100-slice", device_class, selectors=selectors, capacity={"memory": "10Gi"}
    )
    workloads.create(api, namespace, claim)
    workloads.create(api, namespace, workloads.pod("trainer", claims={"gpu": "h100-slice"}))

    pod = workloads.wait_scheduled(api, namespace, "trainer")
    assert pod["spec"]["nodeName"] == node

    status = workloads.get(api, namespace, "ResourceClaim", "h100-slice")["status"]
    [result] = status["allocation"]["devices"]["results"]
    assert (result["driver"], result["pool"], result["device"]) == ("gpu.nvidia.com", node, "gpu-2")
    assert result["request"] == "gpu"
    assert result["consumedCapacity"] == {"memory": "10Gi"}
    assert result["shareID"], "a multi-allocatable device gets a share id per allocation"
    assert [r["name"] for r in status["reservedFor"]] == ["trainer"]


def test_capacity_request_is_rounded_up_to_the_request_policy(
    api: ApiClient, namespace: str, node: str
) -> None:
    policy = {"default": "4Gi", "validRange": {"min": "4Gi", "step": "4Gi"}}
    devcluster.publish_node(api, node, Vendor.BIREN, "BR104", 1, shared=True, request_policy=policy)
    device_class = devcluster.create_device_class(api, Vendor.BIREN)
    attrs = 'device.attributes["gpu.biren.example.com"]'
    device_uuid = drivers.device_uuid(Vendor.BIREN, node, 0)
    selector = f'{attrs}.model == "BR104" && {attrs}.uuid == "{device_uuid}"'
    claim = workloads.resource_claim(
        "br", device_class, selectors=[selector], capacity={"memory": "5Gi"}
    )
    workloads.create(api, namespace, claim)
    workloads.create(api, namespace, workloads.pod("p", claims={"gpu": "br"}))
    workloads.wait_scheduled(api, namespace, "p")
    claim = workloads.get(api, namespace, "ResourceClaim", "br")
    [result] = claim["status"]["allocation"]["devices"]["results"]
    assert result["consumedCapacity"] == {"memory": "8Gi"}


def test_claims_exceeding_a_shared_device_leave_one_pod_unschedulable(
    api: ApiClient, namespace: str, node: str
) -> None:
    devcluster.publish_node(api, node, Vendor.NVIDIA, "H100", 1, shared=True)  # 80Gi
    device_class = devcluster.create_device_class(api, Vendor.NVIDIA)
    for name in ("first", "second"):
        claim = workloads.resource_claim(
            name, device_class, selectors=[_uuid_selector(node, 0)], capacity={"memory": "50Gi"}
        )
        workloads.create(api, namespace, claim)
    workloads.create(api, namespace, workloads.pod("first", claims={"gpu": "first"}))
    workloads.wait_scheduled(api, namespace, "first")
    first = workloads.get(api, namespace, "ResourceClaim", "first")["status"]["allocation"]
    assert first["devices"]["results"][0]["device"] == "gpu-0"
    assert first["devices"]["results"][0]["consumedCapacity"] == {"memory": "50Gi"}

    workloads.create(api, namespace, workloads.pod("second", claims={"gpu": "second"}))
    condition = workloads.wait_unschedulable(api, namespace, "second")
    assert "cannot allocate all claims" in condition["message"], condition
    second_pod = workloads.get(api, namespace, "Pod", "second")
    assert not second_pod["spec"].get("nodeName")
    assert "allocation" not in workloads.get(api, namespace, "ResourceClaim", "second").get(
        "status", {}
    )


def test_claim_template_is_instantiated_by_the_resourceclaim_controller(
    api: ApiClient, namespace: str, node: str
) -> None:
    devcluster.publish_node(api, node, Vendor.HYGON, "K100", 2)
    device_class = devcluster.create_device_class(api, Vendor.HYGON)
    attrs = 'device.attributes["dcu.hygon.example.com"]'
    device_uuid = drivers.device_uuid(Vendor.HYGON, node, 1)
    template = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": "dcu"},
        "spec": {
            "spec": workloads.resource_claim(
                "unused",
                device_class,
                selectors=[
                    f"{attrs}.healthy",
                    f'{attrs}.uuid == "{device_uuid}"',
                ],
            )["spec"]
        },
    }
    workloads.create(api, namespace, template)
    workloads.create(api, namespace, workloads.pod("worker", templates={"dcu": "dcu"}))
    pod = workloads.wait_scheduled(api, namespace, "worker")
    [status] = pod["status"]["resourceClaimStatuses"]
    claim = workloads.get(api, namespace, "ResourceClaim", status["resourceClaimName"])
    [result] = claim["status"]["allocation"]["devices"]["results"]
    assert (result["pool"], result["device"]) == (node, "dcu-1")

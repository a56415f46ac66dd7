"""DRA fields survive a write: a dropped field would mean a feature gate is missing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from reconciler.devcluster import drivers, rawapi

pytestmark = pytest.mark.integration

SLICES = drivers.SLICES_PATH


@pytest.fixture
def pool(api: ApiClient) -> Iterator[str]:
    name = f"rt-{uuid.uuid4().hex[:8]}"
    yield name
    for s in drivers.list_pool(api, "roundtrip.example.com", name):
        rawapi.delete(api, f"{SLICES}/{s['metadata']['name']}")


def _slice(name: str, pool: str, count: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {
            "driver": "roundtrip.example.com",
            "nodeName": pool,
            "pool": {"name": pool, "generation": 1, "resourceSliceCount": count},
            **spec,
        },
    }


def _assert_kept(want: Any, have: Any, path: str = "spec") -> None:
    """Every field we wrote is stored unchanged; names the first dropped/changed path."""
    if isinstance(want, dict):
        assert isinstance(have, dict), path
        for key, value in want.items():
            assert key in have, f"{path}.{key} was dropped (feature gate off?)"
            _assert_kept(value, have[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(have, list) and len(have) == len(want), path
        for i, (w, h) in enumerate(zip(want, have, strict=True)):
            _assert_kept(w, h, f"{path}[{i}]")
    else:
        assert want == have, f"{path}: wrote {want!r}, stored {have!r}"


def test_consumable_capacity_taints_counters_and_binding_conditions_round_trip(
    api: ApiClient, pool: str
) -> None:
    counters = _slice(
        f"{pool}-counters",
        pool,
        2,
        sharedCounters=[{"name": "gpu-0-mem", "counters": {"memory": {"value": "80Gi"}}}],
    )
    devices = _slice(
        f"{pool}-devices",
        pool,
        2,
        devices=[
            {
                "name": "gpu-0",
                "allowMultipleAllocations": True,  # DRAConsumableCapacity
                "attributes": {"productName": {"string": "NVIDIA H100 80GB HBM3"}},
                "capacity": {
                    "memory": {
                        "value": "80Gi",
                        "requestPolicy": {  # DRAConsumableCapacity
                            "default": "8Gi",
                            "validRange": {"min": "8Gi", "max": "80Gi", "step": "8Gi"},
                        },
                    },
                    "cu": {
                        "value": "100",
                        "requestPolicy": {"default": "25", "validValues": ["25", "50", "100"]},
                    },
                },
                "taints": [  # DRADeviceTaints
                    {"key": "example.com/maintenance", "value": "planned", "effect": "NoSchedule"},
                    {"key": "example.com/ecc", "effect": "None"},
                ],
            },
            {
                "name": "gpu-0-half",
                "consumesCounters": [  # DRAPartitionableDevices
                    {"counterSet": "gpu-0-mem", "counters": {"memory": {"value": "40Gi"}}}
                ],
                "bindsToNode": True,  # DRADeviceBindingConditions
                "bindingConditions": ["example.com/attached"],
                "bindingFailureConditions": ["example.com/attach-failed"],
            },
        ],
    )
    for body in (counters, devices):
        rawapi.request(api, "POST", SLICES, body=body)
        stored = rawapi.request(api, "GET", f"{SLICES}/{body['metadata']['name']}")
        _assert_kept(body["spec"], stored["spec"])
    stored = rawapi.request(api, "GET", f"{SLICES}/{pool}-devices")
    taint = stored["spec"]["devices"][0]["taints"][0]
    assert taint["timeAdded"], "the apiserver stamps timeAdded on new taints"


def test_typed_client_server_side_apply_keeps_dra_fields(api: ApiClient, pool: str) -> None:
    """The path the apply layer uses: typed ResourceV1Api, dict body, apply-patch+yaml."""
    name = f"{pool}-typed"
    body = _slice(
        name, pool, 1, devices=drivers.build_devices("nvidia", pool, "H100", 2, shared=True)
    )
    resource = client.ResourceV1Api(api)
    resource.patch_resource_slice(
        name,
        body=body,
        field_manager="cu-reconciler-test",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    typed = resource.read_resource_slice(name)
    dev = typed.spec.devices[0]
    assert dev.allow_multiple_allocations is True
    assert dev.capacity["memory"].request_policy.valid_range.step == "1Gi"
    managers = [m.manager for m in typed.metadata.managed_fields]
    assert managers == ["cu-reconciler-test"]
    _assert_kept(body["spec"], rawapi.request(api, "GET", f"{SLICES}/{name}")["spec"])


def test_device_taint_rule_v1_round_trips(api: ApiClient) -> None:
    name = f"rule-{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceTaintRule",
        "metadata": {"name": name},
        "spec": {
            "deviceSelector": {"driver": "gpu.nvidia.com", "pool": "node-x", "device": "gpu-3"},
            "taint": {"key": "cu-reconciler.io/drain", "value": "true", "effect": "NoExecute"},
        },
    }
    path = "/apis/resource.k8s.io/v1/devicetaintrules"
    rawapi.request(api, "POST", path, body=body)
    try:
        _assert_kept(body["spec"], rawapi.request(api, "GET", f"{path}/{name}")["spec"])
    finally:
        rawapi.delete(api, f"{path}/{name}")

"""Normalisation through vendor adapters and the newest-complete-generation rule."""

from __future__ import annotations

from pathlib import Path

import cu_example as ex
import pytest

from reconciler import errors
from reconciler.model import observed as obs
from reconciler.observe import snapshot, sources


def _build(*slices: dict) -> obs.ObservedState:
    raw = obs.RawObjects(nodes=(ex.node("n1"), ex.node("n2")), slices=tuple(slices))
    return obs.build(raw, ex.adapters(), ex.DRIVER)


@pytest.mark.parametrize(
    ("vendor", "model", "canonical", "memory_mib", "uuid_attribute"),
    [
        pytest.param(
            "nvidia", "H100", "H100-SXM5-80GB", 80 * 1024, "gpu.nvidia.com/uuid", id="nvidia"
        ),
        pytest.param(
            "biren", "BR104", "BR104", 32 * 1024, "gpu.biren.example.com/uuid", id="biren"
        ),
        pytest.param(
            "iluvatar",
            "BI-V150",
            "BI-V150",
            65536,
            "gpu.iluvatar.example.com/serial",
            id="iluvatar",
        ),
        pytest.param("hygon", "Z100", "Z100", 32 * 1024, "dcu.hygon.example.com/uuid", id="hygon"),
        pytest.param(
            "ascend", "910B3", "Ascend-910B3", 65536, "npu.ascend.example.com/vdieId", id="ascend"
        ),
    ],
)
def test_every_vendor_normalises_to_one_description(
    vendor: str, model: str, canonical: str, memory_mib: int, uuid_attribute: str
) -> None:
    state = _build(ex.vendor_slice("n1", vendor, model, 2))
    assert [d.model for d in state.devices] == [canonical, canonical]
    device = state.devices[0]
    assert (device.vendor, device.node, device.memory_bytes) == (vendor, "n1", memory_mib * 2**20)
    assert device.uuid_attribute == uuid_attribute
    assert device.healthy and device.usable
    assert state.findings == ()


@pytest.mark.parametrize(
    ("vendor", "model"),
    [
        pytest.param("hygon", "Z100", id="hygon-bool"),
        pytest.param("ascend", "910B2", id="ascend-str"),
    ],
)
def test_health_attribute_marks_device_unusable(vendor: str, model: str) -> None:
    state = _build(ex.vendor_slice("n1", vendor, model, 2, unhealthy=[1]))
    assert [d.healthy for d in state.devices] == [True, False]
    assert not state.devices[1].usable


def test_device_without_adapter_is_reported_not_guessed() -> None:
    state = ex.observed()
    assert all(d.id.driver != "npu.mystery.example.com" for d in state.devices)
    [finding] = [f for f in state.findings if f.code is obs.FindingCode.NO_ADAPTER]
    assert "n5/npu-0" in finding.message


def test_unknown_model_value_is_reported() -> None:
    state = _build(ex.vendor_slice("n1", "biren", "BR100", 1))
    raw = ex.vendor_slice("n2", "nvidia", "H100", 1)
    raw["spec"]["devices"][0]["attributes"]["productName"] = {"string": "NVIDIA B200"}
    state = _build(raw)
    assert state.devices == ()
    assert [f.code for f in state.findings] == [obs.FindingCode.UNKNOWN_MODEL]


def test_incomplete_newest_generation_falls_back_to_the_previous_complete_one() -> None:
    old = ex.vendor_slice("n1", "nvidia", "H100", 2, generation=3)
    new = ex.vendor_slice("n1", "nvidia", "H100", 4, generation=4, slice_count=2)
    new["metadata"]["name"] = "n1-new-0"
    state = _build(old, new)
    assert len(state.devices) == 2, "generation 3 (complete) counts, not half of generation 4"
    [finding] = state.findings
    assert finding.code is obs.FindingCode.INCOMPLETE_POOL
    assert "generation 4 has 1 of 2 slices" in finding.message


def test_duplicate_device_names_make_the_pool_invalid() -> None:
    a = ex.vendor_slice("n1", "nvidia", "H100", 2, slice_count=2)
    b = ex.vendor_slice("n1", "nvidia", "H100", 2, slice_count=2, index=1)
    state = _build(a, b)
    assert state.devices == ()
    assert [f.code for f in state.findings] == [obs.FindingCode.INVALID_POOL]


def test_claims_carry_allocation_and_users() -> None:
    claim = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "ns"},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "cu-0",
                            "driver": ex.DRIVER,
                            "pool": "n1",
                            "device": "x",
                            "consumedCapacity": {"cu": "10"},
                        }
                    ]
                }
            },
            "reservedFor": [{"resource": "pods", "name": "p", "uid": "1"}],
        },
    }
    state = obs.build(obs.RawObjects(claims=(claim,)), ex.adapters(), ex.DRIVER)
    [c] = state.claims
    assert c.in_use and c.reserved_for == ("pods/p",)
    assert c.allocated[0].consumed_cu == "10"


def test_snapshot_reads_kind_list_and_sorts_objects(tmp_path: Path) -> None:
    path = tmp_path / "snap.yaml"
    path.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Node, metadata: {name: n1}}\n"
        "- {apiVersion: resource.k8s.io/v1, kind: DeviceClass, metadata: {name: cu-x, "
        "labels: {app.kubernetes.io/managed-by: cu-reconciler}}}\n"
    )
    raw = snapshot.Snapshot(path).read()
    assert [n["metadata"]["name"] for n in raw.nodes] == ["n1"]
    assert [o["kind"] for o in raw.owned] == ["DeviceClass"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("a: [", "not valid YAML", id="yaml"),
        pytest.param("- 1\n- 2\n", "item 0 is not a Kubernetes object", id="not-object"),
    ],
)
def test_snapshot_errors_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(errors.ObserveError, match=message) as info:
        snapshot.Snapshot(path).read()
    assert str(path) in str(info.value)


def test_missing_snapshot_is_an_observe_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ObserveError, match="cannot read snapshot"):
        snapshot.Snapshot(tmp_path / "nope.yaml").read()


def test_in_memory_source_is_the_fake_behind_the_protocol() -> None:
    source: sources.Source = sources.InMemory((ex.node("n1"),))
    assert [n["metadata"]["name"] for n in source.read().nodes] == ["n1"]

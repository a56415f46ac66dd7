"""apply_all on the in-memory writer: order, all-or-nothing dry run, no-op second run, ownership."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import errors
from reconciler.apply import apply as applying
from reconciler.apply import fake, order
from reconciler.diff import changeset as cs
from reconciler.model import ownership

OWNED = dict(ownership.MANAGED_BY)


def _obj(kind: str, name: str, *, ns: str = "", owned: bool = True, **spec: Any) -> dict[str, Any]:
    api = "resource.k8s.io/v1"
    if kind.startswith("ValidatingAdmission"):
        api = "admissionregistration.k8s.io/v1"
    meta: dict[str, Any] = {"name": name, "labels": OWNED if owned else {}}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": dict(spec)}


TARGET = [
    _obj("ResourceClaim", "c1", ns="team-a", devices={"requests": []}),
    _obj("ResourceSlice", "node-a-cu-0", driver="cu.example.com"),
    _obj("DeviceClass", "cu-prod", selectors=[]),
    _obj("DeviceTaintRule", "fence-nvidia", taint={"key": "k", "effect": "NoSchedule"}),
]


def test_writes_follow_kind_order_and_prunes_come_last_in_reverse() -> None:
    live = [_obj("DeviceClass", "old-class"), _obj("ResourceSlice", "old-slice")]
    changes = cs.compute(TARGET, live)
    writes = [e.key.kind for e in order.writes(changes.entries)]
    prunes = [e.key.kind for e in order.prunes(changes.entries)]
    assert writes == ["DeviceTaintRule", "DeviceClass", "ResourceSlice", "ResourceClaim"]
    assert prunes == ["ResourceSlice", "DeviceClass"]


def test_apply_then_second_run_writes_nothing() -> None:
    writer = fake.MemoryWriter()
    first = applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [])
    assert first.writes == 4
    assert writer.writes == 4
    live = list(writer.objects.values())
    second = applying.apply_all(writer, cs.compute(TARGET, live), TARGET, live)
    assert second.writes == 0
    assert writer.writes == 4
    assert {e.outcome for e in second.entries} == {applying.Outcome.UNCHANGED}


def test_a_rejected_dry_run_writes_nothing_at_all() -> None:
    writer = fake.MemoryWriter(reject={"ResourceClaim/team-a/c1"})
    with pytest.raises(errors.ApplyError, match="ResourceClaim/team-a/c1"):
        applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [])
    assert writer.writes == 0
    assert writer.objects == {}


def test_a_refused_plan_writes_nothing() -> None:
    writer = fake.MemoryWriter()
    with pytest.raises(errors.ApplyError, match="refused"):
        applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], refusal="too many deletes")
    assert writer.writes == 0


def test_dry_run_option_validates_everything_and_stores_nothing() -> None:
    writer = fake.MemoryWriter()
    result = applying.apply_all(
        writer, cs.compute(TARGET, []), TARGET, [], applying.ApplyOptions(dry_run=True)
    )
    assert writer.writes == 0
    assert [e.outcome for e in result.entries] == [applying.Outcome.DRY_RUN] * 4


def test_prune_deletes_owned_objects_and_never_foreign_ones() -> None:
    writer = fake.MemoryWriter()
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [])
    foreign = _obj("DeviceClass", "gpu.nvidia.com", owned=False)
    writer.apply(foreign, dry_run=False)
    live = list(writer.objects.values())
    smaller = TARGET[1:]  # the claim leaves the target
    result = applying.apply_all(writer, cs.compute(smaller, live), smaller, live)
    assert [(e.subject, e.outcome) for e in result.entries if e.outcome != "unchanged"] == [
        ("ResourceClaim/team-a/c1", applying.Outcome.DELETED)
    ]
    assert any(o["metadata"]["name"] == "gpu.nvidia.com" for o in writer.objects.values())


def test_changed_claim_spec_is_replaced_by_delete_then_create() -> None:
    writer = fake.MemoryWriter()
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [])
    live = list(writer.objects.values())
    changed = [*TARGET[1:], _obj("ResourceClaim", "c1", ns="team-a", devices={"requests": [1]})]
    result = applying.apply_all(writer, cs.compute(changed, live), changed, live)
    replaced = [e for e in result.entries if e.outcome is applying.Outcome.REPLACED]
    assert [e.subject for e in replaced] == ["ResourceClaim/team-a/c1"]
    stored = writer.objects["/apis/resource.k8s.io/v1/namespaces/team-a/resourceclaims/c1"]
    assert stored["spec"]["devices"]["requests"] == [1]


@pytest.mark.parametrize(
    ("sent", "stored", "dropped"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="same"),
        pytest.param({"a": 1}, {"a": 1, "b": 2}, [], id="server-default-added"),
        pytest.param({"a": {"b": 1}}, {"a": {}}, ["a.b"], id="nested-field-dropped"),
        pytest.param(
            {"d": [{"x": 1, "y": 2}]}, {"d": [{"x": 1}]}, ["d.y"], id="field-in-list-dropped"
        ),
        pytest.param({"d": [1, 2]}, {"d": [1]}, ["d"], id="list-shortened"),
        pytest.param({"a": {"b": 1}}, {"a": "x"}, ["a"], id="type-changed"),
    ],
)
def test_dropped_paths(sent: Any, stored: Any, dropped: list[str]) -> None:
    assert applying.dropped_paths(sent, stored) == dropped

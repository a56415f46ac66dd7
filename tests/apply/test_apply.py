"""apply_all on the in-memory writer: order, isolation, no-op second run, ownership.

Every path here is also proven against the real apiserver (tests/integration/test_apply_*.py);
these pin the logic cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from reconciler import errors
from reconciler.apply import apply as applying
from reconciler.apply import fake, order
from reconciler.apply import writer as writers
from reconciler.diff import changeset as cs
from reconciler.model import inventory as inventories
from reconciler.model import ownership

OWNED = dict(ownership.MANAGED_BY)
SOURCE = "cn-test"


def _obj(kind: str, name: str, *, ns: str = "", owned: bool = True, **spec: Any) -> dict[str, Any]:
    api = "resource.k8s.io/v1"
    if kind.startswith("ValidatingAdmission"):
        api = "admissionregistration.k8s.io/v1"
    meta: dict[str, Any] = {
        "name": name,
        "labels": OWNED if owned else {},
        "annotations": {ownership.SOURCE_ANNOTATION: SOURCE} if owned else {},
    }
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
    first = applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    assert first.writes == 4
    assert writer.writes == 4
    live = list(writer.objects.values())
    second = applying.apply_all(writer, cs.compute(TARGET, live), TARGET, live, source=SOURCE)
    assert second.writes == 0
    assert writer.writes == 4
    assert {e.outcome for e in second.entries} == {applying.Outcome.UNCHANGED}


def test_a_rejected_object_fails_alone_and_everyone_else_converges() -> None:
    writer = fake.MemoryWriter(reject={"ResourceClaim/team-a/c1"})
    result = applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    assert result.partial
    [problem] = result.problems
    assert (problem.subject, problem.outcome) == ("ResourceClaim/team-a/c1", "failed")
    assert "HTTP 422" in problem.reason
    assert writer.writes == result.writes == 3


def test_a_failed_fence_blocks_every_slice_write_and_a_failed_class_its_claims() -> None:
    claim = _obj(
        "ResourceClaim", "c2", ns="team-a", devices={"requests": [{"deviceClassName": "cu-prod"}]}
    )
    target = [*TARGET, claim]
    writer = fake.MemoryWriter(reject={"DeviceTaintRule/fence-nvidia", "DeviceClass/cu-prod"})
    result = applying.apply_all(writer, cs.compute(target, []), target, [], source=SOURCE)
    outcomes = {e.subject: e.outcome for e in result.entries}
    assert outcomes == {
        "DeviceTaintRule/fence-nvidia": "failed",
        "DeviceClass/cu-prod": "failed",
        "ResourceSlice/node-a-cu-0": "skipped",
        "ResourceClaim/team-a/c1": "created",
        "ResourceClaim/team-a/c2": "skipped",
    }
    assert not any("resourceslices" in p for p in writer.objects)


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
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    foreign = _obj("DeviceClass", "gpu.nvidia.com", owned=False)
    writer.apply(foreign, dry_run=False)
    live = list(writer.objects.values())
    smaller = TARGET[1:]  # the claim leaves the target
    result = applying.apply_all(writer, cs.compute(smaller, live), smaller, live, source=SOURCE)
    assert [(e.subject, e.outcome) for e in result.entries if e.outcome != "unchanged"] == [
        ("ResourceClaim/team-a/c1", applying.Outcome.DELETED)
    ]
    assert any(o["metadata"]["name"] == "gpu.nvidia.com" for o in writer.objects.values())


def test_changed_claim_spec_is_replaced_by_delete_then_create() -> None:
    writer = fake.MemoryWriter()
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    live = list(writer.objects.values())
    changed = [*TARGET[1:], _obj("ResourceClaim", "c1", ns="team-a", devices={"requests": [1]})]
    result = applying.apply_all(writer, cs.compute(changed, live), changed, live, source=SOURCE)
    replaced = [e for e in result.entries if e.outcome is applying.Outcome.REPLACED]
    assert [e.subject for e in replaced] == ["ResourceClaim/team-a/c1"]
    stored = writer.objects["/apis/resource.k8s.io/v1/namespaces/team-a/resourceclaims/c1"]
    assert stored["spec"]["devices"]["requests"] == [1]


@dataclass
class StaleQuota(fake.MemoryWriter):
    """A quota that still counts a deleted claim for the next ``stale`` creates."""

    stale: int = 0

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not dry_run and self.stale and writers.path_of(obj) not in self.objects:
            self.stale -= 1
            raise writers.QuotaExceededError("HTTP 403 Forbidden: exceeded quota: q")
        return super().apply(obj, dry_run=dry_run)


@pytest.mark.parametrize(("stale", "wait", "outcome"), [(2, 30.0, "replaced"), (99, 0.2, "failed")])
def test_a_replace_waits_a_bounded_time_for_the_quota_its_delete_released(
    stale: int, wait: float, outcome: str
) -> None:
    writer = StaleQuota()
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    live = list(writer.objects.values())
    changed = [*TARGET[1:], _obj("ResourceClaim", "c1", ns="team-a", devices={"requests": [1]})]
    writer.stale = stale
    result = applying.apply_all(
        writer,
        cs.compute(changed, live),
        changed,
        live,
        applying.ApplyOptions(quota_wait=wait),
        source=SOURCE,
    )
    [entry] = [e for e in result.entries if e.subject == "ResourceClaim/team-a/c1"]
    assert entry.outcome == outcome, entry
    assert entry.changed, "the delete happened either way"
    if outcome == "failed":
        assert "exceeded quota" in entry.reason


def test_label_alone_is_not_ownership_and_another_driver_slice_is_never_deleted() -> None:
    writer = fake.MemoryWriter()
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    vendor = _obj("ResourceSlice", "gpu-node-a", driver="gpu.nvidia.com")
    labelled = _obj("DeviceClass", "labelled-by-hand")
    labelled["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    writer.objects[writers.path_of(labelled)] = labelled
    writer.apply(vendor, dry_run=False)  # applied by our manager, even: the driver decides
    live = list(writer.objects.values())
    result = applying.apply_all(
        writer, cs.compute(TARGET, live), TARGET, live, source=SOURCE, driver="cu.example.com"
    )
    problems = {e.subject: (e.outcome, e.reason) for e in result.problems}
    assert problems["DeviceClass/labelled-by-hand"][0] == "conflict"
    assert "kubectl" in problems["DeviceClass/labelled-by-hand"][1]
    assert problems["ResourceSlice/gpu-node-a"][0] == "conflict"
    assert writers.path_of(vendor) in writer.objects
    assert writers.path_of(labelled) in writer.objects
    other_repo = applying.apply_all(
        writer, cs.compute([], live), [], live, source="another-repo", driver="cu.example.com"
    )
    assert {e.outcome for e in other_repo.entries} == {applying.Outcome.CONFLICT}


def test_waves_put_fence_first_and_a_narrowed_rule_after_the_slice_prunes() -> None:
    old_rule = _obj("DeviceTaintRule", "fence-a", deviceSelector={"driver": "d", "pool": "p"})
    new_rule = _obj(
        "DeviceTaintRule", "fence-a", deviceSelector={"driver": "d", "pool": "p", "device": "x"}
    )
    live = [old_rule, _obj("ResourceSlice", "old-slice"), _obj("DeviceTaintRule", "fence-b")]
    target = [new_rule, _obj("ResourceSlice", "new-slice"), _obj("DeviceClass", "c")]
    waves = order.waves(cs.compute(target, live).entries)
    assert [[(e.key.kind, e.action.value) for e in w] for w in waves] == [
        [("DeviceClass", "create")],
        [("ResourceSlice", "create")],
        [("ResourceSlice", "delete")],
        [("DeviceTaintRule", "update")],
        [("DeviceTaintRule", "delete")],
    ]


def test_a_narrowing_admission_policy_is_widened_first_and_narrowed_last() -> None:
    old = {"expression": "!(c in ['cu-a', 'cu-old'])"}
    new = {"expression": "!(c in ['cu-a', 'cu-new'])"}
    live = [
        _obj("ValidatingAdmissionPolicy", "fence", validations=[old]),
        _obj("DeviceClass", "cu-old"),
        _obj("ResourceSlice", "s", driver="cu.example.com", pool="old"),
    ]
    target = [
        _obj("ValidatingAdmissionPolicy", "fence", validations=[new]),
        _obj("DeviceClass", "cu-new"),
        _obj("ResourceSlice", "s", driver="cu.example.com", pool="new"),
    ]
    changes = cs.compute(target, live)
    waves = order.waves(changes.entries)
    steps = [[(e.subject, e.action.value) for e in w] for w in waves]
    assert steps == [
        [("ValidatingAdmissionPolicy/fence (widened)", "update")],
        [("DeviceClass/cu-new", "create")],
        [("ResourceSlice/s", "update")],
        [("DeviceClass/cu-old", "delete")],
        [("ValidatingAdmissionPolicy/fence", "update")],
    ]
    assert waves[0][0].after is not None
    assert waves[0][0].after["spec"]["validations"] == [new, old], "denies old and new classes"

    writer = fake.MemoryWriter()
    for obj in live:
        writer.apply(obj, dry_run=False)
    stored = list(writer.objects.values())
    result = applying.apply_all(writer, cs.compute(target, stored), target, stored, source=SOURCE)
    assert not result.problems, result.problems
    assert result.writes == 4, "the policy, written twice, is one object"
    [policy] = [o for o in writer.objects.values() if o["kind"] == "ValidatingAdmissionPolicy"]
    assert policy["spec"]["validations"] == [new]
    again = list(writer.objects.values())
    assert cs.compute(target, again).in_sync


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


@dataclass
class CountingWriter(fake.MemoryWriter):
    """Records the subject of every dry-run apply and the kinds whose holders it listed."""

    dry_runs: list[str] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        self.lists.append(kind)
        return super().holders(kind)

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if dry_run:
            self.dry_runs.append(writers.subject_of(obj))
        return super().apply(obj, dry_run=dry_run)


def _claim(name: str, count: int, **extra: Any) -> dict[str, Any]:
    request = {"name": "cu", "exactly": {"deviceClassName": "cu-prod", "count": count}}
    return _obj("ResourceClaim", name, ns="team-a", devices={"requests": [request], **extra})


def test_creates_are_dry_run_once_per_shape_and_a_refused_one_fails_alone_at_its_write() -> None:
    claims = [_claim(f"c{i:02}", i + 1) for i in range(applying.SAMPLE_FROM)]
    configured = _claim("configured", 1, config=[{"opaque": {"driver": "d", "parameters": {}}}])
    target = [*TARGET, *claims, configured]
    writer = CountingWriter(reject={"ResourceClaim/team-a/c07"})
    result = applying.apply_all(writer, cs.compute(target, []), target, [], source=SOURCE)

    # TARGET's four objects, one of the many same-shaped claims, and the one whose spec
    # has other fields: a field the apiserver drops would show in these.
    assert len(writer.dry_runs) == 6, writer.dry_runs
    assert "ResourceClaim/team-a/configured" in writer.dry_runs
    many = {writers.subject_of(c) for c in claims}
    assert len(many & set(writer.dry_runs)) == 1, "one of the many"
    outcomes = {e.subject: e.outcome for e in result.entries}
    assert outcomes.pop("ResourceClaim/team-a/c07") is applying.Outcome.FAILED
    assert set(outcomes.values()) == {applying.Outcome.CREATED}
    assert result.writes == writer.writes == len(target) - 1

    # --dry-run validates every create.
    every = CountingWriter()
    options = applying.ApplyOptions(dry_run=True)
    applying.apply_all(every, cs.compute(target, []), target, [], options, source=SOURCE)
    assert sorted(every.dry_runs) == sorted(writers.subject_of(o) for o in target)
    assert every.writes == 0


def test_a_create_whose_name_is_held_is_a_conflict_found_by_one_list_per_kind() -> None:
    claims = [_claim(f"c{i:02}", 1) for i in range(applying.SAMPLE_FROM)]
    squatter = _claim("c05", 3)
    squatter["metadata"] = {"name": "c05", "namespace": "team-a", "labels": {"team": "b"}}
    writer = CountingWriter()
    writer.apply(squatter, dry_run=False)
    before = dict(writer.objects)
    result = applying.apply_all(writer, cs.compute(claims, []), claims, [], source=SOURCE)
    assert writer.lists == ["ResourceClaim"]
    [problem] = result.problems
    assert (problem.subject, problem.outcome) == ("ResourceClaim/team-a/c05", "conflict")
    assert "name is taken" in problem.reason
    path = writers.path_of(squatter)
    assert writer.objects[path] == before[path], "the squatter is left as it was"
    assert result.writes == len(claims) - 1
    assert writer.dry_runs == ["ResourceClaim/team-a/c00"], "one dry run for one shape"

    # Below SAMPLE_FROM creates of a kind, each is dry-run and no list is read.
    few = claims[:3]
    small = CountingWriter()
    applying.apply_all(small, cs.compute(few, []), few, [], source=SOURCE)
    assert sorted(small.dry_runs) == sorted(writers.subject_of(c) for c in few)
    assert small.lists == []


def _inventory_of(writer: fake.MemoryWriter) -> inventories.Inventory:
    stored = writer.objects.get(f"/api/v1/namespaces/cu-system/configmaps/{_INV}")
    return inventories.parse((stored or {}).get("data"), SOURCE)


_INV = inventories.name(SOURCE)


@dataclass
class _Spy:
    """Records the inventory each write finds, to check "pending before the first create"."""

    inner: fake.MemoryWriter
    seen: list[tuple[str, frozenset[str], int]] = field(default_factory=list)

    def whoami(self) -> str:
        return self.inner.whoami()

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not dry_run:
            inv = _inventory_of(self.inner)
            self.seen.append((writers.subject_of(obj), inv.pending, len(inv.uids)))
        return self.inner.apply(obj, dry_run=dry_run)

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        return self.inner.delete(obj, dry_run=dry_run)

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        return self.inner.replace(obj, dry_run=dry_run)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.inner.get(obj)

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.inner.holders(kind)


def test_the_inventory_records_pending_subjects_first_then_uids_and_decides_ownership() -> None:
    spy = _Spy(fake.MemoryWriter())
    empty = inventories.Inventory(SOURCE, {})
    first = applying.apply_all(
        spy, cs.compute(TARGET, []), TARGET, [], source=SOURCE, inventory=empty
    )
    assert first.writes == 4 and not first.partial
    subjects = {writers.subject_of(o) for o in TARGET}
    assert spy.seen[0] == (f"ConfigMap/cu-system/{_INV}", frozenset(), 0)
    assert all(pending == subjects for _, pending, _ in spy.seen[1:5]), "pending before creates"
    recorded = _inventory_of(spy.inner)
    assert recorded.pending == frozenset() and set(recorded.uids.values()) == subjects

    # In sync: neither the objects nor the inventory are written again.
    live = [o for o in spy.inner.objects.values() if o["kind"] != "ConfigMap"]
    count = spy.inner.writes
    again = applying.apply_all(
        spy, cs.compute(TARGET, live), TARGET, live, source=SOURCE, inventory=recorded
    )
    assert again.writes == 0 and spy.inner.writes == count

    # A tenant's object wearing every mark, but not in the inventory, is never touched.
    squat = fake.MemoryWriter()
    squat.apply(_obj("DeviceClass", "cu-prod", selectors=["tenant"]), dry_run=False)
    held = list(squat.objects.values())
    result = applying.apply_all(
        squat, cs.compute(TARGET, held), TARGET, held, source=SOURCE, inventory=empty
    )
    [problem] = result.problems
    assert problem.subject == "DeviceClass/cu-prod" and problem.outcome == "conflict"
    assert "not in our inventory" in problem.reason
    assert squat.objects["/apis/resource.k8s.io/v1/deviceclasses/cu-prod"]["spec"] == {
        "selectors": ["tenant"]
    }


def test_a_hand_edited_object_is_replaced_whole_then_applied() -> None:
    writer = fake.MemoryWriter()
    applying.apply_all(writer, cs.compute(TARGET, []), TARGET, [], source=SOURCE)
    path = "/apis/resource.k8s.io/v1/deviceclasses/cu-prod"
    edited = writer.objects[path]
    edited["spec"]["config"] = [{"hand": "edit"}]
    edited["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:config": {}}}}
    )
    live = list(writer.objects.values())
    changes = cs.compute(TARGET, live)
    [entry] = [e for e in changes.entries if e.action != "unchanged"]
    assert entry.foreign
    result = applying.apply_all(writer, changes, TARGET, live, source=SOURCE)
    changed = [(e.subject, e.outcome) for e in result.changed]
    assert changed == [("DeviceClass/cu-prod", "configured")]
    assert "config" not in writer.objects[path]["spec"]
    managers = {e["manager"] for e in writer.objects[path]["metadata"]["managedFields"]}
    assert managers == {ownership.FIELD_MANAGER}

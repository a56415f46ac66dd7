"""ResourceSlices: API limits, total CU, and the pool generation rule (properties)."""

from __future__ import annotations

import copy
from typing import Any

import cu_example as ex
from hypothesis import given, settings
from hypothesis import strategies as hs

from reconciler import plan as planning
from reconciler.model import observed as obs
from reconciler.model import quantity
from reconciler.plan import capacity, slices

_MODELS = {"nvidia": ("H100", "A100"), "biren": ("BR104",), "hygon": ("Z100",)}


@hs.composite
def fleets(draw: hs.DrawFn) -> tuple[obs.ObservedState, Any]:
    nodes = draw(hs.integers(1, 4))
    raw_slices = []
    for n in range(nodes):
        vendor = draw(hs.sampled_from(sorted(_MODELS)))
        model = draw(hs.sampled_from(_MODELS[vendor]))
        count = draw(hs.integers(1, 150))
        taints = {0: [{"key": "x", "effect": "NoSchedule"}]} if draw(hs.booleans()) else None
        raw_slices.append(ex.vendor_slice(f"n{n}", vendor, model, count, taints=taints))
    raw = obs.RawObjects(
        nodes=tuple(ex.node(f"n{n}") for n in range(nodes)), slices=tuple(raw_slices)
    )
    mode = draw(hs.sampled_from(["Whole", "Fractional"]))
    sharing: dict[str, Any] = {"mode": mode}
    if mode == "Fractional":
        sharing["minStep"] = 5
    pool = ex.pool(
        "p",
        {
            "selector": {"vendors": ["nvidia", "biren", "hygon"]},
            "sharing": sharing,
            "workloadMix": {"decode": 1.0},
        },
    )
    return obs.build(raw, ex.adapters(), ex.DRIVER), ex.desired(pools=(pool,), claims=())


def _slices(result: planning.Plan) -> list[dict[str, Any]]:
    return [o for o in result.objects if o["kind"] == "ResourceSlice"]


@settings(max_examples=40, deadline=None)
@given(fleets())
def test_slices_respect_api_limits_and_publish_the_sum_of_devices(fleet: Any) -> None:
    observed, desired = fleet
    result = planning.plan(desired, observed)
    published = 0
    pools: dict[str, list[dict[str, Any]]] = {}
    for s in _slices(result):
        devices = s["spec"]["devices"]
        limit = 64 if any("taints" in d for d in devices) else 128
        assert 0 < len(devices) <= limit
        for d in devices:
            assert len(d["attributes"]) + len(d["capacity"]) <= 32
            assert len(d["name"]) <= 63
            published += int(quantity.parse_quantity(d["capacity"]["cu"]["value"]) * 1000)
        pools.setdefault(s["spec"]["pool"]["name"], []).append(s)
    for members in pools.values():
        counts = {m["spec"]["pool"]["resourceSliceCount"] for m in members}
        generations = {m["spec"]["pool"]["generation"] for m in members}
        assert counts == {len(members)} and len(generations) == 1
    pool_caps, _ = capacity.compute(desired, observed)
    assert published == sum(m.milli_cu for m in pool_caps["p"].members)


@settings(max_examples=30, deadline=None)
@given(fleets(), hs.integers(0, 3))
def test_generation_changes_exactly_when_pool_content_changes(fleet: Any, bump: int) -> None:
    observed, desired = fleet
    first = planning.plan(desired, observed)
    live = copy.deepcopy(list(first.objects))
    for s in live:
        if s["kind"] == "ResourceSlice":
            s["spec"]["pool"]["generation"] += bump  # whatever the live generation is
    again = planning.plan(desired, observed, live)
    gen = {s["metadata"]["name"]: s["spec"]["pool"]["generation"] for s in _slices(again)}
    assert gen == {
        s["metadata"]["name"]: s["spec"]["pool"]["generation"]
        for s in live
        if s["kind"] == "ResourceSlice"
    }, "unchanged content keeps the live generation"
    # Change one device of the first node's pool: only that pool moves to live max + 1.
    target = _slices(again)[0]
    node = target["spec"]["pool"]["name"]
    changed = copy.deepcopy(live)
    for s in changed:
        if s["kind"] == "ResourceSlice" and s["spec"]["pool"]["name"] == node:
            s["spec"]["devices"][0]["attributes"]["model"] = {"string": "stale"}
    third = planning.plan(desired, observed, changed)
    for s in _slices(third):
        before = next(x for x in changed if x["metadata"]["name"] == s["metadata"]["name"])
        expected = before["spec"]["pool"]["generation"] + (
            1 if s["spec"]["pool"]["name"] == node else 0
        )
        assert s["spec"]["pool"]["generation"] == expected


def test_one_pool_per_node_and_deterministic_names() -> None:
    result = planning.plan(ex.desired(), ex.observed())
    got = [
        (s["metadata"]["name"], s["spec"]["nodeName"], s["spec"]["pool"]["name"])
        for s in _slices(result)
    ]
    assert got == [
        ("cu-n1-0", "n1", "n1"),
        ("cu-n2-0", "n2", "n2"),
        ("cu-n3-0", "n3", "n3"),
        ("cu-n4-0", "n4", "n4"),
    ]


def test_fractional_devices_carry_request_policy_and_multiple_allocations() -> None:
    result = planning.plan(ex.desired(), ex.observed())
    [n4] = [s for s in _slices(result) if s["spec"]["nodeName"] == "n4"]
    healthy, sick = n4["spec"]["devices"]
    assert healthy["allowMultipleAllocations"] is True
    assert healthy["capacity"]["cu"] == {
        "value": "18973m",
        "requestPolicy": {"default": "5", "validRange": {"min": "5", "step": "5"}},
    }
    assert sick["taints"] == [
        {"key": obs.UNHEALTHY_TAINT_KEY, "effect": "NoSchedule", "timeAdded": obs.STABLE_TIME}
    ]


def test_multi_vendor_pool_devices_carry_every_vendors_uuid_attribute() -> None:
    result = planning.plan(ex.desired(), ex.observed())
    [n1] = [s for s in _slices(result) if s["spec"]["nodeName"] == "n1"]
    attrs = n1["spec"]["devices"][0]["attributes"]
    assert attrs["gpu.nvidia.com/uuid"]["string"].startswith("GPU-")
    assert attrs["gpu.biren.example.com/uuid"] == {"string": slices.NOT_THIS_VENDOR}

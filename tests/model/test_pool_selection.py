"""Pool membership (shared by validate and plan) and the static overlap test."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import selection


def sel(**spec: Any) -> docs.DeviceSelector:
    return docs.DeviceSelector.model_validate(spec)


def device(
    vendor: str = "nvidia", model: str = "L40S", memory: int = 48 * 2**30
) -> obs.ObservedDevice:
    return obs.ObservedDevice(
        id=obs.DeviceId("gpu.nvidia.com", "n1", "gpu-0"),
        node="n1",
        vendor=vendor,
        model=model,
        memory_bytes=memory,
        uuid="u",
        uuid_attribute="gpu.nvidia.com/uuid",
        uuid_raw=(),
        driver_version="550.1",
    )


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {}, True),
        ({"vendors": ["biren"]}, {}, False),
        ({"models": ["L40S"], "minMemory": "48Gi"}, {}, True),
        ({"minMemory": "64Gi"}, {}, False),
        ({"attributes": {"driverVersion": "550.1"}}, {}, True),
        ({"attributes": {"driverVersion": "535"}}, {}, False),
        ({"nodeSelector": {"matchLabels": {"tier": "dev"}}}, {"tier": "dev"}, True),
        ({"nodeSelector": {"matchLabels": {"tier": "dev"}}}, {"tier": "prod"}, False),
        (
            {
                "nodeSelector": {
                    "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]
                }
            },
            {},
            True,
        ),
        (
            {"nodeSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}},
            {},
            False,
        ),
    ],
)
def test_selects(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selection.selects(sel(**selector), device(), labels) is expected


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ({}, {}, True),
        ({"vendors": ["nvidia"]}, {"vendors": ["biren"]}, False),
        ({"vendors": ["nvidia"]}, {"models": ["L40S"]}, True),
        ({"models": ["A"]}, {"models": ["B"]}, False),
        (
            {"nodeSelector": {"matchLabels": {"t": "a"}}},
            {"nodeSelector": {"matchLabels": {"t": "b"}}},
            False,
        ),
        (
            {"nodeSelector": {"matchLabels": {"t": "a"}}},
            {
                "nodeSelector": {
                    "matchExpressions": [{"key": "t", "operator": "In", "values": ["b", "c"]}]
                }
            },
            False,
        ),
        (
            {"nodeSelector": {"matchLabels": {"t": "a"}}},
            {"nodeSelector": {"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}},
            False,
        ),
        (
            {"nodeSelector": {"matchLabels": {"t": "a"}}},
            {
                "nodeSelector": {
                    "matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]
                }
            },
            False,
        ),
        (
            {"nodeSelector": {"matchLabels": {"t": "a"}}},
            {"nodeSelector": {"matchLabels": {"u": "b"}}},
            True,
        ),
        ({"attributes": {"driverVersion": "1"}}, {"attributes": {"driverVersion": "2"}}, False),
    ],
)
def test_may_overlap(a: dict[str, Any], b: dict[str, Any], overlap: bool) -> None:
    assert selection.may_overlap(sel(**a), sel(**b)) is overlap
    assert selection.may_overlap(sel(**b), sel(**a)) is overlap


def test_matching_answers_selects_for_every_device_and_selector() -> None:
    """The per-node shortcut used by validation and planning is exactly ``selects``."""
    selectors = [
        sel(),
        sel(vendors=["nvidia"], nodeSelector={"matchLabels": {"tier": "dev"}}),
        sel(models=["H100"], minMemory="64Gi"),
        sel(nodeSelector={"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
        sel(attributes={"node": "n2"}),
    ]
    labels = {"n1": {"tier": "dev"}, "n2": {"tier": "prod"}}  # n3 has no Node object
    devices = [
        obs.ObservedDevice(
            id=obs.DeviceId("gpu.nvidia.com", node, f"gpu-{i}"),
            node=node,
            vendor=vendor,
            model=model,
            memory_bytes=memory,
            uuid=f"u-{node}-{i}",
            uuid_attribute="gpu.nvidia.com/uuid",
            uuid_raw=(),
            driver_version="550.1",
        )
        for node in ("n1", "n2", "n3")
        for i, (vendor, model, memory) in enumerate(
            [("nvidia", "H100", 80 * 2**30), ("nvidia", "L40S", 48 * 2**30), ("biren", "H100", 0)]
        )
    ]
    found = list(selection.matching(selectors, devices, labels))
    assert [d for d, _ in found] == devices
    selected = [
        [i for i, s in enumerate(selectors) if selection.selects(s, d, labels.get(d.node, {}))]
        for d in devices
    ]
    # The empty selector (index 0) takes only what no other selector takes.
    expected = [[i for i in x if i != 0] or x for x in selected]
    assert [indexes for _, indexes in found] == expected
    assert len({len(i) for i in selected}) > 2  # the cases differ: one, two, several
    assert [0] in expected and expected != selected  # the rest, and what it gave up


def test_an_empty_selector_takes_the_rest() -> None:
    """Issue 21 item 8: a pool for "the rest" of the devices could not be written (its empty
    selector overlapped every other pool: CU402 once per pair)."""
    nvidia, biren = device(), device(vendor="biren", model="BR104")
    specific, rest = sel(vendors=["nvidia"]), sel()
    got = dict((d.vendor, i) for d, i in selection.matching([rest, specific], [nvidia, biren], {}))
    assert got == {"nvidia": [1], "biren": [0]}
    assert not selection.may_overlap(specific, rest)
    assert not selection.may_overlap(rest, specific)
    assert selection.may_overlap(rest, sel()), "two pools for the rest do overlap"
    # Two specific pools that both match stay ambiguous (reported, as before).
    both = list(selection.matching([specific, sel(models=["L40S"]), rest], [nvidia], {}))
    assert both[0][1] == [0, 1]

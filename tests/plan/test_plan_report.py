"""Reading figures back from objects: the full quantity grammar, never a silent 0."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.plan import claims, report


def _slice(cu: str) -> dict[str, Any]:
    return {
        "kind": "ResourceSlice",
        "spec": {
            "driver": "cu.example.com",
            "devices": [
                {"attributes": {"pool": {"string": "p"}}, "capacity": {"cu": {"value": cu}}}
            ],
        },
    }


@pytest.mark.parametrize(
    ("cu", "milli"), [("1e3", 1_000_000), ("12e6", 12_000_000_000), ("5n", 0), ("1500m", 1500)]
)
def test_published_cu_reads_every_quantity_form(cu: str, milli: int) -> None:
    assert report.published_cu([_slice(cu)], "cu.example.com") == {"p": milli}


def test_an_unreadable_capacity_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="unreadable CU quantity 'lots'"):
        report.published_cu([_slice("lots")], "cu.example.com")


def _claim(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "ResourceClaim",
        "metadata": {
            "labels": {"cu-reconciler.io/tenant": "t", "cu-reconciler.io/pool": "p"},
            "annotations": annotations,
        },
        "spec": {
            "devices": {
                "requests": [{"exactly": {"count": 2, "capacity": {"requests": {"cu": "40"}}}}]
            }
        },
    }


def test_a_hand_edited_charge_annotation_falls_back_to_the_request() -> None:
    assert report.claimed_cu([_claim({claims.CHARGED_ANNOTATION: "85"})]) == {("t", "p"): 85_000}
    assert report.claimed_cu([_claim({claims.CHARGED_ANNOTATION: "oops"})]) == {("t", "p"): 80_000}

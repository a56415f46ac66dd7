"""Renderers: text colour, markdown budget, json shape."""

from __future__ import annotations

import json

import cu_example as ex
import pytest

from reconciler import plan as planning
from reconciler.diff import changeset, render, yamltext


def _preview() -> render.Preview:
    result = planning.plan(ex.desired(), ex.observed())
    return render.Preview(changeset.compute(result.objects, result.live), result.report)


def test_text_has_colour_only_when_asked() -> None:
    preview = _preview()
    assert "\033[" not in render.text(preview, color=False)
    assert "\033[32m+" in render.text(preview, color=True)


def test_json_carries_changes_pools_and_claims() -> None:
    doc = json.loads(render.json_text(_preview()))
    change = doc["changes"][0]
    assert set(change) == {"action", "apiVersion", "kind", "namespace", "name", "diff"}
    assert {p["pool"]: p["totalCU"] for p in doc["pools"]} == {"infer": "18.973", "train": "590"}
    assert {c["claim"]: c["status"] for c in doc["claims"]}["lab-b"] == "Pending"
    assert doc["summary"]["create"] == len(doc["changes"])


@pytest.mark.parametrize("limit", [pytest.param(n, id=f"limit-{n}") for n in (4000, 20000, 65000)])
def test_markdown_stays_under_budget_by_summarising(limit: int) -> None:
    text = render.markdown(_preview(), limit=limit)
    assert len(text) <= limit
    assert "#### CU capacity per pool" in text
    if limit < 20000:
        assert "Not shown in detail:" in text


def test_yaml_round_trips_through_a_yaml_parser() -> None:
    from ruamel.yaml import YAML

    objects = planning.plan(ex.desired(), ex.observed()).objects
    assert list(YAML(typ="safe").load_all(yamltext.dump_all(objects))) == list(objects)

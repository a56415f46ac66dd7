"""Shared parsed JSON (model/sharing.py): equal to what it shares, never merging values
that compare equal but are different JSON, and a table that does not keep what is gone."""

from __future__ import annotations

import copy
import json
from typing import Any

from reconciler.model import sharing


def _device(name: str, pool: str = "inference") -> dict[str, Any]:
    return {
        "name": name,
        "attributes": {"pool": {"string": pool}, "index": {"int": 1}, "ok": {"bool": True}},
        "capacity": {"cu": {"value": "25"}},
    }


def test_a_shared_object_is_equal_and_its_input_untouched() -> None:
    raw = {"kind": "ResourceSlice", "spec": {"devices": [_device("a"), _device("b")]}}
    before = copy.deepcopy(raw)
    out = sharing.Sharer().share(raw)
    assert out == raw == before
    assert json.dumps(out, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert out is not raw and out["spec"]["devices"][0] is not raw["spec"]["devices"][0]


def test_equal_small_maps_become_one_instance() -> None:
    sharer = sharing.Sharer()
    a = sharer.share(_device("a"))
    b = sharer.share(_device("b"))
    assert a["attributes"]["pool"] is b["attributes"]["pool"]
    assert a["capacity"]["cu"] is b["capacity"]["cu"]
    assert a is not b and a["attributes"] is not b["attributes"], "only small maps of scalars"


def test_values_equal_in_python_but_not_in_json_stay_apart() -> None:
    sharer = sharing.Sharer()
    found = [sharer.share({"v": v}) for v in (True, 1, 1.0, "1", None, 0, False)]
    assert [json.dumps(f) for f in found] == [
        '{"v": true}',
        '{"v": 1}',
        '{"v": 1.0}',
        '{"v": "1"}',
        '{"v": null}',
        '{"v": 0}',
        '{"v": false}',
    ]


def test_a_rebuild_keeps_the_instances_in_use_and_drops_the_rest() -> None:
    sharer = sharing.Sharer()
    kept = sharer.share(_device("a", pool="kept"))
    sharer.share(_device("b", pool="gone"))
    sharer.rebuild([kept])
    again = sharer.share(_device("c", pool="kept"))
    assert again["attributes"]["pool"] is kept["attributes"]["pool"]
    assert all(v != "gone" for key in sharer._maps for _, _, v in key)


def test_the_table_is_crowded_only_after_doubling() -> None:
    sharer = sharing.Sharer()
    for i in range(2 * sharing.MIN_TABLE):
        sharer.share({"string": f"u-{i}"})
    assert not sharer.crowded()
    sharer.share({"string": "one-more"})
    assert sharer.crowded()
    sharer.rebuild([])
    assert not sharer.crowded()

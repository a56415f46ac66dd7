"""Per-object facts (plan/facts.py): computed once per object, never for a look-alike,
forgotten when not asked for a turn."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.plan import facts


def test_records_keep_every_fact_of_an_object_in_one_record_for_two_turns() -> None:
    calls: list[tuple[str, str]] = []

    def upper(obj: Mapping[str, Any]) -> str:
        calls.append(("upper", obj["name"]))
        return str(obj["name"]).upper()

    def size(obj: Mapping[str, Any]) -> int:
        calls.append(("size", obj["name"]))
        return len(obj["name"])

    records = facts.Records([upper, size])
    first, second = records.fact(0), records.fact(1)
    a, b = {"name": "ab"}, {"name": "ab"}
    assert first(a) == first(a) == "AB" and second(a) == second(a) == 2
    assert calls == [("upper", "ab"), ("size", "ab")], "each fact computed once"
    assert first(b) == "AB" and len(calls) == 3, "an equal object is another object"
    records.turn()
    assert second(a) == 2 and len(calls) == 3, "asked in the last turn: remembered"
    records.turn()
    records.turn()
    assert first(a) == "AB" and len(calls) == 4, "not asked for a turn: forgotten"

"""Per-object facts (plan/facts.py): computed once per object, never for a look-alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.plan import facts


def test_a_fact_is_computed_once_per_object_and_forgotten_two_turns_later() -> None:
    calls: list[str] = []

    def name(obj: Mapping[str, Any]) -> str:
        calls.append(obj["name"])
        return str(obj["name"])

    cache = facts.PerObject(name)
    a, b = {"name": "a"}, {"name": "a"}
    assert cache(a) == cache(a) == "a" and calls == ["a"]
    assert cache(b) == "a" and calls == ["a", "a"], "an equal object is another object"
    cache.turn()
    assert cache(a) == "a" and calls == ["a", "a"], "asked in the last turn: remembered"
    cache.turn()
    cache.turn()
    assert cache(a) == "a" and calls == ["a", "a", "a"], "not asked for a turn: forgotten"

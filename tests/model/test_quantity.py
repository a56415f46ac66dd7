"""The quantity grammar of k8s.io/apimachinery resource.Quantity, case by case."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import cu_example as ex
import pytest

from reconciler.model import quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("1", 1),
        ("-1", -1),
        ("+1", 1),
        ("1.", 1),
        (".5", Fraction(1, 2)),
        ("1.5", Fraction(3, 2)),
        ("1e3", 1000),
        ("1E3", 1000),
        ("12e6", 12_000_000),
        ("1e-3", Fraction(1, 1000)),
        ("1.5e+2", 150),
        ("5n", Fraction(5, 10**9)),
        ("5u", Fraction(5, 10**6)),
        ("1500m", Fraction(3, 2)),
        ("1k", 1000),
        ("1M", 10**6),
        ("1G", 10**9),
        ("1T", 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("1Ki", 1024),
        ("80Gi", 80 * 2**30),
        ("1Ei", 2**60),
        ("-5Mi", -5 * 2**20),
    ],
)
def test_upstream_grammar_is_accepted_exactly(text: str, value: Any) -> None:
    assert quantity.parse_quantity(text) == Fraction(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "1Gb",
        "1KI",
        "1ki",
        "e3",
        "1e",
        "1e1.5",
        "1.2.3",
        "--1",
        "1Mi2",
        "NaN",
        "1e999",
    ],
)
def test_anything_else_is_an_error_never_zero(text: str) -> None:
    with pytest.raises(ValueError):
        quantity.parse_quantity(text)


@pytest.mark.parametrize("value", ["50", "NaN", "1e3", True])
def test_cu_is_never_coerced_from_a_string_or_bool(value: Any) -> None:
    with pytest.raises(ValueError):
        ex.claim("x", {"tenant": "t", "pool": "p", "cu": value})


@pytest.mark.parametrize(
    ("field", "value"), [("priority", "5"), ("mayBorrow", "yes"), ("preemptible", 1)]
)
def test_tenant_fields_are_not_coerced(field: str, value: Any) -> None:
    with pytest.raises(ValueError):
        ex.tenant("t", {"namespaces": ["a"], "priority": 1, field: value})

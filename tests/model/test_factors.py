"""The one merge rule over FactorTables, with provenance (model.factors.merge_factors)."""

from __future__ import annotations

import pytest

from reconciler.model import documents as docs
from reconciler.model import factors

REF = "A100-SXM4-80GB"


def table(name: str, *rows: tuple[str, str | None, float, str]) -> docs.FactorTable:
    return docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": name},
            "spec": {
                "referenceModel": REF,
                "factors": [
                    {"deviceModel": m, "value": v, "source": s}
                    | ({"workloadClass": c} if c is not None else {})
                    for m, c, v, s in rows
                ],
            },
        }
    )


@pytest.mark.parametrize(
    ("tables", "winner", "value"),
    [
        pytest.param(
            [table("default", ("L40S", "decode", 0.42, "spec"))],
            "default",
            0.42,
            id="only-one",
        ),
        pytest.param(
            [
                table("zzz", ("L40S", "decode", 0.42, "spec")),
                table("learned", ("L40S", "decode", 0.40, "learned")),
            ],
            "learned",
            0.40,
            id="learned-beats-spec-whatever-the-name",
        ),
        pytest.param(
            [
                table("b", ("L40S", "decode", 0.41, "spec")),
                table("a", ("L40S", "decode", 0.42, "spec")),
            ],
            "b",
            0.41,
            id="spec-equals-name-sorting-last-wins",
        ),
        pytest.param(
            [
                table("learned-z", ("L40S", "decode", 0.39, "learned")),
                table("learned", ("L40S", "decode", 0.40, "learned")),
            ],
            "learned-z",
            0.39,
            id="learned-equals-name-sorting-last-wins",
        ),
    ],
)
def test_merge_keeps_the_winning_row_and_its_table(
    tables: list[docs.FactorTable], winner: str, value: float
) -> None:
    (merged,) = factors.merge_factors(tables)
    assert (merged.table, merged.factor.value, merged.key) == (winner, value, ("L40S", "decode"))
    # the planner's index is the same merge, values only
    index = factors.index_factors(tables, REF)
    assert index.values == {("L40S", "decode"): value}
    assert factors.index_factors(list(reversed(tables)), REF).values == index.values


def test_class_less_and_class_rows_are_distinct_keys() -> None:
    tables = [
        table("default", ("Z100", None, 0.3, "spec"), ("Z100", "decode", 0.45, "spec")),
        table("learned", ("Z100", "prefill", 0.08, "learned")),
    ]
    merged = {m.key: m.table for m in factors.merge_factors(tables)}
    assert merged == {
        ("Z100", None): "default",
        ("Z100", "decode"): "default",
        ("Z100", "prefill"): "learned",
    }
    index = factors.index_factors(tables, REF)
    assert index.lookup("Z100", "embedding") == 0.3  # class-less fallback
    assert index.lookup("Z100", "prefill") == 0.08


def test_merged_table_is_the_published_view() -> None:
    tables = [
        table("default", ("L40S", "decode", 0.42, "spec"), ("L40S", "prefill", 1.16, "spec")),
        table("learned", ("L40S", "decode", 0.40, "learned")),
    ]
    view = factors.merged_table(tables, REF)
    assert view.spec.reference_model == REF
    assert {(f.device_model, f.workload_class, f.value) for f in view.spec.factors} == {
        ("L40S", "decode", 0.40),
        ("L40S", "prefill", 1.16),
    }
    assert factors.merged_table([], REF).spec.factors == []

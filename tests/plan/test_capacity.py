"""CU arithmetic, hand-checked on the example fleet (tests/cu_example.py)."""

from __future__ import annotations

import math

import cu_example as ex
import pytest

from reconciler.model import factors, units
from reconciler.model import observed as obs
from reconciler.plan import capacity


def test_example_pool_totals_are_hand_checked() -> None:
    pools, findings = capacity.compute(ex.desired(), ex.observed())
    train, infer = pools["train"], pools["infer"]
    # 2·155 + 2·100 + 2·40
    assert train.total_milli == 590_000
    assert [(line.model, line.devices, line.milli_each) for line in train.lines] == [
        ("A100-SXM4-80GB", 2, 100_000),
        ("BR104", 2, 40_000),
        ("H100-SXM5-80GB", 2, 155_000),
    ]
    # √(0.45 · 0.08) · 100 = 18.97366… → 18.973 (rounded down), one of two devices unhealthy
    assert infer.total_milli == 18_973
    assert infer.lines[0].unusable == 1
    assert findings == ()


@pytest.mark.parametrize(
    ("mix", "expected"),
    [
        pytest.param({}, 1.55, id="no-mix-uses-reference-class"),
        pytest.param({"prefill": 1.0}, 2.6, id="one-class"),
        pytest.param({"decode": 0.5, "prefill": 0.5}, math.sqrt(1.55 * 2.6), id="geometric-mean"),
        pytest.param({"decode": 0.5, "embedding": 0.5}, None, id="missing-class-is-none"),
    ],
)
def test_blended_factor(mix: dict[str, float], expected: float | None) -> None:
    index = factors.index_factors([ex.factor_table()], "A100-SXM4-80GB")
    value = factors.blended_factor(index, "H100-SXM5-80GB", mix, "decode")
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected, rel=1e-12)


def test_learned_factor_beats_spec_and_reference_defaults_to_one() -> None:
    learned = ex.factor_table([{"deviceModel": "BR104", "value": 0.5, "source": "learned"}])
    spec_only = ex.factor_table()
    index = factors.index_factors([learned, spec_only], "A100-SXM4-80GB")
    assert index.lookup("BR104", None) == 0.5
    empty = factors.index_factors([], "A100-SXM4-80GB")
    assert empty.lookup("A100-SXM4-80GB", "decode") == 1.0
    assert empty.lookup("H100-SXM5-80GB", "decode") is None


def test_device_without_factor_is_reported_and_not_published() -> None:
    desired = ex.desired(tables=[ex.factor_table()])
    table = ex.factor_table()
    no_br = table.model_copy(
        update={
            "spec": table.spec.model_copy(
                update={"factors": [f for f in table.spec.factors if f.device_model != "BR104"]}
            )
        }
    )
    desired = ex.desired(tables=[no_br])
    pools, findings = capacity.compute(desired, ex.observed())
    assert pools["train"].total_milli == 510_000
    assert {f.code for f in findings} == {obs.FindingCode.NO_FACTOR}
    assert len(findings) == 2


@pytest.mark.parametrize(
    ("factor", "milli"),
    [
        pytest.param(0.29, 29_000, id="float-noise-0.29"),
        pytest.param(1.55, 155_000, id="exact"),
        pytest.param(0.123456, 12_345, id="rounded-down"),
    ],
)
def test_to_milli_is_exact_for_decimal_factors(factor: float, milli: int) -> None:
    assert units.to_milli(factor, 100) == milli


def test_headroom_is_subtracted() -> None:
    pool = ex.pool("train", {"selector": {"vendors": ["nvidia", "biren"]}, "headroomPercent": 10})
    pools, _ = capacity.compute(ex.desired(pools=(pool,)), ex.observed())
    assert pools["train"].admittable_milli == 531_000

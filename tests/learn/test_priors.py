"""Spec priors: the right roofline basis per class, shrunk toward 1, wide where unreliable."""

from __future__ import annotations

import math

import pytest

from reconciler.learn import priors, specs

WC = specs.WorkloadClass


def test_reference_is_exact() -> None:
    table = priors.spec_priors()
    for cls in WC:
        p = table[(specs.REFERENCE_MODEL, cls)]
        assert p.value == 1.0 and p.tau == 0.0


@pytest.mark.parametrize(
    ("cls", "expected_ratio"),
    [
        pytest.param(WC.PREFILL, 989.4 / 312.0, id="prefill-tflops"),
        pytest.param(WC.EMBEDDING, 989.4 / 312.0, id="embedding-tflops"),
        pytest.param(WC.DECODE, 3350.0 / 2039.0, id="decode-bandwidth"),
    ],
)
def test_basis_follows_the_bottleneck(cls: WC, expected_ratio: float) -> None:
    p = priors.spec_priors()[("H100-SXM5-80GB", cls)]
    assert p.spec_ratio == pytest.approx(expected_ratio)
    # specs over-predict the faster chip: the prior sits ~10% below the raw ratio
    assert p.value == pytest.approx(expected_ratio * math.exp(-priors.SPEC_BIAS))


def test_slower_chip_is_pulled_up_never_past_one() -> None:
    p = priors.spec_priors()[("Z100", WC.PREFILL)]
    assert p.spec_ratio < p.value < 1.0
    assert priors.shrink(0.05) == 0.0 and priors.shrink(-0.05) == 0.0


def test_prior_width_depends_on_reliability() -> None:
    table = priors.spec_priors()
    assert table[("H100-SXM5-80GB", WC.DECODE)].tau < table[("BR104", WC.DECODE)].tau
    assert table[("BR104", WC.DECODE)].tau < table[("Z100", WC.DECODE)].tau


def test_memory_gate() -> None:
    table = priors.spec_priors(min_memory_gb={WC.DECODE: 64.0})
    assert not table[("L40S", WC.DECODE)].feasible
    assert table[("H100-SXM5-80GB", WC.DECODE)].feasible
    assert table[("L40S", WC.PREFILL)].feasible


def test_every_spec_names_its_source() -> None:
    for spec in specs.SPECS.values():
        assert spec.source and spec.fp16_tflops > 0 and spec.memory_bandwidth_gbs > 0

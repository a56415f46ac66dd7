"""Precision weighting: few records stay near the prior, many follow the data."""

from __future__ import annotations

import math

import pytest

from reconciler.learn import combine, fit, priors, specs

WC = specs.WorkloadClass
PRIOR = priors.Prior(
    "BR104", WC.DECODE, 0.40, math.log(0.40), 0.5, specs.Reliability.VENDOR_CLAIMED, True, "claim"
)


def estimate(log_factor: float, se: float, df: int = 7) -> fit.Estimate:
    return fit.Estimate("BR104", WC.DECODE, log_factor, se, df, samples=500, nodes=df + 1)


def test_precise_data_dominate() -> None:
    post = combine.combine_one(PRIOR, estimate(math.log(0.30), 0.02), 0.95)
    assert post is not None
    assert post.value == pytest.approx(0.30, rel=0.01)
    assert post.prior_weight < 0.01


def test_vague_data_stay_near_the_prior() -> None:
    post = combine.combine_one(PRIOR, estimate(math.log(0.30), 2.0), 0.95)
    assert post is not None
    assert post.value == pytest.approx(0.40, rel=0.02)
    assert post.prior_weight > 0.9


def test_no_data_is_the_prior_with_its_width() -> None:
    post = combine.combine_one(PRIOR, None, 0.95)
    assert post is not None and not post.learned
    assert post.value == pytest.approx(0.40) and post.sd == 0.5


def test_few_clusters_widen_the_effective_sd() -> None:
    assert (
        combine.effective_sd(estimate(0.0, 0.1, df=3), 0.95)
        > combine.effective_sd(estimate(0.0, 0.1, df=60), 0.95)
        > 0.1
    )


def test_device_value_is_a_weighted_geometric_mean() -> None:
    values = {WC.PREFILL: 2.6, WC.DECODE: 1.55}
    got = combine.device_value(values, {"prefill": 0.3, "decode": 0.7})
    assert got == pytest.approx(math.exp(0.3 * math.log(2.6) + 0.7 * math.log(1.55)))
    # a class the device has no value for is dropped and the weights renormalised
    assert combine.device_value({WC.DECODE: 2.0}, {"prefill": 0.3, "decode": 0.7}) == 2.0

"""Precision-weighted combination of the spec prior and the learned estimate (log domain).

Conjugate normal: ``μ = (μ₀/τ² + β̂/s²) / (1/τ² + 1/s²)``, ``var = 1/(1/τ² + 1/s²)``.
A device with few records (large ``s``) stays near its prior; with clustered data from a
handful of nodes the data dominate, which is right because spec ratios are off by ~20%.
The data's Student-t interval is turned into an equivalent normal sd at the requested
confidence, so a few-node estimate is not treated as more precise than it is.
Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

from reconciler.learn import fit, priors, specs

Key = tuple[str, specs.WorkloadClass]


@dataclass(frozen=True, slots=True)
class Posterior:
    device_model: str
    workload_class: specs.WorkloadClass
    log_mean: float
    sd: float
    confidence: float
    prior: priors.Prior | None
    estimate: fit.Estimate | None
    prior_weight: float  # share of the precision that came from the prior (0..1)

    @property
    def value(self) -> float:
        return math.exp(self.log_mean)

    @property
    def learned(self) -> bool:
        return self.estimate is not None and self.estimate.identified

    def interval(self) -> tuple[float, float]:
        z = float(stats.norm.ppf(0.5 + self.confidence / 2.0))
        return math.exp(self.log_mean - z * self.sd), math.exp(self.log_mean + z * self.sd)

    def relative_width(self) -> float:
        lo, hi = self.interval()
        return (hi - lo) / self.value


def effective_sd(estimate: fit.Estimate, confidence: float) -> float:
    """The normal sd whose interval matches the estimate's t interval at ``confidence``."""
    q = 0.5 + confidence / 2.0
    return estimate.se * float(stats.t.ppf(q, max(estimate.df, 1)) / stats.norm.ppf(q))


def combine_one(
    prior: priors.Prior | None, estimate: fit.Estimate | None, confidence: float
) -> Posterior | None:
    has_data = estimate is not None and estimate.identified and math.isfinite(estimate.se)
    if prior is None and not has_data:
        return None
    if not has_data:
        assert prior is not None
        return Posterior(
            prior.device_model,
            prior.workload_class,
            prior.log_mean,
            prior.tau,
            confidence,
            prior,
            estimate,
            1.0,
        )
    assert estimate is not None
    s = effective_sd(estimate, confidence)
    if prior is None or (prior.tau <= 0.0 and prior.log_mean == 0.0 and s == 0.0):
        return Posterior(
            estimate.device_model,
            estimate.workload_class,
            estimate.log_factor,
            s,
            confidence,
            prior,
            estimate,
            0.0,
        )
    if s == 0.0:  # the reference: exact by definition
        return Posterior(
            estimate.device_model,
            estimate.workload_class,
            0.0,
            0.0,
            confidence,
            prior,
            estimate,
            0.0,
        )
    w_data = 1.0 / (s * s)
    w_prior = 1.0 / (prior.tau * prior.tau) if prior.tau > 0 else 0.0
    mean = (w_prior * prior.log_mean + w_data * estimate.log_factor) / (w_prior + w_data)
    return Posterior(
        estimate.device_model,
        estimate.workload_class,
        mean,
        math.sqrt(1.0 / (w_prior + w_data)),
        confidence,
        prior,
        estimate,
        w_prior / (w_prior + w_data),
    )


def combine(
    prior_table: Mapping[Key, priors.Prior],
    estimates: Mapping[Key, fit.Estimate],
    confidence: float = 0.95,
) -> dict[Key, Posterior]:
    """A posterior for every key with a prior or an estimate."""
    out: dict[Key, Posterior] = {}
    for key in sorted(set(prior_table) | set(estimates)):
        post = combine_one(prior_table.get(key), estimates.get(key), confidence)
        if post is not None:
            out[key] = post
    return out


def device_value(
    values: Mapping[specs.WorkloadClass, float], mix: Mapping[str, float]
) -> float | None:
    """A device's single CU value: the weighted geometric mean over the class mix.

    Geometric, because factors are ratios (Fleming & Wallace 1986); classes missing from
    ``values`` are left out and the remaining weights renormalised.
    """
    num = 0.0
    den = 0.0
    for cls, w in mix.items():
        parsed = specs.parse_class(cls)
        v = values.get(parsed) if parsed is not None else None
        if v is None or v <= 0:
            continue
        num += w * math.log(v)
        den += w
    return math.exp(num / den) if den > 0 else None


__all__ = ["Posterior", "combine", "combine_one", "device_value", "effective_sd"]

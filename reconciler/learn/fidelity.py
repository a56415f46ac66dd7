"""Quota fidelity: how far a CU guarantee is from the throughput a tenant actually gets.

A tenant guaranteed G CU in a pool receives devices whose published CU values add up to
G. What it gets is the devices' true speed. With perfect factors every CU delivers the
same throughput wherever it lands; with spec factors or with "one GPU = one unit", the
tenant placed on an over-rated device gets less than promised and one on an under-rated
device gets more. We measure that gap by simulating allocations: random device orders,
filled until the guarantee is met, over the pool's workload mix. Pure: the seed is an
argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from reconciler.learn import combine, specs

Key = tuple[str, specs.WorkloadClass]


@dataclass(frozen=True, slots=True)
class Fidelity:
    """Relative gaps |delivered / promised − 1| over simulated tenant allocations."""

    label: str
    median: float
    p95: float
    worst: float
    allocations: int


def device_values(
    table: Mapping[Key, float], models: Sequence[str], mix: Mapping[str, float]
) -> dict[str, float]:
    """Each model's single value over the mix (weighted geometric mean)."""
    out: dict[str, float] = {}
    for m in models:
        per_class = {cls: table[(m, cls)] for cls in specs.WorkloadClass if (m, cls) in table}
        v = combine.device_value(per_class, mix)
        if v is not None:
            out[m] = v
    return out


def simulate(
    devices: Sequence[str],
    published: Mapping[str, float],
    truth: Mapping[str, float],
    guarantee_devices: float,
    trials: int,
    seed: int,
    label: str = "",
) -> Fidelity:
    """Allocate ``guarantee_devices`` reference-device equivalents (by published value) from
    a random order of ``devices`` ``trials`` times; compare delivered (true) to promised."""
    rng = np.random.default_rng(seed)
    pub = np.asarray([published[d] for d in devices])
    tru = np.asarray([truth[d] for d in devices])
    gaps = np.empty(trials)
    for t in range(trials):
        order = rng.permutation(len(devices))
        cum = np.cumsum(pub[order])
        k = int(np.searchsorted(cum, guarantee_devices))
        k = min(k, len(order) - 1)
        take = np.zeros(len(order))
        take[:k] = 1.0
        before = cum[k - 1] if k > 0 else 0.0
        take[k] = min(max((guarantee_devices - before) / pub[order[k]], 0.0), 1.0)
        promised = float(np.sum(take * pub[order]))
        delivered = float(np.sum(take * tru[order]))
        gaps[t] = abs(delivered / promised - 1.0)
    return Fidelity(
        label, float(np.median(gaps)), float(np.quantile(gaps, 0.95)), float(gaps.max()), trials
    )


__all__ = ["Fidelity", "device_values", "simulate"]

"""Conversion factors as planning and validation read them: one merge rule, one blend.

A device's CU is its factor times the reference unit. Factor tables may overlap; the merge
rule and the weighted geometric mean over a pool's workload mix live here, once, so the
validator's capacity checks and the planner's arithmetic can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.model import documents as docs


@dataclass(frozen=True, slots=True)
class FactorIndex:
    """Factors by (model, workload class or None), merged over every FactorTable.

    Merge rule (tables may overlap): a learned factor beats a spec factor; between equals the
    table whose name sorts last wins. The reference model is 1.0 unless a table says otherwise.
    """

    values: Mapping[tuple[str, str | None], float]
    reference_model: str

    def lookup(self, model: str, workload_class: str | None) -> float | None:
        if workload_class is not None and (model, workload_class) in self.values:
            return self.values[(model, workload_class)]
        if (model, None) in self.values:
            return self.values[(model, None)]
        if model == self.reference_model:
            return 1.0
        return None


def index_factors(tables: Iterable[docs.FactorTable], reference_model: str) -> FactorIndex:
    ranked: dict[tuple[str, str | None], tuple[tuple[int, str], float]] = {}
    for table in tables:
        for factor in table.spec.factors:
            key = (factor.device_model, factor.workload_class)
            rank = (int(factor.source is docs.FactorSource.LEARNED), table.metadata.name)
            if key not in ranked or rank >= ranked[key][0]:
                ranked[key] = (rank, factor.value)
    return FactorIndex(
        values={k: v for k, (_, v) in sorted(ranked.items(), key=lambda kv: str(kv[0]))},
        reference_model=reference_model,
    )


def blended_factor(
    index: FactorIndex, model: str, mix: Mapping[str, float], default_class: str
) -> float | None:
    """One factor for a device: the weighted geometric mean over ``mix`` (or the default class).

    Returns None when any class in the mix has no factor for the model: never guess.
    """
    if not mix:
        return index.lookup(model, default_class)
    total = 0.0
    for workload_class, weight in sorted(mix.items()):
        value = index.lookup(model, workload_class)
        if value is None:
            return None
        total += weight * math.log(value)
    weights = math.fsum(mix.values())
    return math.exp(total / weights)

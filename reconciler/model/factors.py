"""Conversion factors as planning and validation read them: one merge rule, one blend.

A device's CU is its factor times the reference unit. Factor tables may overlap; the merge
rule and the weighted geometric mean over a pool's workload mix live here, once, so the
validator's capacity checks and the planner's arithmetic can never disagree. The learner
and ``cuctl factors show`` read the same merge with provenance (:func:`merge_factors`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.model import documents as docs

FactorKey = tuple[str, str | None]
"""(device model, workload class); ``None`` is a class-less row that applies to every class."""


@dataclass(frozen=True, slots=True)
class MergedFactor:
    """One row of the merged view and where it came from.

    The learner compares against the same value the planner uses and ``cuctl factors show``
    says which table it is read from, so the merge keeps provenance instead of bare values.
    """

    factor: docs.Factor
    table: str
    """``metadata.name`` of the FactorTable the winning row is written in."""

    @property
    def key(self) -> FactorKey:
        return (self.factor.device_model, self.factor.workload_class)


def merge_factors(
    tables: Iterable[docs.FactorTable], basis: docs.FactorBasis = docs.FactorBasis.RAW
) -> tuple[MergedFactor, ...]:
    """The winning row per (model, class) over every table: THE merge rule, used everywhere.

    Tables may overlap (a spec-seeded table curated by people, a learned table written by the
    bot): a learned row beats a spec row; between equals the table whose name sorts last
    wins, and within equal names (which validation rejects) the later one given. Sorted by
    key so every consumer sees the same order. Raw and atSLO rows are two views merged
    separately (``basis``); callers that predate atSLO factors see the raw view only.
    """
    ranked: dict[FactorKey, tuple[tuple[int, str], MergedFactor]] = {}
    for table in tables:
        name = table.metadata.name
        for factor in table.spec.factors:
            if factor.basis is not basis:
                continue
            key = (factor.device_model, factor.workload_class)
            rank = (int(factor.source is docs.FactorSource.LEARNED), name)
            if key not in ranked or rank >= ranked[key][0]:
                ranked[key] = (rank, MergedFactor(factor, name))
    return tuple(m for _, (_, m) in sorted(ranked.items(), key=lambda kv: str(kv[0])))


@dataclass(frozen=True, slots=True)
class FactorIndex:
    """Factors by (model, workload class or None), merged over every FactorTable.

    Merge rule: :func:`merge_factors`. The reference model is 1.0 unless a table says otherwise.
    """

    values: Mapping[tuple[str, str | None], float]
    reference_model: str
    at_slo: Mapping[tuple[str, str], tuple[float, float]] = dataclasses.field(default_factory=dict)
    """(model, class) → (atSLO factor, the p99 target in ms it was learned at)."""

    def with_basis(self, targets: Mapping[str, float], basis: docs.FactorBasis | None) -> Basis:
        """The factors a pool sells: for each class with a latency target, its atSLO factor
        (learned at that very target) unless the pool chose ``raw``; a model without one
        falls back to its raw factor, and the fallback is named (never silent)."""
        if basis is docs.FactorBasis.RAW:
            return Basis(self, docs.FactorBasis.RAW, {}, ())
        if not targets:
            note = (
                " (factorBasis atSLO, but no workload class declares a latencyTarget)"
                if basis is docs.FactorBasis.AT_SLO
                else ""
            )
            return Basis(self, docs.FactorBasis.RAW, {}, (), note)
        values = dict(self.values)
        fallback: list[tuple[str, str]] = []
        models = {m for m, _ in self.values} | {m for m, _ in self.at_slo}
        models.add(self.reference_model)
        for model in sorted(models):
            for cls, target in sorted(targets.items()):
                row = self.at_slo.get((model, cls))
                if row is not None and math.isclose(row[1], target):
                    values[(model, cls)] = row[0]
                elif model == self.reference_model:
                    values[(model, cls)] = 1.0  # the unit itself: 1 by definition
                elif self.lookup(model, cls) is not None:
                    fallback.append((model, cls))
        index = FactorIndex(values, self.reference_model, self.at_slo)
        return Basis(index, docs.FactorBasis.AT_SLO, dict(targets), tuple(fallback))

    def lookup(self, model: str, workload_class: str | None) -> float | None:
        if workload_class is not None and (model, workload_class) in self.values:
            return self.values[(model, workload_class)]
        if (model, None) in self.values:
            return self.values[(model, None)]
        if model == self.reference_model:
            return 1.0
        return None


@dataclass(frozen=True, slots=True)
class Basis:
    """The factors one pool sells, and on what basis (shown in the preview)."""

    index: FactorIndex
    basis: docs.FactorBasis
    targets: Mapping[str, float]
    """Class → p99 target (ms) the atSLO factors are for; empty for raw."""
    fallback: tuple[tuple[str, str], ...]
    """(model, class) sold on its raw factor because no atSLO factor at the target exists."""
    note: str = ""
    """Why a pool that asked for atSLO sells raw."""

    def describe(
        self, models: Iterable[str] | None = None, classes: Iterable[str] | None = None
    ) -> str:
        """``raw``, or ``atSLO (decode p99 ≤ 60 ms)`` with the fallbacks among ``models`` and
        ``classes`` (default: all) named per class."""
        if self.basis is docs.FactorBasis.RAW:
            return "raw" + self.note
        targets = ", ".join(f"{c} p99 ≤ {t:g} ms" for c, t in sorted(self.targets.items()))
        text = f"atSLO ({targets})"
        shown_models = None if models is None else set(models)
        shown_classes = None if classes is None else set(classes)
        classes_of: dict[str, list[str]] = {}
        for m, c in self.fallback:
            if (shown_models is None or m in shown_models) and (
                shown_classes is None or c in shown_classes
            ):
                classes_of.setdefault(m, []).append(c)
        groups: dict[tuple[str, ...], list[str]] = {}
        for m, cs in sorted(classes_of.items()):
            groups.setdefault(tuple(sorted(cs)), []).append(m)
        for names, ms in sorted(groups.items()):
            text += f"; raw for {', '.join(ms)} ({', '.join(names)}: no atSLO factor at the target)"
        return text


def pool_basis(index: FactorIndex, pool: docs.CUPool, policy: docs.Policy) -> Basis:
    """THE choice of factors for a pool: its ``factorBasis``, default atSLO where a class
    declares a latency target."""
    return index.with_basis(policy.latency_targets(), pool.spec.factor_basis)


def index_factors(tables: Iterable[docs.FactorTable], reference_model: str) -> FactorIndex:
    """The merged values the planner and the validator compute capacity with."""
    tables = list(tables)
    at_slo: dict[tuple[str, str], tuple[float, float]] = {}
    for m in merge_factors(tables, docs.FactorBasis.AT_SLO):
        f = m.factor
        if f.workload_class is not None and f.latency_target is not None:
            at_slo[(f.device_model, f.workload_class)] = (f.value, f.latency_target.p99_ms)
    return FactorIndex(
        values={m.key: m.factor.value for m in merge_factors(tables)},
        reference_model=reference_model,
        at_slo=at_slo,
    )


def merged_table(
    tables: Iterable[docs.FactorTable], reference_model: str, name: str = "merged"
) -> docs.FactorTable:
    """The merged view as one FactorTable, for code that reads tables (the learner, reports).

    Why a table: the learner's update rule and report take "the published table"; handing
    them this one makes "published" mean exactly what the planner publishes.
    """
    return docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": name},
            "spec": {
                "referenceModel": reference_model,
                "factors": [
                    m.factor.model_dump(by_alias=True, exclude_none=True, mode="json")
                    for m in merge_factors(tables)
                ],
            },
        }
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

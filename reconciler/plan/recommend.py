"""What to buy or rent: the cheapest device mix that covers every demand at its SLO.

The question Mélange (Griggs et al., 2024) answers for one model's request buckets, asked of
a whole CU fleet: given each tenant's demand per workload class (in CU, i.e. reference-device
throughput at the SLO) and a catalogue of offers (device model, site, owned or rented, price,
availability), choose how many devices of each offer to take so that every demand is served
and the hourly cost is least.

The model, a mixed-integer program solved by HiGHS (``scipy.optimize.milp``):

- ``x[o]`` integer, ``0 ≤ x[o] ≤ available[o]``: devices taken from offer ``o``;
- ``y[g, o] ≥ 0``: CU of demand group ``g`` served by offer ``o`` (only where ``o`` is
  eligible for ``g``: the pool's selector admits its vendor, model and memory, and a factor
  exists for its model and the group's workload class);
- device-time: ``Σ_g y[g, o] / cap[g, o] ≤ x[o]``, where ``cap`` is the CU one device of
  ``o`` sells to ``g`` (factor × cuPerDevice × (1 − pool headroom));
- coverage: ``Σ_o y[g, o] + short[g] ≥ demand[g]``;
- minimise ``Σ_o cost[o] · x[o]`` after first minimising ``Σ short`` (phase 1, an LP: with
  finite availability the most that can be covered does not depend on integrality, since
  taking every available device is always allowed).

Demand items with the same pool and workload class are one group (same eligibility, same
capacities), which is exact: any split of a group's service among its tenants is feasible.
Each tenant's share of every offer is then its share of the group's demand, and an offer's
cost, idle rounding included, is charged to tenants by the device-time they use.

Pure and deterministic: no I/O, clock or randomness; HiGHS is run single-threaded. scipy is
imported inside :func:`recommend` so that importing the planner stays light.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import catalogue as cat
from reconciler.model import documents as docs
from reconciler.model import factors as fac
from reconciler.model import quantity
from reconciler.model import state as st

_EPS = 1e-7


class RecommendError(ValueError):
    """The inputs cannot be planned (a demand names an unknown pool or tenant)."""


@dataclass(frozen=True, slots=True)
class DemandLine:
    """One tenant's demand in one group, with where it came from."""

    tenant: str
    pool: str | None
    workload_class: str | None
    cu: float
    origin: str
    """``guarantee`` (the tenant's guaranteed CU in the pool) or ``demand file``."""


@dataclass(frozen=True, slots=True)
class Group:
    pool: str | None
    workload_class: str | None
    headroom_percent: float
    lines: tuple[DemandLine, ...]

    @property
    def cu(self) -> float:
        return math.fsum(line.cu for line in self.lines)

    @property
    def label(self) -> str:
        return f"{self.pool or 'any pool'}/{self.workload_class or 'pool mix'}"


@dataclass(frozen=True, slots=True)
class Pick:
    offer: str
    device_model: str
    site: str
    ownership: str
    count: int
    cost_per_hour: float


@dataclass(frozen=True, slots=True)
class Service:
    """CU of one tenant's demand line served by one offer, and what that costs."""

    offer: str
    cu: float
    devices: float
    """Device-time used, in devices (fractional: devices are shared within a group)."""
    cost_per_hour: float


@dataclass(frozen=True, slots=True)
class TenantResult:
    tenant: str
    lines: tuple[tuple[DemandLine, tuple[Service, ...], float], ...]
    """(demand, how it is served, CU short)."""
    cost_per_hour: float
    reasons: tuple[str, ...]

    @property
    def short_cu(self) -> float:
        return math.fsum(short for _, _, short in self.lines)


@dataclass(frozen=True, slots=True)
class Alternative:
    device_model: str
    cost_per_hour: float | None
    """None: this model alone cannot cover what the mix covers."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    currency: str
    picks: tuple[Pick, ...]
    tenants: tuple[TenantResult, ...]
    cost_per_hour: float
    short: tuple[tuple[str, float], ...]
    """(group label, CU that no mix of the catalogue can cover)."""
    single_types: tuple[Alternative, ...]
    unusable: tuple[str, ...] = field(default=())
    """Offers no demand can use, with why."""

    @property
    def covered(self) -> bool:
        return not self.short

    @property
    def best_single(self) -> Alternative | None:
        feasible = [a for a in self.single_types if a.cost_per_hour is not None]
        return min(feasible, key=lambda a: (a.cost_per_hour, a.device_model), default=None)

    @property
    def saving(self) -> float | None:
        """Fraction saved against the cheapest single device model that covers the same."""
        best = self.best_single
        if best is None or best.cost_per_hour is None or best.cost_per_hour <= 0:
            return None
        return 1 - self.cost_per_hour / best.cost_per_hour

    def to_json(self) -> dict[str, Any]:
        best = self.best_single
        return {
            "currency": self.currency,
            "covered": self.covered,
            "costPerHour": round(self.cost_per_hour, 6),
            "costPerMonth": round(self.cost_per_hour * cat.HOURS_PER_MONTH, 2),
            "picks": [
                {
                    "offer": p.offer,
                    "deviceModel": p.device_model,
                    "site": p.site,
                    "ownership": p.ownership,
                    "count": p.count,
                    "costPerHour": round(p.cost_per_hour * p.count, 6),
                }
                for p in self.picks
            ],
            "tenants": [
                {
                    "tenant": t.tenant,
                    "costPerHour": round(t.cost_per_hour, 6),
                    "costPerMonth": round(t.cost_per_hour * cat.HOURS_PER_MONTH, 2),
                    "shortCU": round(t.short_cu, 3),
                    "demand": [
                        {
                            "pool": line.pool,
                            "workloadClass": line.workload_class,
                            "cu": line.cu,
                            "origin": line.origin,
                            "shortCU": round(short, 3),
                            "servedBy": [
                                {
                                    "offer": s.offer,
                                    "cu": round(s.cu, 3),
                                    "devices": round(s.devices, 4),
                                    "costPerHour": round(s.cost_per_hour, 6),
                                }
                                for s in services
                            ],
                        }
                        for line, services, short in t.lines
                    ],
                    "reasons": list(t.reasons),
                }
                for t in self.tenants
            ],
            "short": [{"group": g, "cu": round(cu, 3)} for g, cu in self.short],
            "singleDeviceModel": [
                {
                    "deviceModel": a.device_model,
                    "costPerHour": None if a.cost_per_hour is None else round(a.cost_per_hour, 6),
                }
                for a in self.single_types
            ],
            "bestSingleDeviceModel": None if best is None else best.device_model,
            "saving": None if self.saving is None else round(self.saving, 4),
            "unusableOffers": list(self.unusable),
        }


# ------------------------------------------------------------------------------ demand


def demand_from_guarantees(state: st.DesiredState) -> list[DemandLine]:
    """Each tenant's guaranteed CU per pool, as the pool sells it (its workload mix)."""
    return [
        DemandLine(tenant.metadata.name, quota.pool, None, quota.guaranteed, "guarantee")
        for tenant in state.tenants
        for quota in tenant.spec.quotas
        if quota.guaranteed > 0
    ]


def demand_from_file(state: st.DesiredState, demand: cat.Demand) -> list[DemandLine]:
    """The demand file's items; pools and tenants must exist in the desired state."""
    pools = {p.metadata.name for p in state.pools}
    tenants = {t.metadata.name for t in state.tenants}
    out = []
    for i, item in enumerate(demand.spec.items):
        if item.pool is not None and item.pool not in pools:
            raise RecommendError(
                f"spec.items[{i}]: pool {item.pool!r} is not declared; declared pools: "
                f"{', '.join(sorted(pools)) or 'none'}"
            )
        if item.tenant not in tenants:
            raise RecommendError(
                f"spec.items[{i}]: tenant {item.tenant!r} is not declared; declared tenants: "
                f"{', '.join(sorted(tenants)) or 'none'}"
            )
        out.append(DemandLine(item.tenant, item.pool, item.workload_class, item.cu, "demand file"))
    return out


# ------------------------------------------------------------------------------ model


def _eligible(pool: docs.CUPool | None, offer: cat.Offer) -> str | None:
    """Why ``offer`` cannot serve ``pool`` (None: it can). Node selectors are not checked:
    new devices are assumed to join the nodes the pool selects."""
    if pool is None:
        return None
    selector = pool.spec.selector
    if selector.vendors and offer.vendor not in selector.vendors:
        return f"vendor {offer.vendor} is not in pool {pool.metadata.name}'s vendors"
    if selector.models and offer.device_model not in selector.models:
        return f"model {offer.device_model} is not in pool {pool.metadata.name}'s models"
    if selector.min_memory is not None:
        if offer.memory is None:
            return f"pool {pool.metadata.name} needs {selector.min_memory} and the offer gives none"
        if quantity.parse_quantity(offer.memory) < quantity.parse_quantity(selector.min_memory):
            return f"{offer.memory} is below pool {pool.metadata.name}'s minMemory"
    return None


def _capacity(
    state: st.DesiredState,
    index: fac.FactorIndex,
    group: Group,
    pool: docs.CUPool | None,
    offer: cat.Offer,
) -> float | None:
    """CU one device of ``offer`` sells to ``group``: factor × cuPerDevice × (1 − headroom)."""
    reference = state.settings.spec.reference
    if group.workload_class is not None:
        factor = index.lookup(offer.device_model, group.workload_class)
    else:
        mix = pool.spec.workload_mix if pool is not None else {}
        factor = fac.blended_factor(index, offer.device_model, mix, reference.workload_class)
    if factor is None:
        return None
    return factor * reference.cu_per_device * (1 - group.headroom_percent / 100)


def _groups(state: st.DesiredState, lines: Sequence[DemandLine]) -> list[Group]:
    pools = {p.metadata.name: p for p in state.pools}
    by_key: dict[tuple[str, str], list[DemandLine]] = defaultdict(list)
    for line in lines:
        if line.pool is not None and line.pool not in pools:
            raise RecommendError(f"tenant {line.tenant}: pool {line.pool!r} is not declared")
        by_key[(line.pool or "", line.workload_class or "")].append(line)
    return [
        Group(
            pool or None,
            klass or None,
            pools[pool].spec.headroom_percent if pool else 0.0,
            tuple(sorted(members, key=lambda m: (m.tenant, m.origin))),
        )
        for (pool, klass), members in sorted(by_key.items())
    ]


@dataclass(frozen=True, slots=True)
class _Solved:
    counts: tuple[int, ...]
    served: Mapping[tuple[int, int], float]
    short: tuple[float, ...]


def _solve(
    offers: Sequence[cat.Offer],
    groups: Sequence[Group],
    caps: Mapping[tuple[int, int], float],
) -> _Solved:
    """Phase 1 (LP): the least CU left uncovered. Phase 2 (MILP): the cheapest mix at that."""
    import numpy as np
    from scipy import optimize, sparse

    n_x, pairs, n_g = len(offers), sorted(caps), len(groups)
    n_y = len(pairs)
    n = n_x + n_y + n_g
    demand = np.array([g.cu for g in groups], dtype=float)
    rows, cols, vals = [], [], []
    # Device-time per offer: Σ_g y[g, o] / cap[g, o] − x[o] ≤ 0.
    for j, (g, o) in enumerate(pairs):
        rows.append(o)
        cols.append(n_x + j)
        vals.append(1.0 / caps[(g, o)])
    for o in range(n_x):
        rows.append(o)
        cols.append(o)
        vals.append(-1.0)
    # Coverage per group: Σ_o y[g, o] + short[g] ≥ demand[g].
    for j, (g, _o) in enumerate(pairs):
        rows.append(n_x + g)
        cols.append(n_x + j)
        vals.append(1.0)
    for g in range(n_g):
        rows.append(n_x + g)
        cols.append(n_x + n_y + g)
        vals.append(1.0)
    matrix = sparse.csr_array((vals, (rows, cols)), shape=(n_x + n_g, n))
    lower = np.concatenate([np.full(n_x, -np.inf), demand])
    upper = np.concatenate([np.zeros(n_x), np.full(n_g, np.inf)])
    caps_x = [np.inf if o.available is None else float(o.available) for o in offers]
    bounds = optimize.Bounds(np.zeros(n), np.concatenate([caps_x, np.full(n_y, np.inf), demand]))
    constraints = [optimize.LinearConstraint(matrix, lower, upper)]
    options = {"presolve": True, "disp": False}

    phase1 = np.concatenate([np.zeros(n_x + n_y), np.ones(n_g)])
    first = optimize.milp(
        phase1, constraints=constraints, bounds=bounds, integrality=np.zeros(n), options=options
    )
    if first.status != 0:  # pragma: no cover - the LP is always feasible (short = demand)
        raise RecommendError(f"the solver failed on the coverage LP: {first.message}")
    least_short = float(first.fun)
    # Phase 2: cost, keeping the shortfall at its least (with a tolerance for round-off).
    cost = np.concatenate([[o.cost_per_hour for o in offers], np.zeros(n_y + n_g)])
    keep = optimize.LinearConstraint(
        sparse.csr_array(phase1.reshape(1, -1)), -np.inf, least_short * (1 + 1e-9) + 1e-6
    )
    integrality = np.concatenate([np.ones(n_x), np.zeros(n_y + n_g)])
    second = optimize.milp(
        cost,
        constraints=[*constraints, keep],
        bounds=bounds,
        integrality=integrality,
        options={**options, "mip_rel_gap": 0.0},
    )
    if second.status != 0:  # pragma: no cover - phase 1's point is feasible for phase 2
        raise RecommendError(f"the solver failed on the cost MILP: {second.message}")
    values = second.x
    counts = tuple(round(float(v)) for v in values[:n_x])
    served = {pair: float(values[n_x + j]) for j, pair in enumerate(pairs)}
    short = tuple(max(0.0, float(v)) for v in values[n_x + n_y :])
    return _Solved(counts, served, short)


# ------------------------------------------------------------------------------ entry


def recommend(
    state: st.DesiredState, catalogue: cat.DeviceCatalogue, lines: Sequence[DemandLine]
) -> Recommendation:
    """The cheapest mix covering ``lines``, per-tenant reasoning, and single-model costs."""
    if not lines:
        raise RecommendError("there is no demand: no tenant guarantees and no demand file")
    reference = state.settings.spec.reference
    index = fac.index_factors(state.factor_tables, reference.device_model)
    pools = {p.metadata.name: p for p in state.pools}
    offers = list(catalogue.spec.offers)
    groups = _groups(state, lines)
    caps: dict[tuple[int, int], float] = {}
    why_not: dict[int, list[str]] = defaultdict(list)
    for gi, group in enumerate(groups):
        pool = pools.get(group.pool) if group.pool else None
        for oi, offer in enumerate(offers):
            reason = _eligible(pool, offer)
            cap = None if reason else _capacity(state, index, group, pool, offer)
            if reason is None and cap is None:
                reason = f"no factor for {offer.device_model} in {group.label}"
            if cap is not None and cap > _EPS:
                caps[(gi, oi)] = cap
            elif reason:
                why_not[oi].append(reason)
    used_offers = {oi for _, oi in caps}
    unusable = tuple(
        f"{offers[oi].name}: {'; '.join(sorted(set(why_not[oi])))}"
        for oi in range(len(offers))
        if oi not in used_offers
    )
    solved = _solve(offers, groups, caps)
    cost = math.fsum(o.cost_per_hour * c for o, c in zip(offers, solved.counts, strict=True))
    picks = tuple(
        Pick(
            o.name,
            o.device_model,
            o.site,
            "owned" if o.owned is not None else "rented",
            c,
            o.cost_per_hour,
        )
        for o, c in zip(offers, solved.counts, strict=True)
        if c > 0
    )
    tenants = _per_tenant(offers, groups, caps, solved)
    short = tuple(
        (group.label, s) for group, s in zip(groups, solved.short, strict=True) if s > 1e-3
    )
    singles = []
    for model in sorted({o.device_model for o in offers}):
        keep = [oi for oi, o in enumerate(offers) if o.device_model == model]
        sub_caps = {(g, keep.index(o)): cap for (g, o), cap in caps.items() if o in keep}
        if not sub_caps:
            singles.append(Alternative(model, None))
            continue
        alone = _solve([offers[oi] for oi in keep], groups, sub_caps)
        covers = math.fsum(alone.short) <= math.fsum(solved.short) + 1e-3
        price = math.fsum(
            offers[oi].cost_per_hour * c for oi, c in zip(keep, alone.counts, strict=True)
        )
        singles.append(Alternative(model, price if covers else None))
    return Recommendation(
        catalogue.spec.currency, picks, tenants, cost, short, tuple(singles), unusable
    )


def _per_tenant(
    offers: Sequence[cat.Offer],
    groups: Sequence[Group],
    caps: Mapping[tuple[int, int], float],
    solved: _Solved,
) -> tuple[TenantResult, ...]:
    """Split each group's service among its tenants by demand; charge offers by device-time."""
    device_time = [0.0] * len(offers)
    for (g, o), cu in solved.served.items():
        device_time[o] += cu / caps[(g, o)]
    cost_per_device_time = [
        (o.cost_per_hour * c / t) if t > _EPS else 0.0
        for o, c, t in zip(offers, solved.counts, device_time, strict=True)
    ]
    per_tenant: dict[str, list[tuple[DemandLine, tuple[Service, ...], float]]] = defaultdict(list)
    reasons: dict[str, list[str]] = defaultdict(list)
    for gi, group in enumerate(groups):
        total = group.cu
        eligible = sorted(
            (
                (offers[o].cost_per_hour / cap, offers[o].name)
                for (g, o), cap in caps.items()
                if g == gi
            ),
        )
        for line in group.lines:
            share = line.cu / total if total > 0 else 0.0
            services = []
            for (g, o), cu in sorted(solved.served.items()):
                if g != gi or cu * share <= 1e-6:
                    continue
                devices = cu * share / caps[(g, o)]
                services.append(
                    Service(offers[o].name, cu * share, devices, devices * cost_per_device_time[o])
                )
            short = solved.short[gi] * share
            per_tenant[line.tenant].append((line, tuple(services), short))
            reasons[line.tenant].append(_reason(line, group, eligible, services, short))
    return tuple(
        TenantResult(
            tenant,
            tuple(items),
            math.fsum(s.cost_per_hour for _, services, _ in items for s in services),
            tuple(reasons[tenant]),
        )
        for tenant, items in sorted(per_tenant.items())
    )


def _reason(
    line: DemandLine,
    group: Group,
    eligible: Sequence[tuple[float, str]],
    services: Sequence[Service],
    short: float,
) -> str:
    what = f"{line.cu:g} CU ({line.origin}) in {group.label}"
    if not eligible:
        return f"{what}: no offer in the catalogue can serve it (pool selector or factors)"
    cheapest = ", ".join(f"{name} {price:.4g}/CU-h" for price, name in eligible[:3])
    served = " + ".join(f"{s.cu:.6g} CU on {s.offer}" for s in services) or "nothing"
    text = f"{what}: served by {served}; cheapest eligible per CU-hour: {cheapest}"
    if short > 1e-3:
        text += f"; {short:.6g} CU cannot be covered (availability)"
    return text

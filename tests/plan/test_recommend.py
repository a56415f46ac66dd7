"""``cuctl recommend``'s solver: optimal against brute force, exact bookkeeping, honest shortfalls.

The brute force enumerates every integer device count within availability and checks each
mix's feasibility with its own LP (scipy's ``linprog``, not the MILP under test), so the
MILP's optimum is compared with an independent answer.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import cu_example as ex
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from reconciler.model import catalogue as cat
from reconciler.model import documents as docs
from reconciler.model import state as st
from reconciler.plan import recommend as rec

MODELS = ("H100-SXM5-80GB", "A100-SXM4-80GB", "BR104", "Z100")
VENDOR = {"H100-SXM5-80GB": "nvidia", "A100-SXM4-80GB": "nvidia", "BR104": "biren", "Z100": "hygon"}


def offer(name: str, model: str, *, price: float, available: int | None = None, **extra: Any):
    return {
        "name": name,
        "deviceModel": model,
        "vendor": VENDOR[model],
        "site": "dc",
        "rented": {"pricePerHour": price},
        **({"available": available} if available is not None else {}),
        **extra,
    }


def catalogue(*offers: dict[str, Any]) -> cat.DeviceCatalogue:
    return cat.DeviceCatalogue.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "DeviceCatalogue",
            "metadata": {"name": "c"},
            "spec": {"offers": list(offers)},
        }
    )


def line(tenant: str, cu: float, pool: str | None = None, klass: str | None = "decode"):
    return rec.DemandLine(tenant, pool, klass, cu, "demand file")


def state() -> st.DesiredState:
    return ex.desired()


def test_cheapest_mix_beats_every_single_model_when_classes_favour_different_devices() -> None:
    # H100: decode 1.55, prefill 2.6; Z100: decode 0.45, prefill 0.08 (cu_example's factors).
    # Per decode CU an H100 at 3.0/h costs 3/155 = 0.0194, a Z100 at 0.5/h 0.5/45 = 0.0111:
    # decode goes to Z100; prefill is 3/260 = 0.0115 on H100 against 0.5/8 = 0.0625 on Z100.
    answer = rec.recommend(
        state(),
        catalogue(offer("h100", "H100-SXM5-80GB", price=3.0), offer("z100", "Z100", price=0.5)),
        [line("search", 450, klass="decode"), line("ads", 520, klass="prefill")],
    )
    assert answer.covered
    assert {p.offer: p.count for p in answer.picks} == {"h100": 2, "z100": 10}
    assert math.isclose(answer.cost_per_hour, 2 * 3.0 + 10 * 0.5)
    singles = {a.device_model: a.cost_per_hour for a in answer.single_types}
    # H100 alone: 450/155 + 520/260 = 4.90 → 5 devices; Z100 alone: 10 + 65 = 75 devices.
    assert singles == {"H100-SXM5-80GB": 15.0, "Z100": 37.5}
    assert answer.best_single is not None and answer.best_single.device_model == "H100-SXM5-80GB"
    assert answer.saving is not None and math.isclose(answer.saving, 1 - 11.0 / 15.0)


def test_tenant_costs_add_up_to_the_bill_idle_rounding_included() -> None:
    answer = rec.recommend(
        state(),
        catalogue(offer("h100", "H100-SXM5-80GB", price=3.0), offer("z100", "Z100", price=0.5)),
        [line("search", 100), line("ads", 37), line("lab", 11, klass="prefill")],
    )
    assert math.isclose(sum(t.cost_per_hour for t in answer.tenants), answer.cost_per_hour)
    for t in answer.tenants:
        for demand, services, short in t.lines:
            assert short == 0
            assert math.isclose(sum(s.cu for s in services), demand.cu, rel_tol=1e-6)
        assert t.reasons and all("served by" in r for r in t.reasons)


def test_a_pool_selector_limits_the_offers_that_serve_its_demand() -> None:
    # "infer" takes only hygon devices: a cheap H100 offer must not serve it.
    answer = rec.recommend(
        state(),
        catalogue(offer("h100", "H100-SXM5-80GB", price=0.01), offer("z100", "Z100", price=1.0)),
        [line("ads", 30, pool="infer", klass=None)],
    )
    assert {p.offer for p in answer.picks} == {"z100"}
    # The infer pool sells its mix: √(0.45·0.08)·100 = 18.97 CU per Z100 → 2 devices.
    assert answer.picks[0].count == 2


def test_min_memory_and_missing_factors_make_an_offer_unusable_and_say_why() -> None:
    big = ex.pool(
        "big",
        {"selector": {"vendors": ["nvidia", "biren"], "minMemory": "64Gi"}},
    )
    desired = ex.desired(pools=(*ex.POOLS, big))
    answer = rec.recommend(
        desired,
        catalogue(
            offer("small-h100", "H100-SXM5-80GB", price=0.1, memory="40Gi"),
            offer("h100", "H100-SXM5-80GB", price=3.0, memory="80Gi"),
        ),
        [line("search", 100, pool="big", klass="decode")],
    )
    assert [p.offer for p in answer.picks] == ["h100"]
    assert any("small-h100" in u and "minMemory" in u for u in answer.unusable)


def test_demand_beyond_availability_is_short_named_and_exit_worthy() -> None:
    answer = rec.recommend(
        state(),
        catalogue(offer("z100", "Z100", price=1.0, available=2)),
        [line("search", 100, klass="decode")],
    )
    assert not answer.covered
    # Two Z100 sell 2 × 45 = 90 decode CU: 10 short, and both devices taken.
    assert answer.picks[0].count == 2
    assert answer.short == (("any pool/decode", pytest.approx(10.0)),)
    assert answer.to_json()["tenants"][0]["shortCU"] == pytest.approx(10.0)


def test_unknown_tenant_or_pool_in_a_demand_file_is_an_error() -> None:
    demand = cat.Demand.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "Demand",
            "metadata": {"name": "d"},
            "spec": {"items": [{"tenant": "nobody", "workloadClass": "decode", "cu": 1}]},
        }
    )
    with pytest.raises(rec.RecommendError, match="tenant 'nobody' is not declared"):
        rec.demand_from_file(state(), demand)


def test_guarantees_are_the_default_demand() -> None:
    lines = rec.demand_from_guarantees(state())
    assert [(d.tenant, d.pool, d.cu) for d in lines] == [
        ("search", "train", 300),
        ("ads", "train", 200),
        ("ads", "infer", 10),
    ]


def test_an_offer_is_exactly_one_of_owned_or_rented_and_owned_cost_is_amortised() -> None:
    with pytest.raises(ValueError, match="exactly one of 'owned' or 'rented'"):
        catalogue({"name": "x", "deviceModel": "Z100", "vendor": "hygon", "site": "s"})
    owned = catalogue(
        {
            "name": "x",
            "deviceModel": "Z100",
            "vendor": "hygon",
            "site": "s",
            "owned": {
                "purchasePrice": 8760.0,
                "lifetimeYears": 2.0,
                "powerWatts": 500.0,
                "energyPricePerKwh": 0.2,
            },
        }
    )
    assert math.isclose(owned.spec.offers[0].cost_per_hour, 0.5 + 0.1)


# ------------------------------------------------------------------------ brute force


def _feasible(counts: tuple[int, ...], offers, groups, caps) -> float:
    """CU left uncovered by ``counts`` (an LP over the service split), independently of the
    MILP: minimise Σ short subject to device-time and coverage."""
    import numpy as np
    from scipy import optimize

    pairs = sorted(caps)
    n_y, n_g = len(pairs), len(groups)
    c = np.concatenate([np.zeros(n_y), np.ones(n_g)])
    a_ub, b_ub = [], []
    for o, count in enumerate(counts):
        a_ub.append([1 / caps[p] if p[1] == o else 0 for p in pairs] + [0] * n_g)
        b_ub.append(count)
    for g, group in enumerate(groups):
        a_ub.append(
            [-1 if p[0] == g else 0 for p in pairs] + [-1 if k == g else 0 for k in range(n_g)]
        )
        b_ub.append(-group.cu)
    result = optimize.linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
    assert result.status == 0
    return float(result.fun)


cases = hs.fixed_dictionaries(
    {
        "offers": hs.lists(
            hs.tuples(
                hs.sampled_from(MODELS),
                hs.sampled_from([0.4, 0.7, 1.0, 1.9, 3.0]),
                hs.integers(0, 3),
            ),
            min_size=1,
            max_size=3,
        ),
        "demand": hs.lists(
            hs.tuples(
                hs.sampled_from(["search", "ads", "lab"]),
                hs.sampled_from(["decode", "prefill"]),
                hs.integers(1, 400),
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


@given(cases)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_milp_is_optimal_against_brute_force(case: dict[str, Any]) -> None:
    offers = [
        offer(f"o{i}", model, price=price, available=available)
        for i, (model, price, available) in enumerate(case["offers"])
    ]
    lines = [line(t, float(cu), klass=k) for t, k, cu in case["demand"]]
    answer = rec.recommend(state(), catalogue(*offers), lines)
    typed = catalogue(*offers).spec.offers
    index = rec.fac.index_factors(state().factor_tables, "A100-SXM4-80GB")
    groups = rec._groups(state(), lines)
    caps = {}
    for g, group in enumerate(groups):
        for o, item in enumerate(typed):
            cap = rec._capacity(state(), index, group, None, item)
            if cap:
                caps[(g, o)] = cap
    # Every integer mix within availability: the least shortfall, then the least cost.
    best: tuple[float, float] | None = None
    for counts in itertools.product(*(range(item.available + 1) for item in typed)):
        short = _feasible(counts, typed, groups, caps) if caps else sum(g.cu for g in groups)
        cost = sum(c * item.cost_per_hour for c, item in zip(counts, typed, strict=True))
        key = (round(short, 4), cost)
        if best is None or key < best:
            best = key
    assert best is not None
    assert sum(s for _, s in answer.short) == pytest.approx(best[0], abs=2e-3)
    assert answer.cost_per_hour == pytest.approx(best[1], abs=1e-9)

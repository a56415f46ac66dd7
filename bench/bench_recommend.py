"""``cuctl recommend``'s solver at the issue's size: 20 device types × 10 classes × 100 tenants.

A synthetic desired state (5 pools with vendor/model selectors and headroom, 100 tenants each
with demand in several classes, one factor table) and a catalogue of 20 device types at mixed
prices and availabilities, seeded. Each run solves the whole recommendation (both phases and
the 20 single-model baselines) in this process; the median of ``--runs`` is reported with the
solve of the mix alone, so the baselines' share is visible.

    .venv/bin/python bench/bench_recommend.py --runs 7
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from reconciler.model import catalogue as cat
from reconciler.model import documents as docs
from reconciler.model import state as st
from reconciler.plan import recommend as rec

API = docs.API_VERSION
CLASSES = [f"class-{i}" for i in range(10)]
VENDORS = ["nvidia", "biren", "hygon", "huawei", "iluvatar"]


def build(seed: int) -> tuple[st.DesiredState, cat.DeviceCatalogue, list[rec.DemandLine]]:
    rng = random.Random(seed)
    models = [(f"M{i:02d}", VENDORS[i % len(VENDORS)]) for i in range(20)]
    factors: list[dict[str, Any]] = [{"deviceModel": "M00", "value": 1.0}]
    for model, _ in models[1:]:
        for klass in CLASSES:
            factors.append(
                {
                    "deviceModel": model,
                    "workloadClass": klass,
                    "value": round(rng.uniform(0.2, 3.5), 3),
                }
            )
    table = docs.FactorTable.model_validate(
        {
            "apiVersion": API,
            "kind": "FactorTable",
            "metadata": {"name": "t"},
            "spec": {"referenceModel": "M00", "factors": factors},
        }
    )
    settings = docs.ClusterSettings.model_validate(
        {
            "apiVersion": API,
            "kind": "ClusterSettings",
            "metadata": {"name": "c"},
            "spec": {
                "driverName": "cu.example.com",
                "reference": {"deviceModel": "M00", "cuPerDevice": 100},
                "managedNamespaces": [f"t{i}" for i in range(100)],
            },
        }
    )
    pools = []
    for p in range(5):
        vendors = sorted(rng.sample(VENDORS, 3))
        pools.append(
            docs.CUPool.model_validate(
                {
                    "apiVersion": API,
                    "kind": "CUPool",
                    "metadata": {"name": f"pool-{p}"},
                    "spec": {
                        "selector": {"vendors": vendors},
                        "headroomPercent": float(rng.choice([0, 5, 10])),
                    },
                }
            )
        )
    tenants = [
        docs.Tenant.model_validate(
            {
                "apiVersion": API,
                "kind": "Tenant",
                "metadata": {"name": f"t{i}"},
                "spec": {"namespaces": [f"t{i}"], "priority": 100},
            }
        )
        for i in range(100)
    ]
    state = st.DesiredState(
        revision=st.Revision("bench"),
        settings=settings,
        policy=st.DEFAULT_POLICY,
        pools=tuple(pools),
        tenants=tuple(tenants),
        factor_tables=(table,),
    )
    offers = []
    for i, (model, vendor) in enumerate(models):
        offers.append(
            {
                "name": f"o{i:02d}",
                "deviceModel": model,
                "vendor": vendor,
                "site": "dc",
                **({"available": rng.randint(20, 400)} if i % 2 else {}),
                "rented": {"pricePerHour": round(rng.uniform(0.5, 6.0), 2)},
            }
        )
    catalogue = cat.DeviceCatalogue.model_validate(
        {
            "apiVersion": API,
            "kind": "DeviceCatalogue",
            "metadata": {"name": "c"},
            "spec": {"offers": offers},
        }
    )
    lines = [
        rec.DemandLine(
            f"t{i}", f"pool-{rng.randrange(5)}", klass, float(rng.randint(10, 800)), "demand file"
        )
        for i in range(100)
        for klass in CLASSES
    ]
    return state, catalogue, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    state, catalogue, lines = build(args.seed)
    rec.recommend(state, catalogue, lines[:10])  # import scipy and warm HiGHS once
    whole, cpu, solves = [], [], []
    for _ in range(args.runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        answer = rec.recommend(state, catalogue, lines)
        whole.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    groups = rec._groups(state, lines)
    print(f"demand lines {len(lines)}, groups {len(groups)}, offers {len(catalogue.spec.offers)}")
    print(f"covered {answer.covered}, cost/h {answer.cost_per_hour:.2f}, saving {answer.saving}")
    print(
        f"recommend (mix + 20 single-model baselines): median {statistics.median(whole):.3f} s "
        f"(min {min(whole):.3f}, max {max(whole):.3f}, {args.runs} runs); CPU median "
        f"{statistics.median(cpu):.3f} s"
    )
    for _ in range(args.runs):
        index = rec.fac.index_factors(state.factor_tables, "M00")
        pools = {p.metadata.name: p for p in state.pools}
        caps = {}
        for g, group in enumerate(groups):
            for o, item in enumerate(catalogue.spec.offers):
                pool = pools[group.pool] if group.pool else None
                if rec._eligible(pool, item) is None:
                    cap = rec._capacity(state, index, group, pool, item)
                    if cap:
                        caps[(g, o)] = cap
        start = time.process_time()
        rec._solve(list(catalogue.spec.offers), groups, caps)
        solves.append(time.process_time() - start)
    print(f"the mix's two-phase solve alone: CPU median {statistics.median(solves):.3f} s")


if __name__ == "__main__":
    main()

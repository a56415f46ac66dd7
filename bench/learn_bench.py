"""Factor-learning benchmark: accuracy, coverage, drift, 1M-record time, quota fidelity.

    .venv/bin/python bench/learn_bench.py                # everything (several minutes)
    .venv/bin/python bench/learn_bench.py --only timing  # just the 1M-record timing

Prints Markdown for BENCHMARKS.md ("## Factor learning"). Every scenario is seeded.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML

from reconciler.learn import adapter, fidelity, fit, priors, records, specs, synthetic
from reconciler.model import documents as docs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gitrepo"
WC = specs.WorkloadClass
POLICY = docs.FactorPolicy()


def mcse(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


# ------------------------------------------------------------------------------ accuracy


def accuracy(seeds: Sequence[int], sc: synthetic.Scenario) -> dict[str, Any]:
    errs: list[float] = []
    covered: list[bool] = []
    spec_errs: list[float] = []
    naive_covered: list[bool] = []
    min_samples = 10**9
    for seed in seeds:
        frame, truth = synthetic.generate(sc, seed)
        recs = records.validate(frame, sc.end)
        out = adapter.learn(recs, None, POLICY, sc.end)
        naive = fit.fit(recs.frame, exclude_nodes=out.fit.excluded_nodes, clustered=False)
        for key, est in naive.estimates.items():
            if key[0] != specs.REFERENCE_MODEL and key in truth.factors:
                lo, hi = est.interval(0.95)
                naive_covered.append(lo <= truth.factors[key] <= hi)
        for key, post in out.posteriors.items():
            if key[0] == specs.REFERENCE_MODEL or key not in truth.factors:
                continue
            true = truth.factors[key]
            errs.append(abs(post.value / true - 1))
            lo, hi = post.interval()
            covered.append(lo <= true <= hi)
            assert post.prior is not None and post.estimate is not None
            spec_errs.append(abs(post.prior.value / true - 1))
            min_samples = min(min_samples, post.estimate.samples)
    e = np.asarray(errs)
    cov = float(np.mean(covered))
    return {
        "factors": len(e),
        "median": float(np.median(e)),
        "p95": float(np.quantile(e, 0.95)),
        "coverage": cov,
        "coverage_mcse": mcse(cov, len(covered)),
        "naive_iid_coverage": float(np.mean(naive_covered)),
        "spec_median": float(np.median(spec_errs)),
        "min_samples": min_samples,
    }


# --------------------------------------------------------------------------------- drift


def drift(seeds: Sequence[int], sc_of: Any) -> dict[str, Any]:
    """False alarms per device-model-month and detection delays for the known steps."""
    months = 0
    false = 0
    delays_down: list[float] = []
    delays_up: list[float] = []
    for seed in seeds:
        sc = sc_of(seed)
        frame, _ = synthetic.generate(sc, seed)
        out = adapter.learn(records.validate(frame, sc.end), None, POLICY, sc.end)
        steps = {(s.device_model, s.workload_class): s for s in sc.steps}
        for model in sc.device_models:
            months += 1
            bad = [a for a in out.alarms if a.device_model == model and not _true_alarm(a, steps)]
            false += bool(bad)
        for key, st in steps.items():
            at = int(st.at.timestamp() // 3600)
            hits = [
                a
                for a in out.alarms
                if (a.device_model, a.workload_class) == key and a.alarm_hour >= at
            ]
            delay = hits[0].alarm_hour + 1 - at if hits else math.inf
            (delays_down if st.relative < 0 else delays_up).append(delay)
    rate = false / months
    scale = 30.0 / sc_of(0).days
    return {
        "months": months,
        "false_alarm_rate": min(1.0, rate * scale),
        "mcse": mcse(rate, months) * scale,
        "delay_down_median": statistics.median(delays_down),
        "delay_down_p90": float(np.quantile(delays_down, 0.9)),
        "missed_down": sum(math.isinf(d) for d in delays_down),
        "delay_up_median": statistics.median(delays_up),
        "n_steps": len(delays_down),
    }


def _true_alarm(a: Any, steps: dict[Any, synthetic.Step]) -> bool:
    st = steps.get((a.device_model, a.workload_class))
    if st is None:
        return False
    at = int(st.at.timestamp() // 3600)
    return a.alarm_hour >= at - 3 and (a.relative_change < 0) == (st.relative < 0)


# -------------------------------------------------------------------------------- timing


def timing(runs: int) -> dict[str, Any]:
    sc = synthetic.Scenario(
        records=1_000_000, steps=synthetic.default_steps(synthetic.Scenario().start), bad_rows=1_000
    )
    frame, _ = synthetic.generate(sc, 7)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("parquet", "csv"):
            path = Path(tmp) / f"records.{fmt}"
            frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
            times, loads = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                recs = records.load([path], sc.end)
                t1 = time.perf_counter()
                adapter.learn(recs, adapter.spec_table(), POLICY, sc.end)
                t2 = time.perf_counter()
                times.append(t2 - t0)
                loads.append(t1 - t0)
            out[fmt] = {
                "median": statistics.median(times),
                "min": min(times),
                "max": max(times),
                "load_median": statistics.median(loads),
                "runs": runs,
            }
    return out


# ------------------------------------------------------------------------ quota fidelity

PREFIX = (
    ("ascend-910b2", "Ascend-910B2"),
    ("h100", "H100-SXM5-80GB"),
    ("a100", "A100-SXM4-80GB"),
    ("l40s", "L40S"),
    ("br100", "BR100"),
    ("br104", "BR104"),
    ("biv150", "BI-V150"),
    ("biv100", "BI-V100"),
    ("k100", "K100"),
    ("z100", "Z100"),
)
TIER_POOL = {"production": "inference-prod", "batch": "batch", "dev": "dev"}


def example_fleet() -> tuple[
    dict[str, list[str]], dict[str, dict[str, float]], dict[str, list[float]]
]:
    """Pools → device list, pool mixes and tenant guarantees (in reference devices) from
    examples/gitrepo. Device models come from the node name (the snapshot's vendor
    attributes differ per driver); models without a known truth (Ascend-910B3) are left out."""
    y = YAML(typ="safe")
    snap = y.load((EXAMPLE / "observed" / "snapshot.yaml").read_text())
    tiers = {
        i["metadata"]["name"]: i["metadata"]["labels"].get("platform.example.com/tier")
        for i in snap["items"]
        if i["kind"] == "Node"
    }
    pools: dict[str, list[str]] = {}
    for item in snap["items"]:
        if item["kind"] != "ResourceSlice":
            continue
        node = item["spec"]["nodeName"]
        model = next((m for p, m in PREFIX if node.startswith(p)), None)
        pool = TIER_POOL.get(tiers.get(node, ""))
        if model is None or pool is None:
            continue
        pools.setdefault(pool, []).extend([model] * len(item["spec"].get("devices", [])))
    policy = y.load((EXAMPLE / "policy.yaml").read_text())
    default_mix = policy["spec"]["factors"]["workloadMix"]
    mixes: dict[str, dict[str, float]] = {}
    for f in sorted((EXAMPLE / "pools").glob("*.yaml")):
        doc = y.load(f.read_text())
        mixes[doc["metadata"]["name"]] = doc["spec"].get("workloadMix") or default_mix
    cu_per_device = y.load((EXAMPLE / "cluster.yaml").read_text())["spec"]["reference"][
        "cuPerDevice"
    ]
    guarantees: dict[str, list[float]] = {}
    for f in sorted((EXAMPLE / "tenants").glob("*.yaml")):
        for q in y.load(f.read_text())["spec"].get("quotas", []):
            guarantees.setdefault(q["pool"], []).append(q["guaranteed"] / cu_per_device)
    return pools, mixes, guarantees


def quota_fidelity(seed: int) -> dict[str, Any]:
    pools, mixes, guarantees = example_fleet()
    models = sorted({m for devs in pools.values() for m in devs})
    sc = synthetic.Scenario(records=200_000, device_models=tuple(models), steps=())
    frame, truth = synthetic.generate(sc, seed)
    out = adapter.learn(records.validate(frame, sc.end), adapter.spec_table(), POLICY, sc.end)
    learned = {k: p.value for k, p in out.posteriors.items()}
    published_after_one = adapter.table_values(out.proposal.table)
    spec = {k: p.value for k, p in priors.spec_priors().items()}
    tables = {
        "whole GPUs (1 device = 100 CU)": {k: 1.0 for k in truth.factors},
        "spec-only factors": spec,
        "learned, first policy-limited update (±10%)": published_after_one,
        "learned factors": learned,
    }
    rows: dict[str, dict[str, Any]] = {}
    for label, table in tables.items():
        gaps: list[float] = []
        per_pool: dict[str, float] = {}
        for pool, devices in pools.items():
            mix = mixes[pool]
            true_v = fidelity.device_values(truth.factors, sorted(set(devices)), mix)
            pub_v = fidelity.device_values(table, sorted(set(devices)), mix)
            pool_gaps: list[float] = []
            for i, g in enumerate(guarantees.get(pool, [])):
                fid = fidelity.simulate(
                    devices, pub_v, true_v, g, trials=500, seed=seed * 100 + i, label=label
                )
                pool_gaps.append(fid.median)
                gaps.append(fid.median)
                rows.setdefault(label, {}).setdefault("p95", []).append(fid.p95)
            per_pool[pool] = float(np.mean(pool_gaps)) if pool_gaps else float("nan")
        device_gaps = []
        for pool, devices in pools.items():
            true_v = fidelity.device_values(truth.factors, sorted(set(devices)), mixes[pool])
            pub_v = fidelity.device_values(table, sorted(set(devices)), mixes[pool])
            device_gaps += [abs(pub_v[d] / true_v[d] - 1) for d in devices]
        rows[label]["device_gap_mean"] = float(np.mean(device_gaps))
        rows[label]["device_gap_max"] = float(np.max(device_gaps))
        rows[label]["mean_gap"] = float(np.mean(gaps))
        rows[label]["worst_p95"] = float(np.max(rows[label]["p95"]))
        rows[label]["per_pool"] = per_pool
    return {"pools": {p: len(d) for p, d in pools.items()}, "rows": rows}


# ---------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["accuracy", "drift", "timing", "fidelity"], default=None)
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--drift-seeds", type=int, default=20)
    ap.add_argument("--timing-runs", type=int, default=5)
    args = ap.parse_args()

    def run(name: str) -> bool:
        return args.only in (None, name)

    start = synthetic.Scenario().start
    if run("accuracy"):
        minimal = accuracy(
            range(1000, 1000 + args.seeds), synthetic.Scenario(records=30_000, nodes_per_model=8)
        )
        print("accuracy (minimum evidence, 30k records, 8 nodes):", minimal)
        full = accuracy(
            range(2000, 2000 + max(3, args.seeds // 8)),
            synthetic.Scenario(records=1_000_000, steps=synthetic.default_steps(start)),
        )
        print("accuracy (1M records, steps, slow node, mix shift):", full)
        sys.stdout.flush()
    if run("drift"):
        four = ("A100-SXM4-80GB", "H100-SXM5-80GB", "L40S", "BR104")
        d4 = drift(
            range(3000, 3000 + args.drift_seeds),
            lambda s: synthetic.Scenario(
                records=1_000_000, device_models=four, steps=synthetic.default_steps(start)
            ),
        )
        print("drift (4 models, 1M records / 30 days):", d4)
        d9 = drift(
            range(4000, 4000 + max(4, args.drift_seeds // 2)),
            lambda s: synthetic.Scenario(records=1_000_000, steps=synthetic.default_steps(start)),
        )
        print("drift (9 models, 1M records / 30 days):", d9)
        sys.stdout.flush()
    if run("timing"):
        print("timing (1M records, load + full learn):", timing(args.timing_runs))
    if run("fidelity"):
        print("quota fidelity (examples/gitrepo):", quota_fidelity(11))


if __name__ == "__main__":
    main()

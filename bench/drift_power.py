"""Drift power on sparse series: the record-level change point against a −3% step.

    .venv/bin/python bench/drift_power.py --seeds 40            # several minutes

Scenario (issue 12): 7 device models × 3 workload classes, equal class shares, 8 nodes per
model (16 for the reference), one node 25% slow, 5% gross outliers, Student-t₃ noise, hourly
AR(1); a −3% step on L40S decode half-way through 30 days. ``--per-side`` sets how many
records the stepped series has on each side of the step (200 is the issue's case: about 13
records per day). Measures, per seed: whether the full pipeline's drift check (``adapter``:
fit, slow nodes, ``drift.check_all``) alarms on the stepped series; false alarms on every
other device model, and on all models in a run without the step; the detection delay
(days of data after the step until the test on the records so far rejects); and the
"oracle" z: the same score test at the known step time, an upper bound no detector that
must find the time can beat. Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

import numpy as np

from reconciler.learn import adapter, drift, records, specs, synthetic
from reconciler.model import documents as docs

WC = specs.WorkloadClass
MODELS = (
    "A100-SXM4-80GB",
    "H100-SXM5-80GB",
    "L40S",
    "BR104",
    "BI-V150",
    "Z100",
    "Ascend-910B2",
)
TARGET = ("L40S", WC.DECODE)
BASE = synthetic.Scenario()
STEP_AT = BASE.start + timedelta(days=15)


def scenario(per_side: int, step: float) -> synthetic.Scenario:
    return synthetic.Scenario(
        records=len(MODELS) * 3 * 2 * per_side,
        device_models=MODELS,
        class_mix={WC.PREFILL: 1.0, WC.DECODE: 1.0, WC.EMBEDDING: 1.0},
        mix_shift_at_day=None,
        steps=(synthetic.Step(*TARGET, STEP_AT, step),) if step else (),
    )


def oracle_z(rs: drift.RecordSeries) -> float:
    """The score test at the true step time (known): the best any detector can do."""
    h0 = int(STEP_AT.timestamp() // 3600)
    before = rs.hours < h0
    psi = np.clip(rs.z, -drift.HUBER_C, drift.HUBER_C)
    u, w = psi / rs.scale, 1.0 / rs.scale**2
    w1, wt = w[before].sum(), w.sum()
    score = u[before].sum() - w1 / wt * u.sum()
    return float(score / np.sqrt(np.var(psi) * w1 * (wt - w1) / wt))  # > 0 for a drop


def delay_days(rs: drift.RecordSeries) -> float | None:
    """Days of records after the step until the change point on the records so far alarms."""
    h0 = int(STEP_AT.timestamp() // 3600)
    for day in range(1, 16):
        sel = rs.hours < h0 + 24 * day
        part = drift.RecordSeries(
            rs.device_model, rs.workload_class, rs.hours[sel], rs.z[sel], rs.scale[sel]
        )
        alarm, _ = drift.change_point(part)
        if alarm is not None and alarm.direction is drift.Direction.DOWN:
            return float(day)
    return None


def run(per_side: int, seeds: range) -> dict[str, float]:
    hits, fa_models, fa_clean, delays, oracle = 0, 0, 0, [], []
    n_other = len(MODELS) - 1
    for seed in seeds:
        for step in (-0.03, 0.0):
            sc = scenario(per_side, step)
            frame, _ = synthetic.generate(sc, seed)
            out = adapter.learn(records.validate(frame, sc.end), None, docs.FactorPolicy(), sc.end)
            alarmed = {a.device_model for a in out.alarms}
            if step:
                hit = any((a.device_model, a.workload_class) == TARGET for a in out.alarms)
                hits += hit
                fa_models += len(alarmed - {TARGET[0]})
                rs = _series(out, frame, sc)
                oracle.append(oracle_z(rs))
                if hit:
                    d = delay_days(rs)
                    if d is not None:
                        delays.append(d)
            else:
                fa_clean += len(alarmed)
    n = len(seeds)
    return {
        "detected": hits / n,
        "fa_per_model": (fa_models + fa_clean) / (n * n_other + n * len(MODELS)),
        "median_delay_days": statistics.median(delays) if delays else float("nan"),
        "oracle_median_z": float(np.median(oracle)),
        "oracle_power_1pct": float(np.mean(np.asarray(oracle) > 2.326)),
    }


def _series(out: adapter.Outcome, frame: object, sc: synthetic.Scenario) -> drift.RecordSeries:
    from reconciler.learn import fit

    recs = records.validate(frame, sc.end)  # type: ignore[arg-type]
    f = recs.frame
    keep, scale = fit.screen_frame(f)
    first = fit.fit(f, keep=keep)
    resid = np.where(keep, fit.residuals(f, first), np.nan)
    effects = drift.node_effects(f, resid)
    slow = [s.node for s in out.slow_nodes]
    return next(
        r
        for r in drift.record_series(f, resid, effects, scale, slow)
        if (r.device_model, r.workload_class) == TARGET
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--per-side", default="200,400,800")
    args = ap.parse_args()
    print(
        "| records each side (per day) | seeds | detected (−3%) | false alarms per model "
        "per 30 days | median delay | oracle z at the known time (median) | oracle power, "
        "1% one-sided |"
    )
    print("|---|---|---|---|---|---|---|")
    for per_side in (int(x) for x in args.per_side.split(",")):
        t0 = time.perf_counter()
        r = run(per_side, range(args.seeds))
        print(
            f"| {per_side} (~{2 * per_side / 30:.0f}/day) | {args.seeds} | "
            f"{r['detected']:.0%} | {r['fa_per_model']:.1%} | "
            f"{r['median_delay_days']:.0f} d | {r['oracle_median_z']:.2f} | "
            f"{r['oracle_power_1pct']:.0%} |  <!-- {time.perf_counter() - t0:.0f} s -->",
            flush=True,
        )


if __name__ == "__main__":
    main()

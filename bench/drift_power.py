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
must find the time can beat.

The information bound, three ways (``--bound``): (1) that oracle on the pipeline's
residuals (fitted served-model, batch and node effects removed, pooled noise scales);
(2) the same known-time test as a robust regression on the series' own records with node,
batch-size and served-model terms (statsmodels RLM, Huber), the adjustment one would add if
nuisance variance were left in the residuals; (3) the ceiling: Monte Carlo from the
generator's own noise law (Student-t₃ with the batch-dependent scale, 5% gross outliers,
hourly AR noise) with every nuisance parameter known and the change time known, tested by
the efficient (maximum-likelihood) two-sample statistic, calibrated by simulation under no
change. Also the observed drop of the stepped series' mean residual (what the issue quotes
as "bin means dropped 3.15%"), to check the generator against the issue's text. Prints
Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

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


def scenario(
    per_side: int, step: float, noise_sigma: float = BASE.noise_sigma
) -> synthetic.Scenario:
    return synthetic.Scenario(
        noise_sigma=noise_sigma,
        records=len(MODELS) * 3 * 2 * per_side,
        device_models=MODELS,
        class_mix={WC.PREFILL: 1.0, WC.DECODE: 1.0, WC.EMBEDDING: 1.0},
        mix_shift_at_day=None,
        steps=(synthetic.Step(*TARGET, STEP_AT, step),) if step else (),
    )


def oracle_z(rs: drift.RecordSeries, config: drift.DriftConfig = drift.DriftConfig()) -> float:
    """The score test at the true step time (known), with the detector's own score: the
    best a detector that must find the time can approach."""
    h0 = int(STEP_AT.timestamp() // 3600)
    before = rs.hours < h0
    psi, _ = drift.record_score(rs.z, config)
    u, w = psi / rs.scale, 1.0 / rs.scale**2
    w1, wt = w[before].sum(), w.sum()
    score = u[before].sum() - w1 / wt * u.sum()
    return float(score / np.sqrt(np.var(psi) * w1 * (wt - w1) / wt))  # > 0 for a drop


def delay_days(rs: drift.RecordSeries, config: drift.DriftConfig) -> float | None:
    """Days of records after the step until the change point on the records so far alarms."""
    h0 = int(STEP_AT.timestamp() // 3600)
    for day in range(1, 16):
        sel = rs.hours < h0 + 24 * day
        part = drift.RecordSeries(
            rs.device_model, rs.workload_class, rs.hours[sel], rs.z[sel], rs.scale[sel]
        )
        alarm, _ = drift.change_point(part, config)
        if alarm is not None and alarm.direction is drift.Direction.DOWN:
            return float(day)
    return None


def run(
    per_side: int,
    seeds: range,
    bound: bool = False,
    config: drift.DriftConfig = drift.DriftConfig(),
    noise_sigma: float = BASE.noise_sigma,
) -> dict[str, float]:
    hits, fa_models, fa_clean, placed = 0, 0, 0, 0
    h0 = int(STEP_AT.timestamp() // 3600)
    delays: list[float] = []
    oracle: list[float] = []
    rlm: list[float] = []
    drops: list[float] = []
    n_other = len(MODELS) - 1
    for seed in seeds:
        for step in (-0.03, 0.0):
            sc = scenario(per_side, step, noise_sigma)
            frame, _ = synthetic.generate(sc, seed)
            recs = records.validate(frame, sc.end)
            out = adapter.learn(recs, None, docs.FactorPolicy(), sc.end, drift_config=config)
            alarmed = {a.device_model for a in out.alarms}
            if step:
                found = [
                    a
                    for a in out.alarms
                    if (a.device_model, a.workload_class) == TARGET
                    and a.direction is drift.Direction.DOWN
                ]
                hit = bool(found)
                hits += hit
                placed += hit and abs(found[0].change_hour - h0) <= 72
                fa_models += len(alarmed - {TARGET[0]})
                rs = _series(out, frame, sc)
                oracle.append(oracle_z(rs, config))
                drops.append(observed_drop(rs))
                if bound:
                    rlm.append(rlm_z(frame, sc))
                if hit:
                    d = delay_days(rs, config)
                    if d is not None:
                        delays.append(d)
            else:
                fa_clean += len(alarmed)
    n = len(seeds)
    z_1pct = 2.326
    return {
        "detected": hits / n,
        "placed_3d": placed / hits if hits else float("nan"),
        "fa_per_model": (fa_models + fa_clean) / (n * n_other + n * len(MODELS)),
        "fa_months": n * n_other + n * len(MODELS),
        "median_delay_days": statistics.median(delays) if delays else float("nan"),
        "oracle_median_z": float(np.median(oracle)),
        "oracle_power_1pct": float(np.mean(np.asarray(oracle) > z_1pct)),
        "rlm_median_z": float(np.median(rlm)) if rlm else float("nan"),
        "rlm_power_1pct": float(np.mean(np.asarray(rlm) > z_1pct)) if rlm else float("nan"),
        "drop_median": float(np.median(drops)),
        "drop_sd": float(np.std(drops, ddof=1)) if len(drops) > 1 else float("nan"),
    }


def observed_drop(rs: drift.RecordSeries) -> float:
    """Relative change of the mean residual across the true step (the issue's "bin means")."""
    h0 = int(STEP_AT.timestamp() // 3600)
    r = rs.z * rs.scale
    return math.expm1(float(r[rs.hours >= h0].mean() - r[rs.hours < h0].mean()))


def rlm_z(frame: pd.DataFrame, sc: synthetic.Scenario) -> float:
    """Known-time test as a robust regression on the stepped series' records: Huber RLM of
    log throughput on node, batch-size and served-model dummies plus an after-step dummy;
    the dummy's z (positive for a drop)."""
    import statsmodels.api as sm

    from reconciler.learn import fit

    f = records.validate(frame, sc.end).frame
    keep, _ = fit.screen_frame(f)
    sel = keep & (f["device_model"] == TARGET[0]).to_numpy()
    sel &= (f["workload_class"] == TARGET[1].value).to_numpy()
    g = f[sel]
    dummies = [
        pd.get_dummies(g[col].astype(str), prefix=col, drop_first=True)
        for col in ("node", "served_model", "batch_size")
    ]
    x = pd.concat(dummies, axis=1).astype(float)
    x["after"] = (g["hour"].to_numpy() >= int(STEP_AT.timestamp() // 3600)).astype(float)
    res = sm.RLM(g["log_tput"].to_numpy(), sm.add_constant(x.to_numpy()), sm.robust.norms.HuberT())
    fitted = res.fit()
    return float(-fitted.tvalues[-1])


# ------------------------------------------------------------------- the ceiling


_OUTLIER_SHIFTS = np.array([0.0, math.log(0.3), math.log(3.0)])


def _noise(rng: np.random.Generator, reps: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The generator's per-record noise on decode: t₃·scale(batch) + hourly AR + outliers."""
    sc = BASE
    batches = np.asarray(synthetic.BATCHES[WC.DECODE], dtype=float)
    scale = sc.noise_sigma * np.clip(1.5 - 0.15 * np.log(rng.choice(batches, (reps, n))), 0.5, None)
    x = scale * rng.standard_t(sc.t_df, (reps, n)) + rng.normal(0.0, sc.ar_sd, (reps, n))
    out = rng.random((reps, n)) < sc.outlier_rate
    x[out] += np.where(rng.random(int(out.sum())) < 0.5, _OUTLIER_SHIFTS[1], _OUTLIER_SHIFTS[2])
    return x, scale


def _score(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """−d/dx log f for the true noise density (t₃ mixture with the outlier shifts)."""
    sc = BASE
    weights = np.array([1 - sc.outlier_rate, sc.outlier_rate / 2, sc.outlier_rate / 2])
    z = (x[..., None] - _OUTLIER_SHIFTS) / scale[..., None]
    g = (1 + z * z / sc.t_df) ** (-(sc.t_df + 1) / 2) * weights
    dg = g * (-(sc.t_df + 1) * z / (sc.t_df + z * z)) / scale[..., None]
    return np.asarray(-dg.sum(-1) / g.sum(-1))


def _mle(x: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Location MLE per row under the true density (Fisher scoring), and its information."""
    mu = np.median(x, axis=-1, keepdims=True)
    for _ in range(25):
        p = _score(x - mu, scale)
        mu = mu + p.sum(-1, keepdims=True) / (p * p).sum(-1, keepdims=True)
    p = _score(x - mu, scale)
    return mu[..., 0], (p * p).sum(-1)


def ceiling(per_side: int, reps: int = 4000, seed: int = 12) -> dict[str, float]:
    """Power of the efficient known-time two-sample test on the generator's noise, every
    nuisance known; one-sided, critical values simulated under no change."""
    rng = np.random.default_rng(seed)
    delta = math.log1p(-0.03)

    def z(shift: float) -> np.ndarray:
        xb, sb = _noise(rng, reps, per_side)
        xa, sa = _noise(rng, reps, per_side)
        mb, ib = _mle(xb, sb)
        ma, ia = _mle(xa + shift, sa)
        return np.asarray((mb - ma) / np.sqrt(1 / ib + 1 / ia))

    null, alt = z(0.0), z(delta)
    return {
        "median_z": float(np.median(alt)),
        **{
            f"power_{a}": float(np.mean(alt > np.quantile(null, 1 - a)))
            for a in (0.01, 0.0167, 0.05)
        },
    }


def _series(
    out: adapter.Outcome, frame: pd.DataFrame, sc: synthetic.Scenario
) -> drift.RecordSeries:
    from reconciler.learn import fit

    recs = records.validate(frame, sc.end)
    f = recs.frame
    keep, _ = fit.screen_frame(f)
    first = fit.fit(f, keep=keep)
    resid = np.where(keep, fit.residuals(f, first), np.nan)
    effects = drift.node_effects(f, resid)
    slow = [s.node for s in out.slow_nodes]
    return next(
        r
        for r in drift.record_series(f, resid, effects, slow)
        if (r.device_model, r.workload_class) == TARGET
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--per-side", default="200,400,800")
    ap.add_argument("--bound", action="store_true", help="also the information-bound table")
    ap.add_argument(
        "--split-weight", type=float, default=drift.DriftConfig().split_weight, help="q"
    )
    ap.add_argument("--score", default=drift.DriftConfig().score, help="t or huber")
    ap.add_argument(
        "--statistic", default=drift.DriftConfig().statistic, help="mixture or max (round two)"
    )
    ap.add_argument(
        "--down-share", type=float, default=drift.DriftConfig().down_share, help="0.5: two-sided"
    )
    ap.add_argument(
        "--noise-sigma",
        type=float,
        default=BASE.noise_sigma,
        help="per-record t noise scale (0.063: the issue's 2.5x information per record)",
    )
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument(
        "--compare", action="store_true", help="round one and now side by side, per seed"
    )
    ap.add_argument("--cache", type=Path, help="with --compare: keep the series here")
    ap.add_argument(
        "--only", default="", help="with --compare: detectors whose names start so (a,b)"
    )
    args = ap.parse_args()
    if args.compare:
        for per_side in (int(x) for x in args.per_side.split(",")):
            seeds = range(args.first_seed, args.first_seed + args.seeds)
            compare(per_side, seeds, args.noise_sigma, args.cache, args.only)
        return
    config = drift.DriftConfig(
        split_weight=args.split_weight,
        score=args.score,
        down_share=args.down_share,
        statistic=args.statistic,
    )
    print(
        f"statistic = {config.statistic}, split_weight q = {config.split_weight}, "
        f"score = {config.score}, "
        f"down_share = {config.down_share}, noise_sigma = {args.noise_sigma}"
    )
    sides = [int(x) for x in args.per_side.split(",")]
    print(
        "| records each side (per day) | seeds | detected (−3%) | false alarms per model "
        "per 30 days (model-months) | median delay | oracle z at the known time (median) | "
        "oracle power, 1% one-sided | observed drop of the mean residual, median (sd) | "
        "placed within 3 days |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    results = {}
    for per_side in sides:
        t0 = time.perf_counter()
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        r = results[per_side] = run(per_side, seeds, args.bound, config, args.noise_sigma)
        print(
            f"| {per_side} (~{2 * per_side / 30:.0f}/day) | {args.seeds} | "
            f"{r['detected']:.0%} | {r['fa_per_model']:.1%} ({r['fa_months']:.0f}) | "
            f"{r['median_delay_days']:.0f} d | {r['oracle_median_z']:.2f} | "
            f"{r['oracle_power_1pct']:.0%} | {-r['drop_median']:.2%} ({r['drop_sd']:.2%}) | "
            f"{r['placed_3d']:.0%} |"
            f" <!-- {time.perf_counter() - t0:.0f} s -->",
            flush=True,
        )
    if not args.bound:
        return
    print()
    print("| records each side | known-time test | median z | power at 1% | at 1.67% | at 5% |")
    print("|---|---|---|---|---|---|")
    for per_side in sides:
        r = results[per_side]
        print(
            f"| {per_side} | pipeline residuals (Huber score) | {r['oracle_median_z']:.2f} | "
            f"{r['oracle_power_1pct']:.0%} | | |"
        )
        print(
            f"| {per_side} | RLM: node + batch + served model + step | {r['rlm_median_z']:.2f} | "
            f"{r['rlm_power_1pct']:.0%} | | |"
        )
        c = ceiling(per_side)
        print(
            f"| {per_side} | ceiling: true noise law, all nuisance known (MLE) | "
            f"{c['median_z']:.2f} | {c['power_0.01']:.0%} | {c['power_0.0167']:.0%} | "
            f"{c['power_0.05']:.0%} |",
            flush=True,
        )


# ------------------------------------------------------- side by side, per seed


def drift_series(
    per_side: int, step: float, seed: int, noise_sigma: float, cache: Path | None = None
) -> list[drift.RecordSeries]:
    """The learner's drift stage up to the tests (screen, fit, node effects, slow nodes,
    standardised record series): every series of this scenario is record-tested (fewer
    than 96 hourly bins), so the tests below see exactly what ``adapter.learn`` tests.
    ``cache``: a directory keeping them per (records, step, seed, noise), so detectors can
    be compared on the same series in several runs without generating and fitting again."""
    import pickle

    path = cache / f"series-{per_side}-{step:+.3f}-{seed}-{noise_sigma}.pkl" if cache else None
    if path is not None and path.exists():
        loaded: list[drift.RecordSeries] = pickle.loads(path.read_bytes())
        return loaded
    from reconciler.learn import fit

    sc = scenario(per_side, step, noise_sigma)
    frame, _ = synthetic.generate(sc, seed)
    f = records.validate(frame, sc.end).frame
    keep, _ = fit.screen_frame(f)
    resid = np.where(keep, fit.residuals(f, fit.fit(f, keep=keep)), np.nan)
    effects = drift.node_effects(f, resid)
    slow = [s.node for s in drift.slow_nodes(effects)]
    out = drift.record_series(f, resid, effects, slow)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(out))
    return out


COMPARE = {
    "round one (Huber score, max statistic, two-sided 1%)": drift.DriftConfig(
        score="huber",
        statistic="max",
        alpha=0.01,
        down_share=0.5,
        permutations=499,
        placement="split",
    ),
    "round two (t3 score, max statistic, drop at 0.75%, rise at 0.25%)": drift.DriftConfig(
        statistic="max", alpha=0.01, down_share=0.75, permutations=499, placement="split"
    ),
    "round three (t3 score, mixture over change times, drop at 0.5%, rise at 0.2%, 999 "
    "permutations)": drift.DriftConfig(permutations=999),
    "now (round three, permutations sequential to 4,999)": drift.DriftConfig(),
}


def compare(
    per_side: int,
    seeds: range,
    noise_sigma: float,
    cache: Path | None = None,
    only: str = "",
) -> None:
    """Each detector of ``COMPARE`` on the same series, seed by seed (one line each, so a
    long run can be read as it goes), then the totals: detection of the −3% step (as a
    drop), placement within 3 days, false alarms per model-window (the 6 other models of
    a stepped run and all 7 of the run without the step), and the known-time oracle with
    each detector's score (one-sided 1%). ``only``: comma-separated name prefixes of the
    detectors to run (all by default)."""
    detectors = {
        name: config
        for name, config in COMPARE.items()
        if not only or any(name.startswith(p.strip()) for p in only.split(","))
    }
    h0 = int(STEP_AT.timestamp() // 3600)
    hits = dict.fromkeys(detectors, 0)
    placed = dict.fromkeys(detectors, 0)
    false = dict.fromkeys(detectors, 0)
    oracle: dict[str, list[float]] = {name: [] for name in detectors}
    windows = 0
    for i, seed in enumerate(seeds, 1):
        line = []
        for step in (-0.03, 0.0):
            series = drift_series(per_side, step, seed, noise_sigma, cache)
            windows += len(MODELS) - (1 if step else 0)
            for name, config in detectors.items():
                short = name.split(" (")[0]
                alarmed: set[str] = set()
                for rs in series:
                    alarm, _, _ = drift.tested_change_point(rs, config)
                    if step and (rs.device_model, rs.workload_class) == TARGET:
                        oracle[name].append(oracle_z(rs, config))
                        if alarm is not None and alarm.direction is drift.Direction.DOWN:
                            hits[name] += 1
                            placed[name] += abs(alarm.change_hour - h0) <= 72
                            line.append(f"{short}: hit {(alarm.change_hour - h0) / 24:+.1f} d")
                        continue
                    if alarm is not None and not (step and rs.device_model == TARGET[0]):
                        alarmed.add(rs.device_model)  # the stepped model is not a window here
                false[name] += len(alarmed)
                if alarmed:
                    line.append(f"{short}: false alarm on {','.join(sorted(alarmed))}")
        print(
            f"<!-- seed {seed} ({i}/{len(seeds)}): {'; '.join(line) or 'nothing'} -->", flush=True
        )
    n = len(seeds)
    print()
    print(
        f"| detector ({per_side} records each side, noise σ {noise_sigma}, {n} seeds) | "
        "detected (−3%) | placed within 3 days | false alarms per model-window "
        "(model-windows) | known-time oracle z (median) | oracle power, 1% one-sided |"
    )
    print("|---|---|---|---|---|---|")
    for name in detectors:
        hit, near, fa = hits[name], placed[name], false[name]
        oz = np.asarray(oracle[name])
        print(
            f"| {name} | {hit / n:.0%} ({hit}/{n}) | "
            + (f"{near / hit:.0%} ({near}/{hit})" if hit else "–")
            + f" | {fa / windows:.1%} ({fa}/{windows}) | {np.median(oz):.2f} | "
            f"{np.mean(oz > 2.326):.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

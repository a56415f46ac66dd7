"""Accuracy and coverage of the at-SLO factors on synthetic records with known truth.

    .venv/bin/python bench/slo_bench.py --seeds 40

Per seed: ``synthetic.generate_slo`` (A100 reference, BR104 with a latency knee, flat L40S,
8 nodes each, one slow L40S node), written to CSV and learned through the real streaming path
(screen, content dedup, slow-node exclusion), then ``slo.estimate`` at a tight (45 ms), the
example's (60 ms) and a loose (180 ms) p99 target. Prints the median and p90 relative error
against the exact truth, the share of 95% intervals covering it, how often the ranking of
BR104 and L40S flips between the tight and the loose target as the truth does, and the time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from reconciler.learn import slo, stream, synthetic
from reconciler.model import documents as docs

TARGETS = (synthetic.TIGHT_P99_MS, 60.0, synthetic.LOOSE_P99_MS)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first", type=int, default=1000, help="first seed (tests use small ones)")
    args = ap.parse_args()
    errors: dict[float, list[float]] = {t: [] for t in TARGETS}
    covered: dict[float, list[bool]] = {t: [] for t in TARGETS}
    flips = 0
    fit_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.first, args.first + args.seeds):
            path = Path(tmp) / f"{seed}.csv"
            synthetic.generate_slo(seed).to_csv(path, index=False)
            aggs = stream.aggregate(stream.fragments([path]), NOW, [])
            slow = [s.node for s in stream.learn(aggs, None, docs.FactorPolicy(), NOW).slow_nodes]
            ranks = {}
            for target in TARGETS:
                truth = synthetic.slo_truth(target)
                t0 = time.process_time()
                got = slo.estimate(
                    aggs.cells, synthetic.specs.REFERENCE_MODEL, {"decode": target}, slow
                )
                fit_seconds.append(time.process_time() - t0)
                values = {}
                for e in got:
                    if e.device_model == synthetic.specs.REFERENCE_MODEL or e.value is None:
                        continue
                    values[e.device_model] = e.value
                    errors[target].append(abs(e.value / truth[e.device_model] - 1))
                    lo, hi = e.interval(0.95) or (0.0, 0.0)
                    covered[target].append(lo <= truth[e.device_model] <= hi)
                ranks[target] = values
            tight, loose = ranks[synthetic.TIGHT_P99_MS], ranks[synthetic.LOOSE_P99_MS]
            flips += tight["BR104"] < tight["L40S"] and loose["BR104"] > loose["L40S"]
    print(f"seeds {args.first}..{args.first + args.seeds - 1}, 2 devices per target")
    print("| p99 target | median error | p90 error | 95% intervals covering the truth |")
    print("|---|---|---|---|")
    for target in TARGETS:
        e = np.asarray(errors[target])
        print(
            f"| {target:g} ms | {np.median(e):.1%} | {np.quantile(e, 0.9):.1%} | "
            f"{np.mean(covered[target]):.1%} ({sum(covered[target])}/{len(covered[target])}) |"
        )
    pooled = np.concatenate([np.asarray(v) for v in errors.values()])
    cov = [c for v in covered.values() for c in v]
    print(f"pooled: median error {np.median(pooled):.1%}, coverage {np.mean(cov):.1%}")
    print(f"ranking flip (BR104 below L40S at 45 ms, above at 180 ms): {flips}/{args.seeds}")
    print(f"estimate (400 bootstrap draws, 3 models): median {np.median(fit_seconds):.2f} s CPU")


if __name__ == "__main__":
    main()

"""``cuctl plan --what-if`` at the planning benchmark's size (bench/generate_fleet.py: 10,000
devices, 1,250 nodes, 200 tenants, 5,000 claims), side by side with the plain plan it adds to.

A what-if costs one more pure plan of the changed inputs plus its ChangeSet against the plan
as it is; this measures, in one process and per run: the plan as it is, then the scenario
(``lose node``, ``add 16 x ... to pool``, ``factor ... -10%``) applied, planned and diffed.
CPU seconds (process time) are reported next to wall seconds: on a shared 2-core machine the
ratio within a run is the figure to compare.

    .venv/bin/python bench/bench_whatif.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import generate_fleet

    from reconciler import plan as planning
    from reconciler.diff import changeset
    from reconciler.model import observed as obs
    from reconciler.plan import whatif

    desired, raw = generate_fleet.generate()
    observed = obs.build(raw, desired.adapters, desired.settings.spec.driver_name)
    node = sorted({d.node for d in observed.devices})[0]
    model = sorted({d.model for d in observed.devices})[0]
    pool = desired.pools[0].metadata.name
    scenarios = {
        "lose node": [whatif.parse(f"lose node {node}")],
        "add 16 devices": [whatif.parse(f"add 16 x {model} to pool {pool}")],
        "factor -10%": [whatif.parse(f"factor {model} -10%")],
    }
    rows: dict[str, list[tuple[float, float]]] = {"plan as it is": []}
    rows.update({name: [] for name in scenarios})
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        base = planning.plan(desired, observed)
        rows["plan as it is"].append((time.perf_counter() - t, time.process_time() - c))
        for name, scenario in scenarios.items():
            try:
                t, c = time.perf_counter(), time.process_time()
                applied = whatif.apply(scenario, desired, observed)
                result = planning.plan(applied.desired, applied.observed, base.objects)
                changeset.compute(result.objects, base.objects)
                rows[name].append((time.perf_counter() - t, time.process_time() - c))
            except whatif.WhatIfError as exc:
                print(f"{name}: skipped ({exc})")
                rows[name] = []
    print(f"{len(observed.devices)} devices; median of {args.runs} runs (wall s, CPU s):")
    for name, values in rows.items():
        if values:
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"  {name:16s} {wall:6.2f}  {cpu:6.2f}")


if __name__ == "__main__":
    main()

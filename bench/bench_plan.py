"""Planning benchmark: 10,000 devices on 1,250 nodes, 200 tenants, 5,000 claims.

Each run is a fresh process (so peak RSS is that run's): generate the fleet (not timed),
then time (1) normalising the observed devices, (2) ``plan`` from scratch, (3) ``plan`` again
against the first plan's objects as live (the steady state), and (4) the ChangeSet of that
second plan. Prints one JSON line per run and the medians.

    .venv/bin/python bench/bench_plan.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run() -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    import generate_fleet

    from reconciler import plan as planning
    from reconciler.diff import changeset
    from reconciler.model import observed as obs

    desired, raw = generate_fleet.generate()
    # The collector is left as it is: plan() and changeset.compute() pause it themselves
    # (reconciler/_gc.py), so this measures exactly what cuctl and the controller do.
    t0 = time.perf_counter()
    observed = obs.build(raw, desired.adapters, desired.settings.spec.driver_name)
    t1 = time.perf_counter()
    first = planning.plan(desired, observed)
    t2 = time.perf_counter()
    second = planning.plan(desired, observed, first.objects)
    t3 = time.perf_counter()
    changes = changeset.compute(second.objects, second.live)
    t4 = time.perf_counter()
    assert changes.in_sync, "steady state must be in sync"
    return {
        "devices": len(observed.devices),
        "objects": len(first.objects),
        "observe_s": t1 - t0,
        "plan_s": t2 - t1,
        "plan_observe_s": t2 - t0,
        "replan_s": t3 - t2,
        "changeset_s": t4 - t3,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run()))
        return
    results = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, __file__, "--one"], check=True, capture_output=True, text=True
        ).stdout
        results.append(json.loads(out))
        print(out.strip(), flush=True)
    keys = [k for k in results[0] if k.endswith("_s") or k == "peak_mb"]
    medians = {k: round(statistics.median(r[k] for r in results), 3) for k in keys}
    print(json.dumps({"median": medians, "runs": len(results)}))


if __name__ == "__main__":
    main()

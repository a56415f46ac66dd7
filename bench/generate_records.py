"""Write synthetic inference records (CSV or Parquet) with known true factors.

    .venv/bin/python bench/generate_records.py --records 1000000 --out /tmp/records.parquet
    .venv/bin/python bench/generate_records.py --records 100000000 --parts 100 \
        --out /tmp/records100m      # a partitioned Parquet dataset, one slice at a time

With ``--parts K`` the window is generated as K time slices, each written as
``<out>/part=NNN/data.parquet`` before the next is drawn, so memory stays that of one slice
(``records / K`` rows) at any total; the fleet (node effects, hourly noise) is the seed's in
every slice.

    .venv/bin/python bench/generate_records.py --slo --out /tmp/slo.csv
        # decode records with latency curves (A100, BR104 with a knee, flat L40S) for
        # `cuctl factors fit` at a latency target; the truth is printed per target

Also writes ``<out>.truth.json``: the true factor per (device model, class) at the end of
the window, the steps and the slow nodes, so any run of ``cuctl factors fit`` can be
scored. Deterministic for a seed; see ``reconciler/learn/synthetic.py`` for the mechanism.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reconciler.learn import synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--nodes-per-model", type=int, default=8)
    ap.add_argument("--bad-rows", type=int, default=0)
    ap.add_argument("--no-steps", action="store_true", help="Leave out the -3%% / +12%% steps.")
    ap.add_argument("--models", default=",".join(synthetic.CANONICAL_MODELS))
    ap.add_argument("--out", type=Path, required=True, help=".csv or .parquet, or a directory")
    ap.add_argument("--parts", type=int, default=0, help="Write a partitioned dataset.")
    ap.add_argument(
        "--slo",
        action="store_true",
        help="Decode records with known latency curves (synthetic.generate_slo) instead.",
    )
    args = ap.parse_args()
    if args.slo:
        slo_frame = synthetic.generate_slo(args.seed)
        if args.out.suffix == ".csv":
            slo_frame.to_csv(args.out, index=False)
        else:
            slo_frame.to_parquet(args.out)
        truth_slo = {
            f"{t:g}": synthetic.slo_truth(t)
            for t in (synthetic.TIGHT_P99_MS, 60.0, synthetic.LOOSE_P99_MS)
        }
        args.out.with_name(args.out.name + ".truth.json").write_text(
            json.dumps({"seed": args.seed, "atSLO": truth_slo}, indent=2) + "\n"
        )
        print(f"{len(slo_frame)} records → {args.out}; at-SLO truth per p99 target: {truth_slo}")
        return
    base = synthetic.Scenario()
    sc = synthetic.Scenario(
        records=args.records,
        days=args.days,
        nodes_per_model=args.nodes_per_model,
        bad_rows=args.bad_rows,
        device_models=tuple(args.models.split(",")),
        steps=() if args.no_steps else synthetic.default_steps(base.start),
    )
    if args.parts:
        import time

        t0 = time.perf_counter()
        for i in range(args.parts):
            frame, truth = synthetic.generate(sc, args.seed, part=(i, args.parts))
            target = args.out / f"part={i:03d}"
            target.mkdir(parents=True, exist_ok=True)
            frame.to_parquet(target / "data.parquet", index=False)
            print(f"part {i}: {len(frame)} rows, {time.perf_counter() - t0:.0f} s", flush=True)
            del frame
        args.out = args.out / "dataset"
    else:
        frame, truth = synthetic.generate(sc, args.seed)
    if args.parts:
        pass
    elif args.out.suffix == ".csv":
        frame.to_csv(args.out, index=False)
    else:
        frame.to_parquet(args.out)
    meta = {
        "scenario": {
            "records": sc.records,
            "days": sc.days,
            "seed": args.seed,
            "start": sc.start.isoformat(),
            "end": sc.end.isoformat(),
        },
        "factors": [
            {"deviceModel": m, "workloadClass": c.value, "value": v}
            for (m, c), v in sorted(truth.factors.items())
        ],
        "steps": [
            {
                "deviceModel": s.device_model,
                "workloadClass": s.workload_class.value if s.workload_class else None,
                "at": s.at.isoformat(),
                "relative": s.relative,
            }
            for s in truth.steps
        ],
        "slowNodes": list(truth.slow_nodes),
        "badRows": {r.value: n for r, n in truth.bad_rows.items()},
    }
    Path(str(args.out) + ".truth.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{args.out}: {sc.records} records, evaluate with --now {sc.end.isoformat()}")


if __name__ == "__main__":
    main()

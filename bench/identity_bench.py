"""What counting each record once costs: hashing records to their content identity, and the
merge that finds records repeated across batches and files (issue 22.1).

    .venv/bin/python bench/identity_bench.py --records 20000000 --batches 20

Hashing: ``records.identity`` on a validated million-row batch (records per second).
Merge: ``stream.repeats`` over N identities in B sorted batches, 1% of them repeats of an
earlier batch; peak memory of the merge above the identities themselves (tracemalloc) and
wall time. Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from reconciler.learn import records, stream, synthetic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000_000)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()

    sc = synthetic.Scenario(records=1_000_000)
    frame, _ = synthetic.generate(sc, seed=1)
    recs = records.validate(frame, sc.end)
    t0 = time.perf_counter()
    ids = records.identity(recs.frame)
    hash_s = time.perf_counter() - t0
    distinct = len(np.unique(ids))

    rng = np.random.default_rng(0)
    per = args.records // args.batches
    chunks = []
    for b in range(args.batches):
        a = rng.integers(0, 2**64 - 1, per, dtype=np.uint64, endpoint=True)
        if b:  # 1% repeats of the previous batch
            a[: per // 100] = chunks[-1][2][: per // 100]
        chunks.append((b, 0, np.unique(a)))
    held = sum(c[2].nbytes for c in chunks)
    tracemalloc.start()
    t0 = time.perf_counter()
    drops, _, n = stream.repeats(chunks)
    merge_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    dropped = sum(len(v) for d in drops.values() for v, _ in d.values())
    print("| step | records | time | memory |")
    print("|---|---|---|---|")
    print(
        f"| identity (hash of the normalised content) | {len(ids):,} ({distinct:,} distinct) | "
        f"{hash_s:.2f} s ({len(ids) / hash_s / 1e6:.1f} M/s) | 8 bytes per record |"
    )
    print(
        f"| merge across {args.batches} batches | {args.records:,} ({n:,} distinct, "
        f"{dropped:,} repeats found) | {merge_s:.1f} s | identities {held / 2**20:.0f} MB "
        f"+ merge peak {peak / 2**20:.0f} MB |"
    )


if __name__ == "__main__":
    main()

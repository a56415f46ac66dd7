"""Streamed factor learning at fleet scale: time and peak memory for a partitioned dataset.

    .venv/bin/python bench/generate_records.py --records 100000000 --parts 100 \\
        --out /tmp/records100m                                       # once, ~30 min
    .venv/bin/python bench/learn_stream_bench.py /tmp/records100m --parts 10,100

Each measurement runs ``cuctl factors fit`` (the local engine) in a fresh process on the
first N partitions and reports wall time and the child's peak RSS (``getrusage``), so the
figures include Python start-up, imports, both passes and the fit. Memory must not grow
with N: the aggregates are bounded by the fleet and the window, not by the records.
Prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import git

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "gitrepo"


def repo(tmp: Path) -> Path:
    root = tmp / "repo"
    shutil.copytree(EXAMPLE, root)
    r = git.Repo.init(root, initial_branch="main")
    r.git.add(A=True)
    actor = git.Actor("bench", "bench@example.invalid")
    r.index.commit("example", author=actor, committer=actor)
    return root


def run(dataset: Path, parts: int, tmp: Path, engine: str) -> tuple[float, float, int]:
    sub = tmp / f"first{parts}"
    sub.mkdir()
    chosen = sorted(p for p in dataset.iterdir() if p.is_dir())[:parts]
    for p in chosen:  # links to the files (rglob does not descend into linked directories)
        (sub / p.name).mkdir()
        for f in p.glob("*.parquet"):
            (sub / p.name / f.name).symlink_to(f)
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for p in chosen for f in p.rglob("*.parquet"))
    cmd = [
        sys.executable,
        "-m",
        "reconciler.cli",
        "factors",
        "fit",
        "--records",
        str(sub),
        "--repo",
        str(repo(tmp / f"r{parts}")),
        "--now",
        "2026-11-27T00:00:00Z",
        "--engine",
        engine,
    ]
    # A wrapper process per measurement: its RUSAGE_CHILDREN is this run's peak alone.
    wrapper = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    wall = time.perf_counter() - t0
    rc, peak = res.stdout.split()[-2:]
    if int(rc) not in (0, 1):
        raise SystemExit(res.stderr[-2000:])
    return wall, int(peak) / 1024.0, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--parts", default="10,100", help="Partition counts, ascending.")
    ap.add_argument("--engine", default="local")
    args = ap.parse_args()
    print("| records | partitions | engine | wall time | peak RSS |")
    print("|---|---|---|---|---|")
    for parts in (int(x) for x in args.parts.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            wall, rss, rows = run(args.dataset, parts, Path(tmp), args.engine)
        print(
            f"| {rows:,} | {parts} | {args.engine} | {wall:.0f} s | {rss:.0f} MB |",
            flush=True,
        )


if __name__ == "__main__":
    main()

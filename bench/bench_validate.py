"""Benchmark: validate a large repository at a Git revision (not a timed unit test).

Generates a synthetic repository (default 200 tenants, 50 pools, 5,000 claims and a matching
snapshot of 200 nodes / 1,520 devices) with ``bench/generate_repo.py``, commits it to a fresh
Git repository, then times ``source.read_revision`` + ``validate.validate_tree`` end to end,
several runs, and prints the median, the spread and the peak resident memory. The figure is
recorded under "## Validation" in BENCHMARKS.md.

    .venv/bin/python bench/bench_validate.py [--runs 7] [--tenants 200 --pools 50 --claims 5000]
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import git

from reconciler import _gc, source
from reconciler.validate import syntax, validation

_HERE = Path(__file__).resolve().parent


def _generator() -> types.ModuleType:
    sys.path.insert(0, str(_HERE))
    return importlib.import_module("generate_repo")


def _load_all(tree: source.tree.SourceTree) -> None:
    for path, content in tree.files.items():
        snapshot = path.startswith("observed/")
        syntax.load(path, content, syntax.SNAPSHOT_LIMITS if snapshot else syntax.DOCUMENT_LIMITS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--claims", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cu-bench-") as tmp:
        root = Path(tmp) / "repo"
        files = _generator().write_synthetic(root, args.tenants, args.pools, args.claims)
        repo = git.Repo.init(root)
        repo.git.add(A=True)
        repo.index.commit("synthetic desired state")
        size = sum(
            p.stat().st_size for p in root.rglob("*") if p.is_file() and ".git" not in p.parts
        )
        print(
            f"repository: {files} files, {size / 2**20:.1f} MiB, "
            f"{args.tenants} tenants, {args.pools} pools, {args.claims} claims",
            file=sys.stderr,
        )
        times: list[float] = []
        cpu: list[float] = []
        load_before = os.getloadavg()[0]
        for _ in range(args.runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            tree = source.read(str(root), "HEAD")
            result = validation.validate_tree(tree)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            assert result.ok, [d.render() for d in result.diagnostics[:5]]
            assert result.state is not None and len(result.state.claims) == args.claims
        # Stage split of one run, to show where the time goes.
        t0 = time.perf_counter()
        tree = source.read(str(root), "HEAD")
        t1 = time.perf_counter()
        with _gc.paused():
            _load_all(tree)
        t2 = time.perf_counter()
        validation.validate_tree(tree)
        t3 = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c_parser = syntax._yaml().Parser.__module__.startswith("_ruamel") or "clib" in str(
        syntax._yaml().Parser
    )
    print(f"python {platform.python_version()}, ruamel C parser: {c_parser}")
    print(f"runs: {', '.join(f'{t:.2f}' for t in times)} s")
    print(f"median: {statistics.median(times):.2f} s  (min {min(times):.2f}, max {max(times):.2f})")
    print(
        f"CPU time of this process, median: {statistics.median(cpu):.2f} s "
        f"(min {min(cpu):.2f}); excludes the git subprocess"
    )
    print(f"load average (1 min) before/after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")
    print(
        f"git read: {t1 - t0:.2f} s, YAML load: {t2 - t1:.2f} s, full validation: {t3 - t2:.2f} s"
    )
    print(f"peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()

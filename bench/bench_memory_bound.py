"""Peak memory of ``cuctl validate --rev`` and ``cuctl plan --rev`` on the hostile revisions of
issue 20 (tests/gitplumbing.py ``HOSTILE``), against the controller's 512Mi limit.

Each command runs in a fresh process (no memory limit here; tests/source/test_memory_bound.py
runs them under one); the figure is that process's peak RSS (``ru_maxrss``), plus wall time
and the first diagnostic it printed. The clean example is the baseline.
Usage: python bench/bench_memory_bound.py [CASE ...]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

import gitplumbing  # noqa: E402

_CHILD = r"""
import json, sys
from reconciler import cli
from reconciler.cli import plan, validate  # noqa: F401
try:
    code = cli.app(sys.argv[1:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's over fork+exec)
hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
peak = int(hwm.split()[1]) * 1024
print("\n@@" + json.dumps({"code": code if isinstance(code, int) else 0, "peak": peak}))
"""


def measure(root: Path, command: str) -> tuple[int, float, float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, command, str(root), "--rev", "HEAD"],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    marker = proc.stdout.rfind("\n@@")
    result = json.loads(proc.stdout[marker + 3 :])
    lines = [x for x in (proc.stdout[:marker] + proc.stderr).splitlines() if ": CU" in x]
    first = lines[0].split(": ", 2)[1] if lines else "-"
    return int(result["code"]), result["peak"] / 2**20, elapsed, first


def main() -> None:
    cases = sys.argv[1:] or ["clean-example", *gitplumbing.HOSTILE]
    print("| revision | validate peak RSS | plan peak RSS | first diagnostic | validate time |")
    print("|---|---|---|---|---|")
    for case in cases:
        tmp = Path(tempfile.mkdtemp(prefix="cu-bench-mem-"))
        try:
            root = tmp / "repo"
            if case == "clean-example":
                s = gitplumbing.Stream()
                s.commit(
                    gitplumbing.Commit("example", dict(gitplumbing.tree_files(gitplumbing.EXAMPLE)))
                )
                gitplumbing.init(root)
                gitplumbing.run(root, s)
            else:
                gitplumbing.hostile_revision(root, case)
            _, v_peak, v_time, first = measure(root, "validate")
            _, p_peak, _, _ = measure(root, "plan")
            print(f"| {case} | {v_peak:.0f} MiB | {p_peak:.0f} MiB | {first} | {v_time:.1f} s |")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

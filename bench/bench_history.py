"""``cuctl history`` on a 2,000-commit history, cold (no index) and warm (index built).

Builds, with ``git fast-import``, the example repository and N commits: each edits one of the
five tenants' priority, every 10th edits a claim, every 50th moves a tenant file, every 100th
is a ``--no-ff`` merge of a one-commit branch. Then times, as separate processes (what a user
waits for), median of R runs each:
- ``git log --oneline`` (the reference);
- ``cuctl history --tenant research-batch`` cold: the index removed before each run;
- the same warm: the index kept.
Usage: python bench/bench_history.py [N] [R]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

import gitplumbing  # noqa: E402

EXAMPLE = HERE / "examples" / "gitrepo"
TENANTS = ["ads-embedding", "chat-assistant", "ml-platform-dev", "research-batch", "search-ranking"]


def build(root: Path, n: int) -> None:
    gitplumbing.init(root)
    s = gitplumbing.Stream()
    files = gitplumbing.tree_files(EXAMPLE)
    s.commit(gitplumbing.Commit("example", dict(files)))
    where = {t: f"tenants/{t}.yaml" for t in TENANTS}
    claim = "claims/ads-embedding/backfill.yaml"
    for i in range(n):
        t = TENANTS[i % len(TENANTS)]
        text = files[f"tenants/{t}.yaml"]
        changes: dict[str, bytes | int | None] = {}
        if i % 50 == 49:
            old, new = where[t], f"teams/{i}/{t}.yaml"
            changes[old], where[t] = None, new
        first = text.split(b"priority: ", 1)
        rest = first[1].split(b"\n", 1)[1] if len(first) == 2 else b""
        body = first[0] + b"priority: %d\n" % (100 + i) + rest if len(first) == 2 else text
        changes[where[t]] = body
        if i % 10 == 9:
            changes[claim] = files[claim] + b"# edit %d\n" % i
        who = f"Dev{i % 7} <dev{i % 7}@example.invalid>"
        date = f"{1_700_000_000 + i * 60} +0000"
        if i % 100 == 99:
            s.commit(
                gitplumbing.Commit(
                    f"feature {i}",
                    changes,
                    author=who,
                    date=date,
                    branch=f"refs/heads/f{i}",
                    from_="refs/heads/main",
                )
            )
            s.commit(
                gitplumbing.Commit(
                    f"Merge f{i}",
                    changes,
                    author="Merger <m@example.invalid>",
                    date=date,
                    merge=f"refs/heads/f{i}",
                )
            )
        else:
            s.commit(gitplumbing.Commit(f"change {i}", changes, author=who, date=date))
    gitplumbing.run(root, s)


def timed(cmd: list[str], cwd: Path, runs: int, before: object = None) -> float:
    values = []
    for _ in range(runs):
        if callable(before):
            before()
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
        values.append(time.perf_counter() - start)
    return statistics.median(values)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tmp = Path(tempfile.mkdtemp(prefix="cu-bench-history-"))
    try:
        root = tmp / "repo"
        build(root, n)
        count = subprocess.run(
            ["git", "rev-list", "--count", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        cuctl = [sys.executable, "-m", "reconciler.cli", "history", str(root)]
        query = [*cuctl, "--tenant", "research-batch"]
        index = root / ".git" / "cu-reconciler"
        git_log = timed(["git", "log", "--oneline"], root, runs)
        cold = timed(query, root, runs, lambda: shutil.rmtree(index, ignore_errors=True))
        warm = timed(query, root, runs)
        out = subprocess.run(query, cwd=root, capture_output=True, text=True).stdout
        entries = out.count("\n    ") // 2
        print(f"commits: {count} ({n} changes)  entries shown: ~{entries}")
        print(f"git log --oneline:           {git_log:.2f} s")
        print(f"cuctl history, cold (index): {cold:.2f} s")
        print(f"cuctl history, warm:         {warm:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Signature verification over long histories (issue 19): every commit, no count cap.

Builds the example repository with signing required (an ssh-keygen ed25519 key), then N
commits signed by that key written with Git plumbing (tests/gitops/signed_history.py), and
times, median of R runs, caches cleared before each (the cold cost a restarted controller or
a plugin's render pays):
- ``verify`` with no anchor (render, plan, a fresh cluster): the whole first-parent history;
- ``verify`` from a last verified revision N commits back (apply, run after a big push);
- the same, warm (the per-process cache: a second reconcile of the same head);
- Git's own ``git verify-commit`` per commit on 50 commits, scaled to N (the fallback for GPG
  keys and for allowed-signers lines with options), for comparison;
- building N unsigned commits with ``git fast-import`` (what an attacker's push costs).
Usage: python bench/bench_signing.py [N] [R]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import git

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gitops"))

import signed_history as sh  # noqa: E402

from reconciler.model import documents as docs  # noqa: E402
from reconciler.source import signature  # noqa: E402

EXAMPLE = ROOT / "examples" / "gitrepo"


def _clear() -> None:
    signature._SETTINGS.clear()
    signature._VERIFIED.clear()
    signature._BLOB_HAS_SETTINGS.clear()


CPU: list[float] = []
"""CPU seconds (this process and its git children) of each timed run: on a shared machine
the wall time carries the other processes' load, the CPU time does not."""


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object], runs: int, *, clear: bool) -> float:
    values, cpu = [], []
    for _ in range(runs):
        if clear:
            _clear()
        t0, c0 = time.perf_counter(), _cpu()
        fn()
        values.append(time.perf_counter() - t0)
        cpu.append(_cpu() - c0)
    CPU.append(statistics.median(cpu))
    return statistics.median(values)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tmp = Path(tempfile.mkdtemp())
    root = tmp / "repo"
    shutil.copytree(EXAMPLE, root)
    repo = git.Repo.init(root, initial_branch="main")
    key = sh.ssh_key(tmp, "bench")
    settings = root / "cluster.yaml"
    settings.write_text(
        settings.read_text() + f"  signing:\n    sshAllowedSigners:\n      - {key.line}\n"
    )
    repo.git.add(A=True)
    subprocess.run(
        [
            "git",
            "-c", "user.name=bench",
            "-c", "user.email=bench@example.invalid",
            "-c", "gpg.format=ssh",
            "-c", f"user.signingkey={key.path}",
            "commit", "-q", "-S", "-m", "start",
        ],
        cwd=root,
        check=True,
    )  # fmt: skip
    start = repo.head.commit.hexsha
    t0 = time.perf_counter()
    head = sh.signed_commits(root, n, key)
    t_build_signed = time.perf_counter() - t0
    anchor = signature.Anchor(start, docs.CommitSigning(ssh_allowed_signers=[key.line]))

    def cold_none() -> None:
        assert signature.verify(str(root), head) is not None

    def cold_anchor() -> None:
        verified = signature.verify(str(root), head, anchor)
        assert verified is not None and verified.commits == n

    t_none = timed(cold_none, runs, clear=True)
    t_anchor = timed(cold_anchor, runs, clear=True)
    t_warm = timed(cold_anchor, runs, clear=False)
    sample = repo.git.rev_list("--max-count=50", head).split()
    keys = anchor.signing
    assert keys is not None
    t0 = time.perf_counter()
    for sha in sample:
        signature._git_verify(repo, sha, keys, "bench")
    t_git = (time.perf_counter() - t0) / len(sample) * n

    attacker = tmp / "attacker"
    shutil.copytree(root, attacker)
    t0 = time.perf_counter()
    sh.empty_commits(attacker, n)
    t_fast_import = time.perf_counter() - t0

    print(f"commits={n} runs={runs}")
    print(f"build {n} signed commits (plumbing, in-process signing): {t_build_signed:.2f} s")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"verify, no anchor (whole history), cold: {t_none:.2f} s (CPU {CPU[0]:.2f} s)")
    print(
        f"verify, from the last verified revision {n} commits back, cold: {t_anchor:.2f} s "
        f"(CPU {CPU[1]:.2f} s)"
    )
    print(f"verify, same, warm (cached): {t_warm:.3f} s (CPU {CPU[2]:.3f} s)")
    print(f"git verify-commit per commit, scaled to {n}: {t_git:.1f} s")
    print(f"fast-import {n} unsigned commits: {t_fast_import:.2f} s")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

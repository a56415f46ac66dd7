"""Audit costs on a repository with a long history: cuctl history and the signature walk.

Builds the example repository with N commits (each edits one tenant's priority, every tenth a
claim), then times, in this process, median of R runs each:
- ``history --tenant`` (walks every commit, parses only changed files);
- ``signature.verify`` of HEAD when no commit requires signing (the walk every reconcile pays;
  the caches are cleared before each run, so this is the cold cost);
- the same with N signed commits (ssh-keygen key), cold.
Usage: python bench/bench_audit.py [N] [R]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import git

from reconciler.source import history, signature

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gitrepo"


def build(root: Path, n: int, key: Path | None, signer: str | None) -> git.Repo:
    shutil.copytree(EXAMPLE, root)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "bench")
        cfg.set_value("user", "email", "bench@example.invalid")
        if key is not None:
            cfg.set_value("gpg", "format", "ssh")
            cfg.set_value("user", "signingkey", str(key))
            cfg.set_value("commit", "gpgsign", "true")
    if signer is not None:
        path = root / "cluster.yaml"
        path.write_text(
            path.read_text() + f"  signing:\n    sshAllowedSigners:\n      - {signer}\n"
        )
    tenant = root / "tenants" / "research-batch.yaml"
    base = tenant.read_text()
    repo.git.add(A=True)
    repo.git.commit("-q", "-m", "start")
    for i in range(n):
        tenant.write_text(base.replace("priority: 300", f"priority: {301 + i % 500}"))
        repo.git.commit("-q", "-am", f"change {i}")
    return repo


def timed(fn: object, runs: int, clear: bool) -> float:
    values = []
    for _ in range(runs):
        if clear:
            signature._SETTINGS.clear()
            signature._VERIFIED.clear()
            signature._BLOB_HAS_SETTINGS.clear()
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        values.append(time.perf_counter() - t0)
    return statistics.median(values)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    tmp = Path(tempfile.mkdtemp())
    plain = build(tmp / "plain", n, None, None)
    t_hist = timed(
        lambda: history.history(plain.working_dir, history.document("Tenant", "research-batch")),
        runs,
        False,
    )
    t_walk = timed(lambda: signature.verify(plain.working_dir, "HEAD"), runs, True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "k")], check=True
    )
    pub = (tmp / "k.pub").read_text().split()
    signed = build(tmp / "signed", n, tmp / "k", f"bench@example.invalid {pub[0]} {pub[1]}")
    t_signed = timed(lambda: signature.verify(signed.working_dir, "HEAD"), runs, True)
    t_warm = timed(lambda: signature.verify(signed.working_dir, "HEAD"), runs, False)
    print(f"commits={n} runs={runs}")
    print(f"history --tenant: {t_hist:.2f} s")
    print(f"signature walk, no signing anywhere (cold): {t_walk:.2f} s")
    print(f"signature walk, {n} signed commits (cold): {t_signed:.2f} s")
    print(f"signature walk, {n} signed commits (warm, cached): {t_warm:.3f} s")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

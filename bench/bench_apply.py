"""Apply benchmark: ``cuctl apply`` against ``kubectl apply/diff --server-side``, one cluster.

On ``bench/generate_repo.py`` output (default 200 tenants, 50 pools, 5,000 claims) with its
snapshot loaded into a fresh local control plane, as the reconciler's ServiceAccount:

1. ``kubectl apply --server-side`` of the rendered target (the objects ``cuctl apply`` would
   write, as YAML) from scratch, then again (no-op), then ``kubectl diff --server-side``;
2. every owned object deleted; ``cuctl apply`` from scratch, then ``cuctl apply`` again (no-op).

Both tools run as subprocesses, so start-up is included. kubectl is built from the same Go
modules as the control plane (hack/build-k8s.sh). Prints one JSON line per run and medians;
the machine is shared, so compare the ratios within one invocation.

    .venv/bin/python bench/bench_apply.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import git
from ruamel.yaml import YAML

HERE = Path(__file__).resolve().parent
KINDS = (
    "ResourceClaim",
    "ResourceClaimTemplate",
    "ResourceQuota",
    "ResourceSlice",
    "DeviceClass",
    "DeviceTaintRule",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingAdmissionPolicy",
)


def _timed(
    cmd: list[str],
    ok: tuple[int, ...] = (0,),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    elapsed = time.perf_counter() - t0
    if done.returncode not in ok:
        raise SystemExit(f"{cmd[:3]} exit {done.returncode}: {done.stderr[-2000:]}")
    return elapsed


def _steps(stderr: str) -> str:
    """cuctl apply's own per-step seconds (its "took" line)."""
    return next((ln for ln in stderr.splitlines() if ln.startswith("cuctl apply: took")), "")


def _delete_owned(api: Any, namespaces: list[str]) -> None:
    from reconciler.devcluster import rawapi
    from reconciler.model import kinds, ownership

    selector = {"labelSelector": f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"}
    for kind in KINDS:
        k = kinds.of(kind)
        for ns in namespaces if k.namespaced else [""]:
            rawapi.request(api, "DELETE", k.collection_path(ns), query=selector)
    for kind in KINDS:  # wait until gone
        k = kinds.of(kind)
        while rawapi.request(api, "GET", k.collection_path(), query=selector)["items"]:
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--claims", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also time cuctl apply from this source tree (e.g. `git archive` of main)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    import generate_repo

    from reconciler import devcluster, observe, source, validate
    from reconciler import plan as planning
    from reconciler.devcluster import identity
    from reconciler.devcluster import snapshot as devsnapshot
    from reconciler.observe import cluster

    work = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    root = work / "repo"
    generate_repo.write_synthetic(root, args.tenants, args.pools, args.claims)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "bench")
        cfg.set_value("user", "email", "bench@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("bench")

    bins = devcluster.ensure_built()
    cp = devcluster.start(work / "cluster", binaries=bins)
    try:
        admin = cp.api_client()
        settings = YAML(typ="safe").load((root / "cluster.yaml").read_text())["spec"]
        namespaces: list[str] = settings["managedNamespaces"]
        for ns in namespaces:
            identity.ensure_namespace(admin, ns)
        snapshot = root / settings.get("layout", {}).get("snapshot", "observed/snapshot.yaml")
        devsnapshot.load(admin, snapshot)
        account = identity.install_rbac(admin)
        kubeconfig = identity.service_account_kubeconfig(admin, cp.kubeconfig, *account)
        sa = cluster.connect(str(kubeconfig))

        state = validate.validate_tree(source.read(str(root), "HEAD")).state
        assert state is not None, "the generated repository is valid"
        objects = planning.plan(state, observe.observe(cluster.Cluster(sa), state)).objects
        rendered = work / "rendered.yaml"
        with rendered.open("w") as f:
            YAML().dump_all([dict(o) for o in objects], f)
        kubectl = [str(bins.kubectl), "--kubeconfig", str(kubeconfig)]
        k_apply = [*kubectl, "apply", "--server-side", "--field-manager=kubectl-bench"]
        k_apply += ["--force-conflicts", "-f", str(rendered)]
        k_diff = [*kubectl, "diff", "--server-side", "--field-manager=kubectl-bench"]
        k_diff += ["--force-conflicts", "-f", str(rendered)]
        cuctl = [sys.executable, "-m", "reconciler.cli", "apply", str(root), "--rev", "HEAD"]
        cuctl += ["--kubeconfig", str(kubeconfig), "--concurrency", str(args.concurrency)]

        # Bytecode caches on, as an installed cuctl has them (this machine sets
        # PYTHONDONTWRITEBYTECODE, which would recompile the checkout on every run).
        run_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        run_env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        rows = []
        for run in range(args.runs):
            row: dict[str, Any] = {"run": run, "objects": len(objects)}
            row["load1_start"] = round(os.getloadavg()[0], 1)  # the machine is shared
            _delete_owned(admin, namespaces)
            row["kubectl_apply_scratch_s"] = _timed(k_apply)
            row["kubectl_apply_noop_s"] = _timed(k_apply)
            row["kubectl_diff_noop_s"] = _timed(k_diff, ok=(0, 1))
            _delete_owned(admin, namespaces)
            t0 = time.perf_counter()
            scratch = subprocess.run(cuctl, capture_output=True, text=True, env=run_env)
            row["cuctl_apply_scratch_s"] = time.perf_counter() - t0
            assert scratch.returncode == 0, scratch.stderr[-2000:]
            row["cuctl_scratch_steps"] = _steps(scratch.stderr)
            t0 = time.perf_counter()
            noop = subprocess.run(cuctl, capture_output=True, text=True, env=run_env)
            row["cuctl_apply_noop_s"] = time.perf_counter() - t0
            assert noop.returncode == 0, noop.stderr[-2000:]
            row["cuctl_noop_steps"] = _steps(noop.stderr)
            row["cuctl_noop_message"] = noop.stderr.strip().splitlines()[-1]
            row["load1_end"] = round(os.getloadavg()[0], 1)
            print(json.dumps(row), flush=True)
            if args.baseline:  # the same two runs with the baseline's code, same cluster
                # Run from the baseline's folder: ``python -m`` puts the working directory
                # first on sys.path, so from this checkout PYTHONPATH alone would still
                # import this checkout's code (the case before 2026-12-02's fix).
                env = {**run_env, "PYTHONPATH": str(args.baseline)}
                base = args.baseline.resolve()
                _delete_owned(admin, namespaces)
                row["baseline_apply_scratch_s"] = _timed(cuctl, env=env, cwd=base)
                row["baseline_apply_noop_s"] = _timed(cuctl, env=env, cwd=base)
                print(json.dumps(row), flush=True)
            rows.append(row)
        medians = {
            k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0] if k.endswith("_s")
        }
        medians["scratch_ratio"] = round(
            medians["cuctl_apply_scratch_s"] / medians["kubectl_apply_scratch_s"], 2
        )
        medians["noop_ratio_vs_diff"] = round(
            medians["cuctl_apply_noop_s"] / medians["kubectl_diff_noop_s"], 2
        )
        print(json.dumps({"median": medians}))
    finally:
        cp.stop()


if __name__ == "__main__":
    main()

"""Controller benchmark on the local control plane (issue 10), one run, short by default.

Measures, with ``cuctl run`` as a subprocess and the example repository on a bare remote:
commit→converged latency over N commits with the webhook, then with polling (1 s); vendor
node appears → its CU slice published; an idle controller's CPU and RSS over a period and
the apiserver requests it adds per idle minute (``apiserver_request_total`` delta with the
controller vs the same period without it).

    .venv/bin/python bench/bench_controller.py --commits 20 --idle-seconds 600

``--big`` measures commit→converged (webhook) on ``bench/generate_repo.py``'s 200-tenant /
5,000-claim repository instead (its 200-node snapshot loaded), after the first convergence:

    .venv/bin/python bench/bench_controller.py --big --commits 10

``--big --node-events N`` measures instead, on the same repository, node lost → its CU
slices gone (then node back → its CU slices published) over N events, in three modes side
by side in the same minutes (issue 24's end-to-end figure): the default (observe from the
watch cache, plan with the memo), ``--no-watch-cache`` (list everything each reconcile) and
``--no-watch-cache --no-memo`` (a full list and plan per event):

    .venv/bin/python bench/bench_controller.py --big --node-events 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests" / "controller"), str(ROOT / "tests")]

import git  # noqa: E402
import harness  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from reconciler import devcluster, kube  # noqa: E402
from reconciler.devcluster import drivers, identity, nodes, rawapi  # noqa: E402
from reconciler.devcluster import snapshot as devsnapshot  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _bump(i: int, rel: str = "claims/search-ranking/query-rewrite.yaml") -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        text = re.sub(r"\n# bench \d+\n", "\n", text) + f"\n# bench {i}\n"
        # A comment-only change still is a new revision: the full reconcile runs and the
        # revision annotation moves on every owned object.
        path.write_text(text)

    return edit


def _commits(
    env: harness.Env,
    replica: harness.Replica,
    n: int,
    webhook: bool,
    rel: str = "claims/search-ranking/query-rewrite.yaml",
    cpu: list[float] | None = None,
) -> list[float]:
    """Seconds from push to ``CUSync`` Ready at it, per commit; the controller's CPU seconds
    per commit into ``cpu`` (less sensitive to a loaded machine than wall time)."""
    cpu = [] if cpu is None else cpu
    out = []
    for i in range(n):
        sha = env.commit(f"bench {i}", _bump(i + (1000 if webhook else 0), rel))
        t0 = time.monotonic()
        cpu0 = _proc_stats(replica.proc.pid)[0]
        if webhook:
            env.webhook(replica, {"ref": "refs/heads/main", "after": sha})
        env.ready_at(sha, timeout=300)
        out.append(time.monotonic() - t0)
        cpu.append(_proc_stats(replica.proc.pid)[0] - cpu0)
    return out


def _requests(api: object) -> float:
    text = rawapi.request(api, "GET", "/metrics")  # type: ignore[arg-type]
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith("apiserver_request_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _proc_stats(pid: int) -> tuple[float, int]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12])) / ticks
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _reconciles(replica: harness.Replica) -> int:
    return sum(1 for line in replica.lines() if line.get("msg") == "reconcile")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=600)
    ap.add_argument("--node-samples", type=int, default=10)
    ap.add_argument("--big", action="store_true", help="the 200-tenant generated repository")
    ap.add_argument(
        "--node-events", type=int, default=0, help="with --big: node lost/back events per mode"
    )
    ap.add_argument(
        "--modes",
        default="watch_cache,list,list_no_memo",
        help="with --node-events: which of watch_cache, list, list_no_memo to run",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    cp = devcluster.start(work / "cluster")
    try:
        with cp.api_client() as api:
            repo_dir = work / "repo"
            if args.big:
                sys.path.insert(0, str(HERE))
                import generate_repo

                generate_repo.write_synthetic(repo_dir, 200, 50, 5000)
            else:
                shutil.copytree(ROOT / "examples" / "gitrepo", repo_dir)
            repo = git.Repo.init(repo_dir, initial_branch="main")
            with repo.config_writer() as cfg:
                cfg.set_value("user", "name", "bench")
                cfg.set_value("user", "email", "bench@example.invalid")
            repo.git.add(A=True)
            repo.index.commit("example")
            harness.install_crd(api)
            devsnapshot.load(api, repo_dir / "observed" / "snapshot.yaml")
            settings = YAML(typ="safe").load((repo_dir / "cluster.yaml").read_text())
            for ns in settings["spec"]["managedNamespaces"]:
                identity.ensure_namespace(api, ns)
            account = identity.install_rbac(api)
            kubeconfig = identity.service_account_kubeconfig(api, cp.kubeconfig, *account)
            remote = work / "remote.git"
            git.Repo.init(remote, bare=True, initial_branch="main")
            repo.create_remote("origin", str(remote))
            repo.git.push("origin", "main")
            env = harness.Env(api, cp, kubeconfig, work, remote, repo)
            if args.big and args.node_events:
                _node_events(env, args.node_events, tuple(args.modes.split(",")))
                return
            if args.big:
                _big(env, repo_dir, args.commits)
                return

            # Baseline request rate with no controller.
            r0, t0 = _requests(api), time.monotonic()
            time.sleep(min(60.0, args.idle_seconds))
            base_rate = (_requests(api) - r0) / (time.monotonic() - t0) * 60

            load_start = _load()
            replica = env.start("bench", interval="10m", resync="10m")
            env.ready_at(env.head(), timeout=120)
            webhook_cpu: list[float] = []
            webhook = _commits(env, replica, args.commits, webhook=True, cpu=webhook_cpu)
            replica.stop()
            replica = env.start("bench-poll", interval="1s", resync="10m")
            env.ready_at(env.head(), timeout=120)
            polling = _commits(env, replica, max(5, args.commits // 2), webhook=False)
            print(json.dumps({"webhook": webhook, "polling": polling}), file=sys.stderr)

            node = "h100-99"
            nodes.create_node(
                api,
                node,
                {
                    "accelerator.example.com/vendor": "nvidia",
                    "platform.example.com/tier": "production",
                    "topology.kubernetes.io/zone": "cn-north-1a",
                    "node.kubernetes.io/instance-type": "hgx-h100-8",
                },
            )
            appear = []
            for _ in range(args.node_samples):
                t0 = time.monotonic()
                drivers.publish_node(api, node, drivers.Vendor.NVIDIA, "H100", 8)
                harness.wait_for(
                    "cu slice",
                    lambda: any(
                        o["metadata"]["name"] == f"cu-{node}-0" for o in harness.owned(api)
                    ),
                    60,
                )
                appear.append(time.monotonic() - t0)
                drivers.withdraw_node(api, node, drivers.Vendor.NVIDIA)
                harness.wait_for(
                    "cu slice gone",
                    lambda: (
                        not any(o["metadata"]["name"] == f"cu-{node}-0" for o in harness.owned(api))
                    ),
                    60,
                )
            time.sleep(3)
            node_reconciles = _reconciles(replica)

            # Idle: polling every 1 s (worst case) and resync 10 min.
            cpu0, _ = _proc_stats(replica.proc.pid)
            idle_reconciles = _reconciles(replica)
            r0, t0 = _requests(api), time.monotonic()
            rss_max = 0
            while time.monotonic() - t0 < args.idle_seconds:
                time.sleep(5)
                rss_max = max(rss_max, _proc_stats(replica.proc.pid)[1])
            elapsed = time.monotonic() - t0
            cpu1, _ = _proc_stats(replica.proc.pid)
            idle_rate = (_requests(api) - r0) / elapsed * 60
            idle_reconciles = _reconciles(replica) - idle_reconciles
            rss_end = _proc_stats(replica.proc.pid)[1]
            replica.stop()
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "webhook_p50_s": statistics.median(webhook),
            "webhook_p95_s": _pct(webhook, 0.95),
            "webhook_controller_cpu_p50_s": statistics.median(webhook_cpu),
            "polling_p50_s": statistics.median(polling),
            "polling_p95_s": _pct(polling, 0.95),
            "node_appears_p50_s": statistics.median(appear),
            "node_appears_p95_s": _pct(appear, 0.95),
            "node_appears_s": appear,
            "reconciles_for_node_events": node_reconciles,
            "idle_seconds": elapsed,
            "idle_cpu_percent_of_core": 100 * (cpu1 - cpu0) / elapsed,
            "idle_rss_max_mb": rss_max / 2**20,
            "idle_rss_end_mb": rss_end / 2**20,
            "idle_reconciles": idle_reconciles,
            "load_average_start": load_start,
            "load_average_end": _load(),
            "apiserver_requests_per_min_without": base_rate,
            "apiserver_requests_per_min_with_idle_controller": idle_rate,
            "commits_webhook": len(webhook),
            "commits_polling": len(polling),
        }
        print(json.dumps(result, indent=2))
    finally:
        cp.stop()
        shutil.rmtree(work, ignore_errors=True)


def _big(env: harness.Env, root: Path, commits: int) -> None:
    """Commit→converged on the generated repository, webhook; one claim file per commit."""
    rel = str(sorted((root / "claims").rglob("*.yaml"))[0].relative_to(root))
    load_start = _load()
    t0 = time.monotonic()
    replica = env.start("bench-big", interval="10m", resync="10m")
    env.ready_at(env.head(), timeout=1800)
    first = time.monotonic() - t0
    cpu: list[float] = []
    latencies = _commits(env, replica, commits, webhook=True, rel=rel, cpu=cpu)
    rss = _proc_stats(replica.proc.pid)[1]
    replica.stop()
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "repository": "generate_repo 200 tenants / 50 pools / 5,000 claims",
        "first_convergence_s": first,
        "commits": len(latencies),
        "webhook_p50_s": statistics.median(latencies),
        "webhook_p95_s": _pct(latencies, 0.95),
        "latencies_s": latencies,
        "controller_cpu_per_commit_p50_s": statistics.median(cpu),
        "controller_cpu_per_commit_s": cpu,
        "rss_mb": rss / 2**20,
        "load_average_start": load_start,
        "load_average_end": _load(),
    }
    print(json.dumps(result, indent=2))


def _node_events(env: harness.Env, events: int, wanted: tuple[str, ...]) -> None:
    """Node lost → CU slices gone and node back → published: observing from the watch
    cache with the memo (the default), listing with the memo, listing without it (those of
    them ``wanted`` names)."""
    api = env.admin
    ours: list[str] = []
    result: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "repository": "generate_repo 200 tenants / 50 pools / 5,000 claims",
        "load_average_start": _load(),
    }
    modes: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("watch_cache", ()),
        ("list", ("--no-watch-cache",)),
        ("list_no_memo", ("--no-watch-cache", "--no-memo")),
    )
    for mode, extra in modes:
        if mode not in wanted:
            continue
        replica = env.start(f"bench-{mode}", interval="10m", resync="10m", extra=extra)
        env.ready_at(env.head(), timeout=1800)
        if not ours:
            listed = rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/resourceslices")
            ours = sorted(
                s["spec"]["nodeName"]
                for s in listed["items"]
                if s["metadata"]["name"].startswith("cu-") and s["spec"].get("nodeName")
            )
        lost: list[float] = []
        back: list[float] = []
        cpu: list[float] = []
        for i in range(events):
            node = ours[(i * 7) % len(ours)]
            vendor = [
                s
                for s in rawapi.request(api, "GET", "/apis/resource.k8s.io/v1/resourceslices")[
                    "items"
                ]
                if s["spec"].get("nodeName") == node and not s["metadata"]["name"].startswith("cu-")
            ]
            cu = f"/apis/resource.k8s.io/v1/resourceslices/cu-{node}-0"
            cpu0 = _proc_stats(replica.proc.pid)[0]
            t0 = time.monotonic()
            for s in vendor:
                rawapi.delete(
                    api, f"/apis/resource.k8s.io/v1/resourceslices/{s['metadata']['name']}"
                )
            harness.wait_for(
                "cu slice gone", lambda cu=cu: kube.call(api, "GET", cu).status == 404, 300
            )
            lost.append(time.monotonic() - t0)
            t0 = time.monotonic()
            for s in vendor:
                body = {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceSlice",
                    "metadata": {"name": s["metadata"]["name"]},
                    "spec": s["spec"],
                }
                rawapi.request(api, "POST", "/apis/resource.k8s.io/v1/resourceslices", body=body)
            harness.wait_for("cu slice back", lambda cu=cu: kube.call(api, "GET", cu).ok, 300)
            back.append(time.monotonic() - t0)
            cpu.append(_proc_stats(replica.proc.pid)[0] - cpu0)
        result[mode] = {
            "node_lost_p50_s": statistics.median(lost),
            "node_lost_p99_s": _pct(lost, 0.99),
            "node_back_p50_s": statistics.median(back),
            "node_back_p99_s": _pct(back, 0.99),
            "controller_cpu_per_event_pair_p50_s": statistics.median(cpu),
            "rss_mb": _proc_stats(replica.proc.pid)[1] / 2**20,
            "node_lost_s": lost,
        }
        replica.stop()
    result["load_average_end"] = _load()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

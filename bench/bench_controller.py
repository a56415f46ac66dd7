"""Controller benchmark on the local control plane (issue 10), one run, short by default.

Measures, with ``cuctl run`` as a subprocess and the example repository on a bare remote:
commit→converged latency over N commits with the webhook, then with polling (1 s); vendor
node appears → its CU slice published; an idle controller's CPU and RSS over a period and
the apiserver requests it adds per idle minute (``apiserver_request_total`` delta with the
controller vs the same period without it).

    .venv/bin/python bench/bench_controller.py --commits 20 --idle-seconds 120
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
sys.path.insert(0, str(ROOT / "tests" / "controller"))

import git  # noqa: E402
import harness  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

from reconciler import devcluster  # noqa: E402
from reconciler.devcluster import drivers, identity, nodes, rawapi  # noqa: E402
from reconciler.devcluster import snapshot as devsnapshot  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _bump(i: int) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / "claims" / "search-ranking" / "query-rewrite.yaml"
        text = path.read_text()
        text = re.sub(r"\n# bench \d+\n", "\n", text) + f"\n# bench {i}\n"
        # A comment-only change still is a new revision: the full reconcile runs and the
        # revision annotation moves on every owned object.
        path.write_text(text)

    return edit


def _commits(env: harness.Env, replica: harness.Replica, n: int, webhook: bool) -> list[float]:
    out = []
    for i in range(n):
        sha = env.commit(f"bench {i}", _bump(i + (1000 if webhook else 0)))
        t0 = time.monotonic()
        if webhook:
            env.webhook(replica, {"ref": "refs/heads/main", "after": sha})
        env.ready_at(sha, timeout=120)
        out.append(time.monotonic() - t0)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=600)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    cp = devcluster.start(work / "cluster")
    try:
        with cp.api_client() as api:
            repo_dir = work / "repo"
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

            # Baseline request rate with no controller.
            r0, t0 = _requests(api), time.monotonic()
            time.sleep(min(60.0, args.idle_seconds))
            base_rate = (_requests(api) - r0) / (time.monotonic() - t0) * 60

            replica = env.start("bench", interval="10m", resync="10m")
            env.ready_at(env.head(), timeout=120)
            webhook = _commits(env, replica, args.commits, webhook=True)
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
            for _ in range(5):
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

            # Idle: polling every 1 s (worst case) and resync 10 min.
            cpu0, _ = _proc_stats(replica.proc.pid)
            r0, t0 = _requests(api), time.monotonic()
            rss_max = 0
            while time.monotonic() - t0 < args.idle_seconds:
                time.sleep(5)
                rss_max = max(rss_max, _proc_stats(replica.proc.pid)[1])
            elapsed = time.monotonic() - t0
            cpu1, _ = _proc_stats(replica.proc.pid)
            idle_rate = (_requests(api) - r0) / elapsed * 60
            replica.stop()
        result = {
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "webhook_p50_s": statistics.median(webhook),
            "webhook_p95_s": _pct(webhook, 0.95),
            "polling_p50_s": statistics.median(polling),
            "polling_p95_s": _pct(polling, 0.95),
            "node_appears_p50_s": statistics.median(appear),
            "idle_seconds": elapsed,
            "idle_cpu_percent_of_core": 100 * (cpu1 - cpu0) / elapsed,
            "idle_rss_max_mb": rss_max / 2**20,
            "apiserver_requests_per_min_without": base_rate,
            "apiserver_requests_per_min_with_idle_controller": idle_rate,
            "commits_webhook": len(webhook),
            "commits_polling": len(polling),
        }
        print(json.dumps(result, indent=2))
    finally:
        cp.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Kubelet plugin benchmark: Pod start latency with a CU claim vs without, and plugin RSS.

One local control plane and one real kubelet node (fake CRI runtime, our plugin, the NVIDIA
stand-in plugin, 4× H100 in a Fractional pool). Then:

1. latency: ``--pods`` rounds, each creating (one at a time) a Pod *without* a claim, a Pod
   with a CU claim from a generated ResourceClaimTemplate, a Pod using a generated
   ResourceClaim (reused round after round once released), and a Pod whose tenant-written
   template asks for one plain vendor device (Iluvatar stand-in, in no CU pool, prepared by
   the no-op vendor plugin), timing create → ``Running`` as seen by a client polling every
   20 ms. The template Pods also pay for kube-controller-manager creating their claim; every
   claim Pod pays for DRA scheduling and NodePrepareResources. The vendor Pod is the same
   DRA path without anything of ours: CU over vendor is what the CU driver adds. Medians
   and ratios to the plain Pod are printed.
2. RSS of the plugin process (``/proc/<pid>/status``): VmRSS at idle, then ``--cycles``
   prepare/unprepare cycles (batches of 10 Pods created, Running, deleted, gone), VmHWM
   (peak) over the cycles and VmRSS after.

    .venv/bin/python bench/bench_kubelet.py --pods 10 --cycles 100
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


PLAIN_DRIVER = "gpu.iluvatar.example.com"
"""A vendor driver no CU pool selects in this benchmark: the DRA path without our driver."""


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1000, 2) if values else None


_TOOK = re.compile(r'"prepared".* took="([0-9.]+)(ns|µs|us|ms|s)"')
_UNIT = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def _prepare_seconds(log: Path) -> list[float]:
    """Each NodePrepareResources' time inside a plugin, from its "prepared" log lines."""
    found = _TOOK.findall(log.read_text(errors="replace")) if log.exists() else []
    return [float(v) * _UNIT[u] for v, u in found]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()

    import cu_example as ex
    import kubelet_fleet as kf

    from reconciler import devcluster
    from reconciler.devcluster import kubelets, rawapi, workloads

    run = uuid.uuid4().hex[:6]
    with (
        tempfile.TemporaryDirectory(prefix="cubench-") as tmp,
        devcluster.running(Path(tmp)) as cp,
        cp.api_client() as api,
    ):
        ns = f"bench-{run}"
        kubelets.ensure_namespace(api, ns)
        node = kubelets.start_node(
            cp,
            api,
            f"kl-{run}",
            vendor_drivers=["gpu.nvidia.com", PLAIN_DRIVER],
            labels={"cu-it": run},
        )
        try:
            devcluster.publish_node(api, node.name, "nvidia", "H100", 4)
            # Devices no CU pool selects (the pools take NVIDIA only), so no fence either.
            devcluster.publish_node(api, node.name, "iluvatar", "BI-V100", 4)
            plain_class = devcluster.create_device_class(api, "iluvatar", f"iluvatar-{run}")
            workloads.create(
                api,
                ns,
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceClaimTemplate",
                    "metadata": {"name": "vendor"},
                    "spec": {
                        "spec": {
                            "devices": {
                                "requests": [
                                    {"name": "gpu", "exactly": {"deviceClassName": plain_class}}
                                ]
                            }
                        }
                    },
                },
            )
            claim = ex.claim(
                "share",
                {
                    "tenant": "t",
                    "pool": f"infer-{run}",
                    "cu": 5,
                    "form": "ResourceClaimTemplate",
                    # Ten Pods at once in the cycles below: the namespace's ResourceQuota
                    # (one device per declared replica) admits exactly what is declared.
                    "replicas": 10,
                },
            )
            direct = ex.claim("direct", {"tenant": "t", "pool": f"infer-{run}", "cu": 5})
            desired = kf.desired_state(run, ns, f"{run}-none", run, [claim, direct])
            result = kf.plan(api, desired, run, ns)
            kf.apply_plan(api, result, run, ns)

            def pod(name: str, with_claim: bool | str) -> dict[str, Any]:
                body: dict[str, Any] = kf.pod(name, None)
                if with_claim == "direct":
                    body = kf.pod(name, "direct")
                elif with_claim:
                    template = "vendor" if with_claim == "vendor" else "share"
                    body["spec"]["resourceClaims"] = [
                        {"name": "cu", "resourceClaimTemplateName": template}
                    ]
                    body["spec"]["containers"][0]["resources"] = {"claims": [{"name": "cu"}]}
                return body

            def all_running(names: list[str]) -> bool:
                return all(kf.phase(api, ns, n) == "Running" for n in names)

            def released() -> bool:
                status = workloads.get(api, ns, "ResourceClaim", "direct").get("status", {})
                return not status.get("reservedFor")

            bound_at: dict[str, list[float]] = {
                "plain": [],
                "claim": [],
                "direct": [],
                "vendor": [],
            }

            def start(name: str, with_claim: bool | str) -> float:
                """create → Running; also records create → bound (the scheduler's part)."""
                t0 = time.perf_counter()
                workloads.create(api, ns, pod(name, with_claim))
                bound = None
                while time.perf_counter() - t0 < 120:
                    body = workloads.get(api, ns, "Pod", name)
                    if bound is None and body["spec"].get("nodeName"):
                        bound = time.perf_counter() - t0
                    if body.get("status", {}).get("phase") == "Running":
                        kind = (
                            with_claim
                            if isinstance(with_claim, str)
                            else "claim"
                            if with_claim
                            else "plain"
                        )
                        bound_at[kind].append(bound if bound is not None else 0.0)
                        return time.perf_counter() - t0
                    time.sleep(0.02)
                raise workloads.WaitTimeout(f"{name} not Running after 120 s")

            def stop(names: list[str]) -> None:
                for n in names:
                    kf.delete_pod(api, ns, n)
                for n in names:
                    kf.wait_gone(api, ns, n)

            # Warm-up: one of each (first image "pull", first plugin connection).
            start("warm-plain", False)
            start("warm-claim", True)
            start("warm-vendor", "vendor")
            for values in bound_at.values():
                values.clear()
            stop(["warm-plain", "warm-claim", "warm-vendor"])

            def vendor_unprepared() -> None:
                """The kubelet unprepares after the Pod object is gone; until then the
                scheduler may hand the same (whole) vendor device to the next claim, and the
                plugin refuses a device still prepared for another claim (the kubelet
                retries with backoff: seconds, and not the path this measures)."""
                workloads.wait_for(
                    lambda: not node.checkpoint(PLAIN_DRIVER).get("claims"),
                    timeout=60,
                    what="vendor claim unprepared",
                )

            vendor_unprepared()
            plain, claimed, direct_s, vendor_s = [], [], [], []
            for i in range(args.pods):
                plain.append(start(f"plain-{i}", False))
                claimed.append(start(f"claim-{i}", True))
                direct_s.append(start(f"direct-{i}", "direct"))
                vendor_s.append(start(f"vendor-{i}", "vendor"))
                stop([f"plain-{i}", f"claim-{i}", f"direct-{i}", f"vendor-{i}"])
                workloads.wait_for(released, timeout=60, what="claim direct released")
                vendor_unprepared()
            inside = {
                driver: _prepare_seconds(node.log_dir / f"{node.name}-plugin-{driver}.log")
                for driver in (kubelets.CU_DRIVER, PLAIN_DRIVER)
            }
            pid = node.processes[f"plugin:{kubelets.CU_DRIVER}"].pid
            time.sleep(2)
            idle = _status_kib(pid, "VmRSS")
            done = 0
            t0 = time.perf_counter()
            while done < args.cycles:
                batch = [f"cyc-{done + j}" for j in range(min(10, args.cycles - done))]
                for n in batch:
                    workloads.create(api, ns, pod(n, True))
                try:
                    workloads.wait_for(functools.partial(all_running, batch), timeout=180)
                except workloads.WaitTimeout:
                    for n in batch:  # say why, not only that it timed out
                        body = workloads.get(api, ns, "Pod", n)
                        print(n, json.dumps(body.get("status", {}))[:600], file=sys.stderr)
                    events = rawapi.request(api, "GET", f"/api/v1/namespaces/{ns}/events")
                    for e in events["items"]:
                        if e["involvedObject"]["name"] in batch:
                            print(
                                e["involvedObject"]["name"],
                                e["reason"],
                                e["message"],
                                file=sys.stderr,
                            )
                    q = rawapi.request(api, "GET", f"/api/v1/namespaces/{ns}/resourcequotas")
                    print(json.dumps(q["items"])[:3000], file=sys.stderr)
                    raise
                stop(batch)
                done += len(batch)
            cycles_s = time.perf_counter() - t0
            # The kubelet unprepares after the Pod object is gone, not before.
            workloads.wait_for(
                lambda: not node.checkpoint()["claims"],
                timeout=60,
                what="every cycle unprepared",
            )
            out = {
                "pods": args.pods,
                "plain_median_s": round(statistics.median(plain), 3),
                "claim_median_s": round(statistics.median(claimed), 3),
                "ratio": round(statistics.median(claimed) / statistics.median(plain), 2),
                "direct_median_s": round(statistics.median(direct_s), 3),
                "direct_ratio": round(statistics.median(direct_s) / statistics.median(plain), 2),
                "vendor_median_s": round(statistics.median(vendor_s), 3),
                "vendor_ratio": round(statistics.median(vendor_s) / statistics.median(plain), 2),
                # Template Pod with a CU claim over the same Pod with a plain vendor claim:
                # what the CU driver (its allocation and its plugin) adds to the DRA path.
                "cu_over_vendor": round(
                    statistics.median(claimed) / statistics.median(vendor_s), 2
                ),
                # Time inside each plugin's PrepareResourceClaims (checkpoint, slice lookup,
                # CDI spec), median over the latency rounds' prepares, in milliseconds.
                # (A Fractional pool: no vendor device is co-allocated, so only ours runs.)
                "cu_plugin_prepare_median_ms": _ms(inside[kubelets.CU_DRIVER]),
                "vendor_plugin_prepare_median_ms": _ms(inside[PLAIN_DRIVER]),
                "prepares_timed": len(inside[kubelets.CU_DRIVER]),
                # create → bound (scheduling, DRA allocation, the claim's status write;
                # for the template Pod also kube-controller-manager creating the claim).
                "bound_median_s": {k: round(statistics.median(v), 3) for k, v in bound_at.items()},
                "plain_all_s": [round(x, 3) for x in plain],
                "claim_all_s": [round(x, 3) for x in claimed],
                "vendor_all_s": [round(x, 3) for x in vendor_s],
                "cycles": done,
                "cycles_s": round(cycles_s, 1),
                "plugin_rss_idle_mib": round(idle / 1024, 1),
                "plugin_rss_peak_mib": round(_status_kib(pid, "VmHWM") / 1024, 1),
                "plugin_rss_after_mib": round(_status_kib(pid, "VmRSS") / 1024, 1),
            }
            print(json.dumps(out))
        finally:
            node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

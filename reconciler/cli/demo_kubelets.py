"""The demo's kubelet step: generated claims run Pods on real kubelet nodes.

Self-contained so the demo's other steps need not know about kubelets: start two kubelet
nodes (fake CRI runtime, our CU plugin, the NVIDIA stand-in plugin) in the example's
``batch`` (Whole) and ``production`` (Fractional) tiers, converge so their CU is published,
run one Pod per tier from a generated ResourceClaimTemplate, and show each Pod Running with
the CU facts its container was given (as the runtime recorded the create request). The
nodes are stopped before the step returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import typer

from reconciler.devcluster import controlplane, drivers, kubelets, rawapi, workloads
from reconciler.model import ownership

NVIDIA = drivers.vendor_driver(drivers.Vendor.NVIDIA).driver
TIERS = (  # node, tier label, model, devices, pool
    ("kubelet-batch-0", "batch", "A100", 8, "batch"),
    ("kubelet-prod-0", "production", "H100", 4, "inference-prod"),
)
SHOWN = (
    "CU_POOL",
    "CU_MODE",
    "CU_TOTAL",
    "CU_0_AMOUNT",
    "CU_0_VENDOR_DEVICE",
    "CU_0_SHARE_PERCENT",
)


def _template(api: Any, pool: str) -> tuple[str, str] | None:
    body = rawapi.request(
        api,
        "GET",
        "/apis/resource.k8s.io/v1/resourceclaimtemplates",
        query={"labelSelector": f"{ownership.POOL_LABEL}={pool}"},
    )
    items = sorted(body.get("items", []), key=lambda t: t["metadata"]["name"])
    if not items:
        return None
    return items[0]["metadata"]["namespace"], items[0]["metadata"]["name"]


def run(
    cp: controlplane.ControlPlane,
    api: Any,
    repo_root: Path,
    kubeconfig: str,
    cuctl: Callable[..., str],
) -> None:
    started: list[kubelets.KubeletNode] = []
    try:
        for name, tier, model, count, _ in TIERS:
            node = kubelets.start_node(
                cp,
                api,
                name,
                vendor_drivers=[NVIDIA],
                labels={"platform.example.com/tier": tier, "cu-reconciler.io/vendor": "nvidia"},
            )
            started.append(node)
            drivers.publish_node(api, name, drivers.Vendor.NVIDIA, model, count)
            typer.echo(f"kubelet node {name} Ready ({count}x {model}, tier {tier})", err=True)
        cuctl(["apply", ".", "--rev", "HEAD", "--kubeconfig", kubeconfig], cwd=repo_root, limit=8)
        pods: list[tuple[kubelets.KubeletNode, str, str]] = []
        for node, (_, _, _, _, pool) in zip(started, TIERS, strict=True):
            found = _template(api, pool)
            if found is None:
                typer.echo(f"no generated template in pool {pool}", err=True)
                continue
            ns, template = found
            pod: dict[str, Any] = workloads.pod(
                f"{template}-on-kubelet", templates={"cu": template}
            )
            pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node.name}
            pod["spec"]["automountServiceAccountToken"] = False
            workloads.create(api, ns, pod)
            pods.append((node, ns, pod["metadata"]["name"]))
        for node, ns, name in pods:
            _show_running(api, node, ns, name)
        for _, ns, name in pods:
            rawapi.delete(api, f"/api/v1/namespaces/{ns}/pods/{name}")
    finally:
        for node in started:
            node.stop()


def _show_running(api: Any, node: kubelets.KubeletNode, ns: str, name: str) -> None:
    def running() -> dict[str, Any] | None:
        obj = workloads.get(api, ns, "Pod", name)
        return obj if obj.get("status", {}).get("phase") == "Running" else None

    try:
        workloads.wait_for(running, timeout=120, what=f"Pod {ns}/{name} Running")
    except workloads.WaitTimeout:
        typer.echo(f"Pod {ns}/{name} did not start; see {node.log_dir}", err=True)
        return
    typer.echo(f"Pod {ns}/{name} Running on {node.name}", err=True)
    records = [r for r in node.containers() if r["pod"] == name]
    env = records[-1]["cdiEnv"] if records else {}
    shown: Sequence[str] = [f"{k}={env[k]}" for k in SHOWN if k in env]
    typer.echo("  container env from the CU plugin: " + " ".join(shown), err=True)

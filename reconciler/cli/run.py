"""``cuctl run``: the controller, unattended (in a Pod, or anywhere with a kubeconfig).

``cuctl run --repo URL [--branch main] [--path .] [--interval 60s] [--resync 10m]
[--webhook-port N] [--metrics-port N] [--name default] [--kubeconfig FILE] [--context NAME]``
keeps a clone of the repository, elects a leader on the Lease ``cu-system/cu-reconciler``
and reconciles on new commits, push webhooks, watch events and a periodic resync until
SIGTERM/SIGINT (then it finishes the reconcile in flight, releases the Lease and exits 0).
The webhook secret comes from ``CU_WEBHOOK_SECRET`` (an env var from a Secret), never a flag.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

import typer

from reconciler import errors
from reconciler.cli import _app

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``90``, ``60s``, ``10m``, ``1h``, ``500ms`` → seconds (Go-like, one unit)."""
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r}: expected a positive duration like 60s, 10m or 1h")
    return float(m.group(1)) * _UNIT[m.group(2)]


@_app.app.command("run")
def run_command(
    repo: str = typer.Option(..., "--repo", help="Git URL (or path) of the desired state."),
    branch: str = typer.Option("main", "--branch", help="Branch to follow."),
    path: str = typer.Option(".", "--path", help="Directory of the desired state in the repo."),
    interval: str = typer.Option("60s", "--interval", help="Git polling period."),
    resync: str = typer.Option("10m", "--resync", help="Full reconcile period with no news."),
    webhook_port: int | None = typer.Option(
        None, "--webhook-port", help="Serve push webhooks here (secret: CU_WEBHOOK_SECRET)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve /metrics, /healthz and /readyz here."
    ),
    name: str = typer.Option("default", "--name", help="The CUSync status resource."),
    fleet_cluster: str | None = typer.Option(
        None,
        "--cluster",
        help="Fleet repository: this cluster's overlay (default: the CUSync's spec.cluster); "
        "also the `cluster` label of every metric.",
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Default: KUBECONFIG, in-cluster ServiceAccount, ~/.kube/config."
    ),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    cache: Path = typer.Option(
        Path(os.environ.get("CU_CACHE_DIR", "/tmp/cu-reconciler")),
        "--cache-dir",
        help="Where the clone is kept.",
    ),
    identity: str | None = typer.Option(
        None, "--identity", help="Leader-election identity (default: POD_NAME or host/pid)."
    ),
) -> None:
    """Run the controller until SIGTERM: exit 0 on a clean stop, 2 when it cannot start."""
    from reconciler.controller import logs, loop, metrics, webhook
    from reconciler.observe import cluster

    logs.configure()
    try:
        api = cluster.connect(str(kubeconfig) if kubeconfig else None, context)
    except errors.ObserveError as exc:
        typer.echo(f"cuctl run: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    who = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}/{os.getpid()}"
    cfg = loop.Config(
        repo=repo,
        branch=branch,
        path=path,
        interval=parse_duration(interval),
        resync=parse_duration(resync),
        name=name,
        cache=cache,
        identity=who,
        cluster=fleet_cluster,
    )
    controller = loop.Controller(api, cfg, metrics=metrics.Metrics(cluster=fleet_cluster))
    servers = []
    if metrics_port is not None:
        servers.append(
            metrics.serve(
                controller.metrics,
                metrics_port,
                ready=lambda: controller.ready,
                healthy=lambda: not controller.stop.is_set(),
            )
        )
    if webhook_port is not None:
        secret = os.environ.get("CU_WEBHOOK_SECRET", "").encode()
        if not secret:
            typer.echo("cuctl run: --webhook-port needs CU_WEBHOOK_SECRET", err=True)
            raise typer.Exit(_app.EXIT_ERROR)
        servers.append(
            webhook.serve(webhook_port, secret, branch, lambda: controller.request("webhook"))
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        controller.stop.set()
        controller.request("stop")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = threading.Thread(target=controller.run, name="loop")
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.5)
    controller.elector.lease.release()
    for server in servers:
        server.shutdown()
    api.close()  # type: ignore[no-untyped-call]
    raise typer.Exit(_app.EXIT_OK)

"""``cuctl run``: the controller, unattended (in a Pod, or anywhere with a kubeconfig).

``cuctl run --repo URL [--branch main] [--path .] [--interval 60s] [--resync 10m]
[--webhook-port N] [--bind-address ADDR] [--metrics-port N] [--metrics-bind-address ADDR]
[--tls-cert FILE --tls-key FILE] [--name default] [--kubeconfig FILE] [--context NAME]``
keeps a clone of the repository, elects a leader on the Lease ``cu-system/cu-reconciler``
and reconciles on new commits, push webhooks, watch events and a periodic resync until
SIGTERM/SIGINT: then it gives the reconcile in flight :data:`STOP_GRACE` seconds, releases
the Lease (bounded too) and exits 0, whatever state it is in.
``--repo``, ``--branch``, ``--path`` and ``--interval`` only seed the CUSync when it does not
exist: its spec is what the controller follows. The webhook secret comes from
``CU_WEBHOOK_SECRET`` (an env var from a Secret), never a flag.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import typer

from reconciler import errors
from reconciler.cli import _app
from reconciler.source import tree as source_tree

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
STOP_GRACE = 5.0
"""Seconds the reconcile in flight may take after SIGTERM; the Lease release gets 3 more."""


def parse_duration(text: str) -> float:
    """``90``, ``60s``, ``10m``, ``1h``, ``500ms`` → seconds (Go-like, one unit)."""
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r}: expected a positive duration like 60s, 10m or 1h")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _bounded(fn: Callable[[], object], seconds: float, name: str) -> None:
    """Run ``fn`` on a daemon thread and wait at most ``seconds`` for it."""
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    thread.join(seconds)


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
    bind_address: str = typer.Option(
        "0.0.0.0", "--bind-address", help="Address the webhook listens on (forges reach it)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve /metrics, /healthz and /readyz here."
    ),
    metrics_bind_address: str = typer.Option(
        "127.0.0.1",
        "--metrics-bind-address",
        help="Address of /metrics and the probes (in a Pod: 0.0.0.0, for Prometheus and probes).",
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="Serve both ports over TLS with this certificate (PEM)."
    ),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="The certificate's key (PEM)."),
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
    memo: bool = typer.Option(
        True,
        "--memo/--no-memo",
        help="Reuse the last reconcile's unchanged work (--no-memo: plan every event in full).",
    ),
    watch_cache: bool = typer.Option(
        True,
        "--watch-cache/--no-watch-cache",
        help="Observe from the watches' stores (--no-watch-cache: list everything each time).",
    ),
) -> None:
    """Run the controller until SIGTERM: exit 0 on a clean stop, 2 when it cannot start."""
    from reconciler.controller import httpserver, logs, loop, metrics, webhook
    from reconciler.observe import cluster

    logs.configure()
    if (tls_cert is None) != (tls_key is None):
        typer.echo("cuctl run: --tls-cert and --tls-key go together", err=True)
        raise typer.Exit(_app.EXIT_ERROR)
    tls = httpserver.TLS(str(tls_cert), str(tls_key)) if tls_cert and tls_key else None
    try:
        source_tree.subpath(path)
    except ValueError as exc:
        typer.echo(f"cuctl run: --path {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
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
        memo=memo,
        watch_cache=watch_cache,
    )
    controller = loop.Controller(api, cfg, metrics=metrics.Metrics(cluster=fleet_cluster))
    secret = os.environ.get("CU_WEBHOOK_SECRET", "").encode()
    if webhook_port is not None and not secret:
        typer.echo("cuctl run: --webhook-port needs CU_WEBHOOK_SECRET", err=True)
        raise typer.Exit(_app.EXIT_ERROR)
    servers = []
    try:
        if metrics_port is not None:
            servers.append(
                metrics.serve(
                    controller.metrics,
                    metrics_port,
                    ready=lambda: controller.ready,
                    healthy=lambda: not controller.stop.is_set(),
                    host=metrics_bind_address,
                    tls=tls,
                )
            )
        if webhook_port is not None:
            servers.append(
                webhook.serve(
                    webhook_port,
                    secret,
                    branch,
                    lambda: controller.request("webhook"),
                    host=bind_address,
                    tls=tls,
                )
            )
    except (OSError, ValueError) as exc:  # port in use, bad address, unreadable certificate
        typer.echo(f"cuctl run: cannot serve: {exc}", err=True)
        for server in servers:
            server.shutdown()
        raise typer.Exit(_app.EXIT_ERROR) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        controller.stop.set()
        controller.request("stop")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = threading.Thread(target=controller.run, name="loop", daemon=True)
    worker.start()
    while not controller.stop.wait(0.5):
        if not worker.is_alive():  # the loop died: exit non-zero so the kubelet restarts us
            break
    worker.join(STOP_GRACE)  # the reconcile in flight; after that, writes stop with the Lease
    _bounded(controller.elector.lease.release, 3.0, "release")
    for server in servers:
        server.shutdown(1.0)
    _bounded(api.close, 1.0, "close")
    code = _app.EXIT_OK if controller.stop.is_set() else _app.EXIT_ERROR
    if worker.is_alive():
        # Still in a git or API call past the grace: the interpreter would wait for it (a
        # git call's watchdog is a non-daemon thread, up to 120 s). Flush and leave now.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)

"""``cuctl export``: engine mode's metrics endpoint (docs/gitops.md "Engine status").

``cuctl export [--namespace cu-system] [--interval 15s] [--metrics-port 8080]
[--metrics-bind-address ADDR] [--cluster NAME] [--kubeconfig FILE] [--context NAME]`` reads
the ``CUEngineStatus`` an engine applied with ``cuctl render --status`` and serves it on
``/metrics`` under the controller's metric names (plus ``/healthz``, ``/readyz``) until
SIGTERM. It only reads: its RBAC is one ``get`` on one object (deploy/engine).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from reconciler import errors
from reconciler.cli import _app
from reconciler.cli.run import parse_duration


@_app.app.command("export")
def export_command(
    namespace: str = typer.Option(
        "cu-system", "--namespace", help="The reconciler namespace, where the status object is."
    ),
    interval: str = typer.Option("15s", "--interval", help="How often to read the object."),
    metrics_port: int = typer.Option(8080, "--metrics-port", help="Serve /metrics here."),
    metrics_bind_address: str = typer.Option(
        "127.0.0.1",
        "--metrics-bind-address",
        help="Address of /metrics and the probes (in a Pod: 0.0.0.0).",
    ),
    fleet_cluster: str | None = typer.Option(
        None, "--cluster", help="The `cluster` label of every metric (as cuctl run --cluster)."
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Default: KUBECONFIG, in-cluster ServiceAccount, ~/.kube/config."
    ),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
) -> None:
    """Serve the engine status as the controller's metrics until SIGTERM: exit 0 on a clean
    stop, 2 when it cannot start."""
    from reconciler.controller import engine_status, logs, metrics
    from reconciler.observe import cluster

    logs.configure()
    period = parse_duration(interval)
    try:
        api = cluster.connect(str(kubeconfig) if kubeconfig else None, context)
    except errors.ObserveError as exc:
        typer.echo(f"cuctl export: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    reader = engine_status.Reader(
        api, metrics.Metrics(cluster=fleet_cluster), engine_status.path(namespace), period
    )
    worker = threading.Thread(target=reader.run, name="export", daemon=True)
    try:
        server = metrics.serve(
            reader.metrics,
            metrics_port,
            ready=lambda: reader.ready,
            healthy=worker.is_alive,
            host=metrics_bind_address,
        )
    except (OSError, ValueError) as exc:
        typer.echo(f"cuctl export: cannot serve: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc

    def stop(signum: int, frame: FrameType | None) -> None:
        reader.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.start()
    while not reader.stop.wait(0.5):
        pass
    server.shutdown(1.0)
    worker.join(2.0)
    api.close()  # type: ignore[no-untyped-call]
    raise typer.Exit(_app.EXIT_OK)

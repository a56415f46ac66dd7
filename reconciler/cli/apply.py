"""``cuctl apply``: one reconcile against a cluster, from the command line.

``cuctl apply [PATH] [--rev REV] --kubeconfig FILE [--context NAME] [--dry-run] [--no-prune]``
runs the controller's pipeline once (fetch, validate, observe, plan, diff, apply) and prints
what happened to each object. Exit 0 when the cluster converged (or is already in sync),
2 when any step failed; a failed step writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import typer

from reconciler import errors
from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.cli import _app
from reconciler.controller import pipeline
from reconciler.observe import cluster


@_app.app.command("apply")
def apply_command(
    path: str = typer.Argument(".", help="Repository directory."),
    rev: str | None = typer.Option(None, "--rev", help="Apply this Git revision."),
    kubeconfig: Path = typer.Option(..., "--kubeconfig", help="The cluster to converge."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Server-side dry run of every write; store nothing."
    ),
    prune: bool = typer.Option(
        True, "--prune/--no-prune", help="Delete owned objects the target no longer holds."
    ),
) -> None:
    """Converge the cluster on the desired state: exit 0 converged, 2 failed (nothing written)."""
    try:
        api = cluster.connect(str(kubeconfig), context)
    except errors.ObserveError as exc:
        typer.echo(f"cuctl apply: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    with api:
        outcome = pipeline.reconcile(
            pipeline.Request(path, rev),
            cluster.Cluster(api),
            writers.KubeWriter(api),
            applying.ApplyOptions(dry_run=dry_run, prune=prune),
        )
    for diagnostic in outcome.diagnostics:
        typer.echo(diagnostic.render(), err=True)
    if outcome.applied is not None:
        for entry in outcome.applied.entries:
            if entry.outcome is not applying.Outcome.UNCHANGED:
                typer.echo(f"{entry.subject} {entry.outcome}")
    revision = outcome.revision[:12] or "?"
    typer.echo(f"cuctl apply: {outcome.reason} at {revision}: {outcome.message}", err=True)
    raise typer.Exit(_app.EXIT_OK if outcome.ok else _app.EXIT_ERROR)

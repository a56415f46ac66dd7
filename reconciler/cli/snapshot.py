"""``cuctl snapshot``: write the committed snapshot of observed devices from a live cluster.

``cuctl snapshot [PATH] --kubeconfig FILE [--context NAME] [--write [--branch NAME]]
[--cluster NAME]`` reads
Nodes, ResourceSlices, ResourceClaims and the objects cu-reconciler owns, and prints the
snapshot (deterministic: the same cluster state gives the same bytes). ``--write`` writes it
to the repository's ``ClusterSettings.spec.layout.snapshot`` path in the working tree;
``--write --branch NAME`` commits it to branch NAME with Git plumbing instead, never touching
the checkout (for a bot that opens a pull request). Exit 0 = unchanged, 1 = changed (written),
2 = error; without ``--write`` always 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from reconciler import errors, source, validate
from reconciler.cli import _app
from reconciler.observe import cluster as live_cluster
from reconciler.observe import record
from reconciler.source import branch as branches


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cuctl snapshot: {message}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _snapshot_path(path: str, rev: str | None, cluster: str | None) -> str:
    """The repository-relative snapshot path from the (validated) ClusterSettings."""
    try:
        tree = source.fleet.select(source.read(path, rev), cluster)
    except errors.SourceError as exc:
        raise _fail(str(exc)) from exc
    result = validate.validate_tree(tree)
    if result.state is None:
        for d in result.errors:
            typer.echo(d.render(), err=True)
        raise _fail(f"{path}: the desired state is invalid; fix it before writing a snapshot")
    snap = result.state.settings.spec.layout.snapshot
    if not snap:
        raise _fail("ClusterSettings.spec.layout.snapshot is null: nowhere to write a snapshot")
    return snap


def _branch_or_head(path: str, branch: str) -> str:
    try:
        source.read(path, branch)
    except errors.SourceError:
        return "HEAD"
    return branch


@_app.app.command("snapshot")
def snapshot_command(
    path: str = typer.Argument(".", help="Repository directory."),
    kubeconfig: Path = typer.Option(..., "--kubeconfig", help="The live cluster to read."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    write: bool = typer.Option(False, "--write", help="Write the repository's snapshot file."),
    branch: str | None = typer.Option(
        None, "--branch", help="With --write: commit to this branch (no checkout is touched)."
    ),
    cluster: str | None = typer.Option(
        None, "--cluster", help="Fleet repository: write this cluster's snapshot."
    ),
    message: str = typer.Option(
        "Refresh the observed snapshot", "--message", "-m", help="Commit message (--branch)."
    ),
) -> None:
    """Print (or write) the snapshot of observed devices, deterministically."""
    if branch is not None and not write:
        raise _fail("--branch needs --write")
    try:
        api = live_cluster.connect(str(kubeconfig), context)
        raw = live_cluster.Cluster(api).read()
    except errors.ObserveError as exc:
        raise _fail(str(exc)) from exc
    text = record.text(raw)
    if not write:
        sys.stdout.write(text)
        raise typer.Exit(_app.EXIT_OK)
    if branch is not None:
        rel = _snapshot_path(path, _branch_or_head(path, branch), cluster)
        try:
            done = branches.commit_file(path, branch, rel, text.encode("utf-8"), message)
        except errors.SourceError as exc:
            raise _fail(str(exc)) from exc
        state = "committed" if done.changed else "unchanged on"
        typer.echo(f"cuctl snapshot: {rel} {state} {branch} at {done.revision[:12]}", err=True)
        raise typer.Exit(_app.EXIT_FINDINGS if done.changed else _app.EXIT_OK)
    rel = _snapshot_path(path, None, cluster)
    target = Path(path) / rel
    old = target.read_text(encoding="utf-8") if target.exists() else None
    if old == text:
        typer.echo(f"cuctl snapshot: {rel} unchanged", err=True)
        raise typer.Exit(_app.EXIT_OK)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    typer.echo(f"cuctl snapshot: wrote {rel}", err=True)
    raise typer.Exit(_app.EXIT_FINDINGS)

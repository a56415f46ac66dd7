"""``cuctl plan`` and ``cuctl render``: the diff preview and the rendered target.

``cuctl plan [PATH] [--rev REV] [--base REV] (--observed FILE | --kubeconfig FILE
[--context NAME]) [-o text|markdown|json]`` prints what would change; exit 0 in sync, 1 with
changes, 2 on error (like ``kubectl diff``). With ``--base`` it compares what two revisions
would produce against the same observed devices, offline (a pull request's effect); the
observed devices then default to the repository's committed snapshot.

``cuctl render`` prints the target objects as a YAML stream on stdout (an Argo CD config
management plugin's ``generate``); logs go to stderr. A plan refused by the safety rule
renders nothing and exits 2, so a plugin never hands a mass deletion to the GitOps engine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from reconciler import errors, observe, source, validate
from reconciler import plan as planning
from reconciler.cli import _app
from reconciler.diff import changeset, render, yamltext
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.observe import cluster, snapshot, sources


class Output(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Loaded:
    state: st.DesiredState
    tree_root: str
    snapshot_bytes: bytes | None


def _fail(command: str, message: str) -> typer.Exit:
    typer.echo(f"cuctl {command}: {message}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _load(command: str, path: str, rev: str | None, flag: str) -> Loaded:
    """Read and validate one revision; any problem is exit 2 with located diagnostics."""
    try:
        tree = source.read(path, rev)
    except errors.SourceError as exc:
        raise _fail(command, f"{flag}: {exc}") from exc
    result = validate.validate_tree(tree)
    for d in result.errors:
        typer.echo(d.render(), err=True)
    if result.state is None:
        where = f"{path}" + (f" at {rev}" if rev else "")
        raise _fail(command, f"{where}: the desired state is invalid ({len(result.errors)} errors)")
    layout = result.state.settings.spec.layout
    snap = tree.files.get(layout.snapshot) if layout.snapshot else None
    return Loaded(result.state, tree.root, snap)


def _source(
    command: str,
    loaded: Loaded,
    observed: Path | None,
    kubeconfig: Path | None,
    context: str | None,
    *,
    allow_repository_snapshot: bool,
) -> sources.Source:
    if observed is not None and kubeconfig is not None:
        raise _fail(command, "give either --observed FILE or --kubeconfig FILE, not both")
    if observed is not None:
        return snapshot.Snapshot(observed)
    if kubeconfig is not None:
        try:
            return cluster.Cluster(cluster.connect(str(kubeconfig), context))
        except errors.ObserveError as exc:
            raise _fail(command, str(exc)) from exc
    if allow_repository_snapshot and loaded.snapshot_bytes is not None:
        layout = loaded.state.settings.spec.layout
        typer.echo(f"cuctl {command}: observed devices from {layout.snapshot}", err=True)
        try:
            text = loaded.snapshot_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(command, f"{layout.snapshot}: not UTF-8 text") from exc
        try:
            return sources.InMemory(snapshot.parse(text, str(layout.snapshot)))
        except errors.ObserveError as exc:
            raise _fail(command, str(exc)) from exc
    raise _fail(command, "needs the observed devices: --observed FILE or --kubeconfig FILE")


def _plan(
    command: str,
    desired: st.DesiredState,
    src: sources.Source,
    live: Iterable[Mapping[str, Any]] | None = None,
) -> tuple[planning.Plan, obs.ObservedState]:
    try:
        observed = observe.observe(src, desired)
        result = planning.plan(desired, observed, live)
    except errors.CUError as exc:
        raise _fail(command, str(exc)) from exc
    except ValueError as exc:
        raise _fail(command, f"cannot plan revision {desired.revision[:12]}: {exc}") from exc
    return result, observed


def _color(force: bool | None) -> bool:
    if force is not None:
        return force
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


@_app.app.command("plan")
def plan_command(
    path: str = typer.Argument(".", help="Repository directory."),
    rev: str | None = typer.Option(
        None, "--rev", help="Plan this Git revision (default: files on disk)."
    ),
    base: str | None = typer.Option(
        None, "--base", help="Compare with what this revision would produce (offline PR diff)."
    ),
    observed: Path | None = typer.Option(
        None,
        "--observed",
        help="Snapshot file of Nodes, ResourceSlices, ResourceClaims (kind: List).",
    ),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Read the live cluster."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    output: Output = typer.Option(Output.TEXT, "-o", "--output", help="text, markdown or json."),
    color: bool | None = typer.Option(
        None, "--color/--no-color", help="Colour the text diff (default: only on a terminal)."
    ),
) -> None:
    """Preview what the reconciler would change: exit 0 in sync, 1 changes, 2 error."""
    loaded = _load("plan", path, rev, "--rev" if rev else "PATH")
    src = _source(
        "plan", loaded, observed, kubeconfig, context, allow_repository_snapshot=base is not None
    )
    if base is not None:
        base_loaded = _load("plan", path, base, "--base")
        base_plan, _ = _plan("plan", base_loaded.state, src)
        result, _ = _plan("plan", loaded.state, src, base_plan.objects)
        changes = changeset.compute(result.objects, base_plan.objects)
        preview = render.Preview(changes, result.report, result.refusal, base_plan.revision)
    else:
        result, _ = _plan("plan", loaded.state, src)
        changes = changeset.compute(result.objects, result.live)
        preview = render.Preview(changes, result.report, result.refusal)
    if output is Output.JSON:
        sys.stdout.write(render.json_text(preview))
    elif output is Output.MARKDOWN:
        sys.stdout.write(render.markdown(preview))
    else:
        sys.stdout.write(render.text(preview, color=_color(color)))
    if result.refusal:
        typer.echo(f"cuctl plan: {result.refusal}", err=True)
    for warning in result.warnings:
        typer.echo(f"cuctl plan: warning: {warning}", err=True)
    bypass = any(f.code is obs.FindingCode.FENCE_BYPASS for f in result.report.findings)
    raise typer.Exit(_app.EXIT_OK if changes.in_sync and not bypass else _app.EXIT_FINDINGS)


@_app.app.command("render")
def render_command(
    path: str = typer.Argument(".", help="Repository directory."),
    rev: str | None = typer.Option(None, "--rev", help="Render this Git revision."),
    observed: Path | None = typer.Option(
        None, "--observed", help="Snapshot file (default: the repository's committed snapshot)."
    ),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Read the live cluster."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
) -> None:
    """Print the target objects as a YAML stream (stdout); logs on stderr."""
    loaded = _load("render", path, rev, "--rev" if rev else "PATH")
    src = _source("render", loaded, observed, kubeconfig, context, allow_repository_snapshot=True)
    result, _ = _plan("render", loaded.state, src)
    if result.refusal:
        raise _fail("render", result.refusal)
    sys.stdout.write(yamltext.dump_all(result.objects))
    for warning in result.warnings:
        typer.echo(f"cuctl render: warning: {warning}", err=True)
    admitted = sum(1 for d in result.report.decisions if d.status == "Admitted")
    typer.echo(
        f"cuctl render: {len(result.objects)} objects at {result.revision[:12]}; "
        f"{admitted} of {len(result.report.decisions)} claims admitted",
        err=True,
    )

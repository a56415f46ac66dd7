"""``cuctl validate``: check a desired-state repository, as a pre-commit hook or a PR check.

Exit codes (like ``kubectl diff``): 0 valid (warnings allowed), 1 invalid, 2 cannot run (not a
directory or repository, unknown revision). Findings go to stdout, one per line as
``file:line:col: CODE: message`` (``-o json``: a JSON list); the summary goes to stderr so
scripts can parse stdout alone.

Also ``cuctl schemas`` (hidden): writes or checks the JSON Schemas generated from the model.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

import typer

from reconciler import _gc, errors, source, validate
from reconciler.cli import _app
from reconciler.model import diagnostics as diag
from reconciler.model import schemas
from reconciler.source import tree as source_tree


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


@_app.app.command("validate")
@_gc.one_shot
def validate_command(
    path: str = typer.Argument(".", help="Repository directory (or a subdirectory of one)."),
    rev: str | None = typer.Option(
        None,
        "--rev",
        help="Validate this Git revision (SHA, branch, tag) instead of the files "
        "on disk; read from the object database, nothing is checked out.",
    ),
    output: Output = typer.Option(Output.TEXT, "-o", "--output", help="text or json."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
    cluster: str | None = typer.Option(
        None, "--cluster", help="Fleet repository: validate only this cluster (default: all)."
    ),
    max_warnings: int = typer.Option(
        100,
        "--max-warnings",
        min=0,
        help="Text output: print at most this many warnings, then their count (0: all).",
    ),
) -> None:
    """Validate desired state: YAML safety, schemas, references, capacity."""
    try:
        tree = source.read(path, rev)
        views: dict[str | None, source_tree.SourceTree] = (
            source.fleet.views(tree)
            if cluster is None
            else {cluster: source.fleet.view(tree, cluster)}
        )
    except errors.SourceError as exc:
        typer.echo(f"cuctl validate: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    if list(views) != [None]:
        _validate_fleet(tree, views, rev, output, strict)
        return
    result = validate.validate_tree(tree)
    findings = result.diagnostics
    if output is Output.JSON:
        typer.echo(json.dumps([d.to_json() for d in findings], indent=2))
    else:
        shown = 0
        for d in findings:
            warning = d.severity is not diag.Severity.ERROR
            if warning:
                shown += 1
                if max_warnings and shown > max_warnings:
                    continue
            # Escaped: a file name with a newline must not forge a diagnostic line.
            file, message = diag.printable(d.file), diag.printable(d.message)
            prefix = "warning: " if warning else ""
            typer.echo(f"{file}:{d.line}:{d.column}: {d.code}: {prefix}{message}")
        if max_warnings and shown > max_warnings:
            typer.echo(
                f"… {shown - max_warnings} more warnings not shown (--max-warnings 0 or -o json "
                "for all)"
            )
    failed = bool(result.errors) or (strict and bool(result.warnings))
    short = result.revision[:12] if rev is not None else result.revision
    summary = (
        f"{tree.root} @ {short}: {len(result.files)} files, "
        f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)"
    )
    typer.echo(("INVALID " if failed else "valid ") + summary, err=True)
    raise typer.Exit(_app.EXIT_FINDINGS if failed else _app.EXIT_OK)


def _validate_fleet(
    tree: source_tree.SourceTree,
    views: Mapping[str | None, source_tree.SourceTree],
    rev: str | None,
    output: Output,
    strict: bool,
) -> None:
    """Validate each cluster's overlay; a finding in a shared file is listed once, with every
    cluster it affects."""
    found: dict[diag.Diagnostic, list[str]] = {}
    failed_clusters = []
    for name, view in views.items():
        assert name is not None
        result = validate.validate_tree(view)
        for d in result.diagnostics:
            found.setdefault(d, []).append(name)
        failed = bool(result.errors) or (strict and bool(result.warnings))
        if failed:
            failed_clusters.append(name)
        short = result.revision[:12] if rev is not None else result.revision
        typer.echo(
            ("INVALID " if failed else "valid ")
            + f"cluster {name} @ {short}: {len(result.files)} files, "
            f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)",
            err=True,
        )
    if output is Output.JSON:
        typer.echo(json.dumps([{**d.to_json(), "clusters": c} for d, c in found.items()], indent=2))
    else:
        for d, clusters in found.items():
            prefix = "" if d.severity is diag.Severity.ERROR else "warning: "
            file, message = diag.printable(d.file), diag.printable(d.message)
            typer.echo(
                f"{file}:{d.line}:{d.column}: {d.code}: {prefix}{message} "
                f"[cluster {', '.join(clusters)}]"
            )
    raise typer.Exit(_app.EXIT_FINDINGS if failed_clusters else _app.EXIT_OK)


@_app.app.command("schemas", hidden=True)
def schemas_command(
    directory: Path = typer.Argument(Path("schemas"), help="Where the JSON Schemas live."),
    check: bool = typer.Option(False, "--check", help="Exit 1 if the files are stale."),
) -> None:
    """Write the JSON Schemas generated from reconciler.model.documents."""
    stale = []
    for name, text in schemas.rendered().items():
        target = directory / name
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not check:
            directory.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if check and stale:
        print(
            f"stale schemas: {', '.join(stale)}; run `cuctl schemas {directory}`", file=sys.stderr
        )
        raise typer.Exit(_app.EXIT_FINDINGS)
    print(f"{'checked' if check else 'wrote'} {directory}", file=sys.stderr)

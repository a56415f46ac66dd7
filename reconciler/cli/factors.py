"""``cuctl factors``: learn conversion factors from inference records and publish them via Git.

``fit`` reads records (CSV/Parquet), learns factors, prints every decision and, with
``--write``, commits the new table to the repository (``--branch`` for a pull request,
``--push`` to send it). ``show`` prints the published table with each device's single CU
value over the policy's workload mix. ``report`` writes a self-contained HTML report.
Exit codes like ``kubectl diff``: 0 nothing to change, 1 changes proposed (or written),
2 cannot run.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from ruamel.yaml import YAML

from reconciler import errors
from reconciler.cli import _app
from reconciler.learn import adapter, combine, records, specs, writeback
from reconciler.model import documents as docs
from reconciler.model import state

factors_app = typer.Typer(
    name="factors",
    help="Learn device conversion factors from inference records.",
    no_args_is_help=True,
)
_app.app.add_typer(factors_app, name="factors")


def _now(value: str | None) -> datetime:
    """The clock is read here, at the edge, and passed inward."""
    if value is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _docs_of_kind(root: Path, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.y*ml")):
        if ".git" in path.parts or path.suffix not in {".yaml", ".yml"}:
            continue
        try:
            for doc in YAML(typ="safe").load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") == kind:
                    out.append(doc)
        except Exception:  # broken YAML is `cuctl validate`'s to report
            continue
    return out


def _policy(root: Path) -> docs.FactorPolicy:
    found = _docs_of_kind(root, "Policy")
    policy = docs.Policy.model_validate(found[0]) if found else state.DEFAULT_POLICY
    return policy.spec.factors


def _mix(policy: docs.FactorPolicy) -> dict[str, float]:
    return dict(policy.workload_mix) or {"prefill": 0.3, "decode": 0.6, "embedding": 0.1}


def _table(root: Path, table: Path | None) -> tuple[Path, docs.FactorTable | None]:
    if table is not None:
        path: Path | None = table if table.is_absolute() else root / table
    else:
        path = writeback.find_table(root)
    if path is None:
        return root / writeback.DEFAULT_PATH, None
    return path, writeback.read_table(path) if path.exists() else None


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given; a directory stands for the CSV and Parquet files directly in it."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix in {".csv", ".parquet", ".pq"})
        else:
            out.append(p)
    if not out:
        raise errors.SourceError(f"no record files in {', '.join(map(str, paths))}")
    return out


def _learn(
    record_files: list[Path], root: Path, table: Path | None, now: str | None
) -> tuple[adapter.Outcome, docs.FactorPolicy, Path, docs.FactorTable | None]:
    policy = _policy(root)
    path, published = _table(root, table)
    ref = published.spec.reference_model if published else specs.REFERENCE_MODEL
    if ref not in specs.SPECS:
        raise errors.SourceError(f"reference model {ref} has no spec entry")
    extra = {f.device_model for f in published.spec.factors} if published else set()
    recs = records.load(_expand(record_files), _now(now), extra_models=extra)
    typer.echo(recs.report.render(), err=True)
    outcome = adapter.learn(recs, published, policy, _now(now))
    return outcome, policy, path, published


@factors_app.command("fit")
def fit_command(
    record_files: list[Path] = typer.Option(
        ..., "--records", help="CSV/Parquet file or directory; repeat for more."
    ),
    repo: Path = typer.Option(Path("."), "--repo", help="The desired-state Git repository."),
    write: bool = typer.Option(False, "--write", help="Commit the new factor table."),
    branch: str | None = typer.Option(None, "--branch", help="Commit on this branch (for a PR)."),
    push: bool = typer.Option(False, "--push", help="Push the branch to the remote 'origin'."),
    table: Path | None = typer.Option(None, "--table", help="Factor table file in the repo."),
    now: str | None = typer.Option(None, "--now", help="Evaluation time (ISO 8601); default now."),
) -> None:
    """Learn factors from records; print old → new with evidence; optionally commit."""
    try:
        outcome, policy, path, _ = _learn(record_files, repo, table, now)
    except (errors.CUError, ValueError, OSError) as exc:
        typer.echo(f"cuctl factors fit: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    message = writeback.commit_message(outcome, policy)
    typer.echo(message)
    changed = bool(outcome.proposal.changed)
    if write and changed:
        try:
            res = writeback.write_commit(
                repo, path, outcome.proposal.table, message, branch=branch, push=push
            )
        except errors.CUError as exc:
            typer.echo(f"cuctl factors fit: {exc}", err=True)
            raise typer.Exit(_app.EXIT_ERROR) from exc
        typer.echo(
            f"committed {res.sha[:12]} on {res.branch}: {res.path}"
            + (" (pushed)" if res.pushed else ""),
            err=True,
        )
    elif write:
        typer.echo("nothing to commit: every factor held or unchanged", err=True)
    raise typer.Exit(_app.EXIT_FINDINGS if changed else _app.EXIT_OK)


@factors_app.command("show")
def show_command(
    repo: Path = typer.Option(Path("."), "--repo", help="The desired-state Git repository."),
    table: Path | None = typer.Option(None, "--table", help="Factor table file in the repo."),
) -> None:
    """Print the published factors and each device's CU value over the policy's mix."""
    try:
        path, published = _table(repo, table)
        policy = _policy(repo)
    except (errors.CUError, ValueError, OSError) as exc:
        typer.echo(f"cuctl factors show: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    if published is None:
        typer.echo(f"cuctl factors show: no FactorTable in {repo}", err=True)
        raise typer.Exit(_app.EXIT_ERROR)
    mix = _mix(policy)
    typer.echo(f"{path}: reference {published.spec.reference_model}; mix {mix}")
    typer.echo(
        f"{'DEVICE MODEL':<18} {'CLASS':<10} {'VALUE':>8} {'SOURCE':<8} {'SAMPLES':>8} INTERVAL"
    )
    for f in published.spec.factors:
        interval = f"[{f.interval[0]:.4g}, {f.interval[1]:.4g}]" if f.interval else "-"
        typer.echo(
            f"{f.device_model:<18} {f.workload_class or '*':<10} {f.value:>8.4g} "
            f"{f.source.value:<8} {f.samples:>8} {interval}"
        )
    values = adapter.table_values(published)
    typer.echo("")
    typer.echo(f"{'DEVICE MODEL':<18} {'CU VALUE (geometric mean over mix)':>36}")
    for model in sorted({k[0] for k in values}):
        per = {c: values[(model, c)] for c in specs.WorkloadClass if (model, c) in values}
        v = combine.device_value(per, mix)
        typer.echo(f"{model:<18} {v if v is not None else float('nan'):>36.4g}")


@factors_app.command("report")
def report_command(
    record_files: list[Path] = typer.Option(..., "--records", help="CSV or Parquet files."),
    out: Path = typer.Option(..., "--out", help="Directory for report.html."),
    repo: Path = typer.Option(Path("."), "--repo", help="The desired-state Git repository."),
    table: Path | None = typer.Option(None, "--table", help="Factor table file in the repo."),
    now: str | None = typer.Option(None, "--now", help="Evaluation time (ISO 8601); default now."),
) -> None:
    """Write a self-contained HTML report of a learning run (nothing is committed)."""
    from reconciler.learn import report  # matplotlib is heavy: load it only for reports

    try:
        outcome, policy, path, published = _learn(record_files, repo, table, now)
        known = sorted({k[0] for k in outcome.posteriors})
        pools = [
            report.pool_from_doc(docs.CUPool.model_validate(d), _mix(policy), known)
            for d in _docs_of_kind(repo, "CUPool")
        ]
        text = report.render(outcome, published, history=writeback.history(repo, path), pools=pools)
        written = report.write(out, text)
    except (errors.CUError, ValueError, OSError) as exc:
        typer.echo(f"cuctl factors report: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    typer.echo(str(written))
    sys.stdout.flush()

"""``cuctl factors``: learn conversion factors from inference records and publish them via Git.

``fit`` reads records (CSV/Parquet), learns factors, prints every decision and, with
``--write``, commits the learned rows on a bot branch for review (``--push`` to send it).
It reads the policy and tables from ``--base`` (default HEAD) and builds the commit from
that revision's tree plus the one learned file, with Git plumbing: the index, the working
tree and the checked-out branch are never read or touched. ``show`` prints the merged
factor view the planner uses, each row with the table it comes from, and each device's
single CU value over the policy's workload mix. ``report`` writes a self-contained HTML
report. Exit codes like ``kubectl diff``: 0 nothing to change, 1 changes proposed (or
written), 2 cannot run.

The repository is read through the front door like every other command: ``source.read``
(``fit``: the ``--base`` revision; ``show``/``report``: the working tree) and
``validate.validate_tree``. An invalid
repository is exit 2 with its diagnostics on stderr; nothing is learned or written. The
Policy, the reference model and the factor tables all come from the validated DesiredState.

Where learned factors go: people curate spec tables (``factors/default.yaml``, a source
comment on every row), and a rewrite would lose those comments, so the learner never writes
them. It writes a bot-owned FactorTable holding only ``source: learned`` rows
(``factors/learned.yaml``, metadata.name ``learned``, created on the first write); ``--table``
names another bot-owned file. The update rule compares against the merged view of every
table (:func:`reconciler.model.factors.merge_factors`, the planner's rule), and a write is
refused unless the repository still validates with the new table and the planner would read
every moved value from it.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath

import typer

from reconciler import errors, source, validate
from reconciler.cli import _app
from reconciler.learn import adapter, combine, records, slo, specs, update, writeback
from reconciler.model import diagnostics
from reconciler.model import documents as docs
from reconciler.model import factors as model_factors
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.source import tree as source_tree

factors_app = typer.Typer(
    name="factors",
    help="Learn device conversion factors from inference records.",
    no_args_is_help=True,
)
_app.app.add_typer(factors_app, name="factors")

DEFAULT_BRANCH = "cu-factors/update"
"""The bot branch ``fit --write`` commits to unless ``--branch`` names another."""

_TABLE_HELP = (
    "The bot-owned FactorTable file (repo-relative) learned rows are written to; "
    f"default: the table named '{writeback.LEARNED_NAME}', else {writeback.LEARNED_PATH}."
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Repository:
    """``--repo`` as the pipeline sees it: the tree read from disk and its validated state."""

    root: Path
    tree: source_tree.SourceTree
    state: st.DesiredState

    @property
    def reference_model(self) -> str:
        return self.state.settings.spec.reference.device_model

    def merged(self) -> docs.FactorTable:
        """The published view: every FactorTable merged by the planner's rule."""
        return model_factors.merged_table(self.state.factor_tables, self.reference_model)

    def path_exists(self, rel: str) -> bool:
        if self.tree.revision == source_tree.WORKTREE:
            return (self.root / rel).exists()
        return rel in self.tree.files

    def text_of(self, rel: str) -> str | None:
        """The file as this revision holds it (not as the working tree may have it now)."""
        data = self.tree.files.get(rel)
        return data.decode("utf-8") if data is not None else None

    def file_of(self, table: str) -> str | None:
        loc = self.state.location("FactorTable", table)
        return loc.file if loc is not None else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """Where learned rows are written: a repo-relative file and the table in it (if any)."""

    rel: str
    target: update.Target

    def path(self, repo: _Repository) -> Path:
        return repo.root / self.rel

    @property
    def header(self) -> str:
        return writeback.learned_header(self.rel)


def _fail(command: str, message: str) -> typer.Exit:
    typer.echo(f"cuctl factors {command}: {message}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _input_failure(command: str, exc: errors.InputError) -> typer.Exit:
    """Bad records: every problem as ``file:line:col: code: message``, then exit 2."""
    diags = getattr(exc, "diagnostics", None) or []
    for d in diags:
        typer.echo(d.render(), err=True)
    what = f"{len(diags)} input error(s)" if diags else str(exc)
    return _fail(command, f"cannot read the records: {what}; nothing learned or written")


def _now(value: str | None) -> datetime:
    """The clock is read here, at the edge, and passed inward."""
    if value is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _read(command: str, repo: Path, rev: str | None = None) -> _Repository:
    """Read ``rev`` (None: the working tree) and validate it; invalid is exit 2 with every
    error."""
    try:
        tree = source.read(str(repo), rev)
    except errors.SourceError as exc:
        raise _fail(command, str(exc)) from exc
    result = validate.validate_tree(tree)
    if result.state is None:
        for d in result.errors:
            typer.echo(d.render(), err=True)
        raise _fail(
            command,
            f"{repo}: the desired state is invalid ({len(result.errors)} errors; see "
            "`cuctl validate`); nothing learned or written",
        )
    return _Repository(repo, tree, result.state)


def _mix(policy: docs.FactorPolicy) -> dict[str, float]:
    return dict(policy.workload_mix) or {"prefill": 0.3, "decode": 0.6, "embedding": 0.1}


def _relative(command: str, repo: _Repository, table: Path) -> str:
    """``--table`` as a repo-relative POSIX path (how DesiredState locations are written)."""
    if table.is_absolute():
        try:
            table = table.resolve().relative_to(repo.root.resolve())
        except ValueError as exc:
            raise _fail(command, f"--table {table}: outside the repository {repo.root}") from exc
    rel = PurePosixPath(table.as_posix())
    if ".." in rel.parts:
        raise _fail(command, f"--table {table}: outside the repository {repo.root}")
    return str(rel)


def _target(command: str, repo: _Repository, table: Path | None) -> _Target:
    """The bot-owned table to write; refuse a table people curate (it has spec rows)."""
    state = repo.state
    if table is not None:
        rel = _relative(command, repo, table)
        found = [t for t in state.factor_tables if repo.file_of(t.metadata.name) == rel]
        if len(found) > 1:
            raise _fail(command, f"{rel}: holds {len(found)} FactorTables; name a file with one")
        if not found:
            if repo.path_exists(rel):
                raise _fail(command, f"{rel}: holds no FactorTable the repository loads")
            if not source_tree.is_candidate(rel):
                raise _fail(command, f"{rel}: not a YAML file the repository reads")
            return _Target(rel, update.Target(PurePosixPath(rel).stem))
        chosen = found[0]
    else:
        named = [t for t in state.factor_tables if t.metadata.name == writeback.LEARNED_NAME]
        if not named:
            rel = writeback.LEARNED_PATH.as_posix()
            if repo.path_exists(rel):
                raise _fail(
                    command,
                    f"{rel} exists but the repository loads no FactorTable "
                    f"'{writeback.LEARNED_NAME}' from it; fix it or pass --table",
                )
            return _Target(rel, update.Target(writeback.LEARNED_NAME))
        chosen = named[0]
        rel = repo.file_of(chosen.metadata.name) or writeback.LEARNED_PATH.as_posix()
    curated = sum(1 for f in chosen.spec.factors if f.source is not docs.FactorSource.LEARNED)
    if curated:
        raise _fail(
            command,
            f"{rel}: FactorTable '{chosen.metadata.name}' holds {curated} spec rows: it is "
            "curated by people and the learner never rewrites it; learned rows go to a "
            f"bot-owned table (default {writeback.LEARNED_PATH}, or --table NEW-FILE)",
        )
    return _Target(rel, update.Target(chosen.metadata.name, chosen))


class Engine(StrEnum):
    LOCAL = "local"
    DASK = "dask"


@dataclasses.dataclass(frozen=True, slots=True)
class _EngineChoice:
    engine: Engine = Engine.LOCAL
    scheduler: str | None = None
    workers: int = 2


def _learn(
    command: str,
    record_files: list[Path],
    repo_path: Path,
    table: Path | None,
    now: str | None,
    rev: str | None = None,
    engine: _EngineChoice = _EngineChoice(),
) -> tuple[_Repository, _Target, adapter.Outcome, tuple[slo.Change, ...]]:
    """Stream the records (bounded memory at any size) through the chosen engine; the
    at-SLO factors of the classes with a latency target come from the same aggregates."""
    from reconciler.learn import stream

    repo = _read(command, repo_path, rev)
    target = _target(command, repo, table)
    ref = repo.reference_model
    if ref not in specs.SPECS:
        raise errors.SourceError(f"reference model {ref} has no spec entry")
    published = repo.merged()
    when = _now(now)
    extra = sorted({f.device_model for f in published.spec.factors})
    skipped: list[str] = []
    frags = stream.fragments(record_files, skipped)
    if skipped:
        shown = ", ".join(skipped[:5]) + (", …" if len(skipped) > 5 else "")
        typer.echo(
            f"records: skipped {len(skipped)} files that are not records ({shown}); "
            f"formats read: {', '.join(records.FORMATS)}",
            err=True,
        )
    if engine.engine is Engine.DASK:
        from reconciler.learn import distributed

        with distributed.client(engine.scheduler, engine.workers) as c:
            aggs = stream.aggregate(frags, when, extra, mapper=distributed.mapper(c))
    else:
        aggs = stream.aggregate(frags, when, extra)
    typer.echo(aggs.report.render(), err=True)
    if not aggs.report.accepted:
        raise errors.InputError(
            [
                diagnostics.Diagnostic(
                    str(record_files[0]),
                    1,
                    1,
                    "records.empty",
                    f"no usable records in {len(frags)} file(s) ({aggs.report.total} rows read, "
                    f"{aggs.report.rejected} rejected); nothing learned",
                )
            ]
        )
    outcome = stream.learn(
        aggs,
        published,
        repo.state.policy.spec.factors,
        when,
        records_revision=aggs.revision,
        target=target.target,
    )
    targets = repo.state.policy.latency_targets()
    if not targets:
        return repo, target, outcome, ()
    estimates = slo.estimate(aggs.cells, ref, targets, [s.node for s in outcome.slow_nodes])
    published_slo = [
        m.factor
        for m in model_factors.merge_factors(repo.state.factor_tables, docs.FactorBasis.AT_SLO)
    ]
    held = {
        c.workload_class.value: c.reason
        for c in outcome.proposal.changes
        if c.decision is update.Decision.HELD
        and c.reason.startswith("drift alarm on the reference")
    }
    changes = slo.decide(
        estimates, published_slo, repo.state.policy.spec.factors, ref, aggs.revision, held
    )
    return repo, target, outcome, changes


def _check_after_write(
    command: str,
    repo: _Repository,
    target: _Target,
    table: docs.FactorTable,
    changed: tuple[update.FactorChange, ...],
) -> None:
    """Validate the repository as it will be after the write, in memory, before writing.

    Why: a commit that breaks validation stalls the reconciler, and one whose table the
    layout excludes or another learned table outranks would move no capacity while its
    message says it did. Both are refused here, and nothing is written.
    """
    text = _render(repo, target, table)
    after = dataclasses.replace(
        repo.tree, files={**repo.tree.files, target.rel: text.encode("utf-8")}
    )
    result = validate.validate_tree(after)
    if result.state is None:
        for d in result.errors:
            typer.echo(d.render(), err=True)
        raise _fail(command, f"writing {target.rel} would make the repository invalid; not written")
    loc = result.state.location("FactorTable", table.metadata.name)
    if loc is None or loc.file != target.rel:
        raise _fail(
            command,
            f"{target.rel}: the repository would not load it (ClusterSettings.spec.layout "
            "excludes it?); not written",
        )
    index = model_factors.index_factors(result.state.factor_tables, repo.reference_model)
    moved = {(c.device_model, c.workload_class.value) for c in changed}
    for f in table.spec.factors:
        key = (f.device_model, f.workload_class)
        if f.basis is not docs.FactorBasis.RAW:
            continue
        if key in moved and index.values.get(key) != f.value:
            raise _fail(
                command,
                f"{f.device_model}/{f.workload_class}: another table outranks "
                f"'{table.metadata.name}' in the merge, so the planner would not use "
                f"{f.value:g}; not written",
            )


def _render(repo: _Repository, target: _Target, table: docs.FactorTable) -> str:
    """The target file's new text, from the revision's copy (comments around it kept)."""
    return writeback.render_table(table, repo.text_of(target.rel), target.header)


@factors_app.command("fit")
def fit_command(
    record_files: list[Path] = typer.Option(
        ...,
        "--records",
        help="CSV/Parquet file, or a directory (a partitioned dataset, read recursively); "
        "repeat for more.",
    ),
    repo_path: Path = typer.Option(Path("."), "--repo", help="The desired-state Git repository."),
    base: str = typer.Option(
        "HEAD",
        "--base",
        help="Revision whose policy and factor tables are used, and which the commit builds "
        "on; the working tree and index are never read.",
    ),
    write: bool = typer.Option(
        False, "--write", help="Commit the learned rows on --branch (the checkout is untouched)."
    ),
    branch: str = typer.Option(
        DEFAULT_BRANCH, "--branch", help="Bot branch for review, (re)based on --base."
    ),
    push: bool = typer.Option(False, "--push", help="Push the branch to --remote."),
    remote: str = typer.Option("origin", "--remote", help="Remote to push to."),
    table: Path | None = typer.Option(None, "--table", help=_TABLE_HELP),
    now: str | None = typer.Option(None, "--now", help="Evaluation time (ISO 8601); default now."),
    engine: Engine = typer.Option(
        Engine.LOCAL, "--engine", help="local: in this process; dask: on a Dask cluster."
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="Dask scheduler address (tcp://host:8786); default: a local cluster.",
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Local Dask cluster size."),
) -> None:
    """Learn factors from records; print old → new with evidence; optionally commit."""
    choice = _EngineChoice(engine, scheduler, workers)
    try:
        repo, target, outcome, at_slo = _learn(
            "fit", record_files, repo_path, table, now, base, choice
        )
    except errors.InputError as exc:
        raise _input_failure("fit", exc) from exc
    except (errors.CUError, ValueError, OSError) as exc:
        raise _fail("fit", str(exc)) from exc
    except typer.Exit:
        raise
    except Exception as exc:  # never exit 1 ("changed") on a failure, never a bare traceback
        raise _fail(
            "fit", f"internal error ({type(exc).__name__}: {exc}); nothing written"
        ) from exc
    slo_rows = [c.row for c in at_slo if c.row is not None]
    message = writeback.commit_message(outcome, repo.state.policy.spec.factors, len(slo_rows))
    message += slo.render(at_slo)
    typer.echo(message)
    learned = outcome.proposal.target
    if slo_rows:
        learned = slo.write_rows(
            learned if learned is not None else target.target.table,
            target.target.name,
            repo.reference_model,
            slo_rows,
        )
    changed = bool(outcome.proposal.changed) or bool(slo_rows)
    if write and changed and learned is not None:
        _check_after_write("fit", repo, target, learned, outcome.proposal.changed)
        try:
            res = writeback.publish(
                repo.root,
                target.rel,
                _render(repo, target, learned),
                message,
                base=base,
                branch=branch,
                push=push,
                remote=remote,
            )
        except errors.CUError as exc:
            raise _fail("fit", str(exc)) from exc
        state = "committed" if res.created else "unchanged (already on the branch)"
        typer.echo(
            f"{state} {res.sha[:12]} on {res.branch} (base {res.base[:12]}): {res.path}"
            + (f" (pushed to {remote})" if res.pushed else ""),
            err=True,
        )
    elif write:
        typer.echo("nothing to commit: every factor held or unchanged", err=True)
    raise typer.Exit(_app.EXIT_FINDINGS if changed else _app.EXIT_OK)


@factors_app.command("show")
def show_command(
    repo_path: Path = typer.Option(Path("."), "--repo", help="The desired-state Git repository."),
) -> None:
    """Print the merged factors with their provenance and each device's CU value."""
    repo = _read("show", repo_path)
    tables = repo.state.factor_tables
    if not tables:
        raise _fail("show", f"no FactorTable in {repo_path}")
    mix = _mix(repo.state.policy.spec.factors)
    typer.echo(
        f"{repo_path}: {len(tables)} FactorTable(s) merged as the planner does (a learned row "
        "beats a spec row; between equals the table whose name sorts last wins); "
        f"reference {repo.reference_model}; mix {mix}"
    )
    for t in tables:
        n_learned = sum(1 for f in t.spec.factors if f.source is docs.FactorSource.LEARNED)
        typer.echo(
            f"  {t.metadata.name:<12} {repo.file_of(t.metadata.name) or '?'}: "
            f"{len(t.spec.factors)} rows ({n_learned} learned)"
        )
    typer.echo("")
    typer.echo(
        f"{'DEVICE MODEL':<18} {'CLASS':<10} {'VALUE':>8} {'SOURCE':<8} {'TABLE':<12} "
        f"{'SAMPLES':>8} {'INTERVAL':<20} OVERRIDES"
    )
    for m in model_factors.merge_factors(tables):
        f = m.factor
        interval = f"[{f.interval[0]:.4g}, {f.interval[1]:.4g}]" if f.interval else "-"
        beaten = [
            f"{t.metadata.name} {o.value:.4g}"
            for t in tables
            if t.metadata.name != m.table
            for o in t.spec.factors
            if (o.device_model, o.workload_class) == m.key and o.basis is docs.FactorBasis.RAW
        ]
        typer.echo(
            f"{f.device_model:<18} {f.workload_class or '*':<10} {f.value:>8.4g} "
            f"{f.source.value:<8} {m.table:<12} {f.samples:>8} {interval:<20} "
            f"{', '.join(beaten) or '-'}"
        )
    at_slo = model_factors.merge_factors(tables, docs.FactorBasis.AT_SLO)
    if at_slo:
        targets = repo.state.policy.latency_targets()
        typer.echo("")
        typer.echo("At the SLO (basis atSLO; sold by pools unless they say factorBasis: raw):")
        for m in at_slo:
            f = m.factor
            target = f.latency_target.p99_ms if f.latency_target else 0.0
            cls = f.workload_class or "*"
            stale = "" if targets.get(cls) == target else " (not the class's target: unused)"
            tput = (
                f", {f.throughput:.4g} {f.throughput_unit} ({f.served_model})"
                if f.throughput
                else ""
            )
            interval = f" [{f.interval[0]:.4g}, {f.interval[1]:.4g}]" if f.interval else ""
            typer.echo(
                f"  {f.device_model}/{cls} at p99 ≤ {target:g} ms: {f.value:.4g}{interval}, "
                f"n={f.samples}{tput}; {m.table}{stale}"
            )
    values = adapter.table_values(repo.merged())
    typer.echo("")
    typer.echo(f"{'DEVICE MODEL':<18} {'CU VALUE (geometric mean over mix)':>36}")
    for model in sorted({k[0] for k in values}):
        per = {c: values[(model, c)] for c in specs.WorkloadClass if (model, c) in values}
        v = combine.device_value(per, mix)
        typer.echo(f"{model:<18} {v if v is not None else float('nan'):>36.4g}")


def _observed(
    command: str, repo: _Repository, observed: Path | None
) -> tuple[obs.ObservedState | None, str]:
    """The observed devices for pool membership: ``--observed FILE``, else the repository's
    committed snapshot, else none (pools then fall back to their selector's model list)."""
    from reconciler import observe
    from reconciler.observe import snapshot, sources

    if observed is not None:
        src: sources.Source = snapshot.Snapshot(observed)
        where = str(observed)
    else:
        rel = repo.state.settings.spec.layout.snapshot
        data = repo.tree.files.get(rel) if rel else None
        if data is None:
            return None, "no observed devices: pool models from the selectors"
        src = sources.InMemory(snapshot.parse(data.decode("utf-8"), str(rel)))
        where = str(rel)
    return observe.observe(src, repo.state), f"pool models from the devices in {where}"


@factors_app.command("report")
def report_command(
    record_files: list[Path] = typer.Option(..., "--records", help="CSV or Parquet files."),
    out: Path = typer.Option(..., "--out", help="Directory for report.html."),
    repo_path: Path = typer.Option(Path("."), "--repo", help="The desired-state Git repository."),
    table: Path | None = typer.Option(None, "--table", help=_TABLE_HELP),
    observed: Path | None = typer.Option(
        None,
        "--observed",
        help="Snapshot of Nodes and ResourceSlices for pool membership "
        "(default: the repository's snapshot).",
    ),
    now: str | None = typer.Option(None, "--now", help="Evaluation time (ISO 8601); default now."),
) -> None:
    """Write a self-contained HTML report of a learning run (nothing is committed)."""
    from reconciler.learn import report  # matplotlib is heavy: load it only for reports

    try:
        try:
            repo, target, outcome, _ = _learn("report", record_files, repo_path, table, now)
        except errors.InputError as exc:
            raise _input_failure("report", exc) from exc
        mix = _mix(repo.state.policy.spec.factors)
        known = sorted({k[0] for k in outcome.posteriors})
        state, note = _observed("report", repo, observed)
        typer.echo(f"cuctl factors report: {note}", err=True)
        pools = [report.pool_from_doc(p, mix, known, state) for p in repo.state.pools]
        text = report.render(
            outcome,
            repo.merged(),
            history=writeback.history(repo.root, target.path(repo)),
            pools=pools,
        )
        written = report.write(out, text)
    except (errors.CUError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise _fail("report", str(exc)) from exc
    typer.echo(str(written))
    sys.stdout.flush()

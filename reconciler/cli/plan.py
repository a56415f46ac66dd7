"""``cuctl plan`` and ``cuctl render``: the diff preview and the rendered target.

``cuctl plan [PATH] [--rev REV] [--base REV] [--observed FILE | --kubeconfig FILE
[--context NAME]] [-o text|markdown|json] [--diffs/--no-diffs] [--at RFC3339]`` prints what
would change (``--at``: at that instant, with the guarantee windows in force then);
exit 0 in sync, 1 with changes (objects, desired-state fields, or promises the devices
cannot keep), 2 on error (like ``kubectl diff``). With ``--base`` it compares what two
revisions would produce, offline (a pull request's effect), each from its own committed
snapshot (or both from ``--observed``/``--kubeconfig`` when given). The observed devices
default to the repository's committed snapshot (``layout.snapshot``), as for ``render``.
Against the live side, the tenant settings the cluster last had applied (recorded on our
pool classes) are compared too: a changed priority, ``preemptible``, ``mayBorrow`` or quota
is listed and exits 1, as with ``--base``.

``cuctl render`` prints the target objects as a YAML stream on stdout (an Argo CD config
management plugin's ``generate``); logs go to stderr. A plan refused by the safety rule
renders nothing and exits 2, so a plugin never hands a mass deletion to the GitOps engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from reconciler import _gc, errors, observe, source, validate
from reconciler import plan as planning
from reconciler.cli import _app
from reconciler.diff import changeset, render, yamltext
from reconciler.model import driverconfig
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.observe import snapshot, sources
from reconciler.plan import costs, gitops, meaning, report, schedule
from reconciler.validate import syntax


class Output(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class Loaded:
    state: st.DesiredState
    tree_root: str
    snapshot_bytes: bytes | None
    snapshot_document: syntax.LoadedDocument | None = None
    """The snapshot as validation composed it (see :func:`_shared_snapshot`)."""


def _fail(command: str, message: str) -> typer.Exit:
    typer.echo(f"cuctl {command}: {message}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _load(
    command: str, path: str, rev: str | None, flag: str, cluster: str | None = None
) -> Loaded:
    """Read and validate one revision (one cluster's overlay in a fleet repository); any
    problem is exit 2 with located diagnostics."""
    try:
        tree = source.fleet.select(source.read(path, rev), cluster)
    except errors.SourceError as exc:
        raise _fail(command, f"{flag}: {exc}") from exc
    result = validate.validate_tree(tree)
    for d in result.errors:
        typer.echo(d.render(), err=True)
    if result.state is None:
        where = (
            f"{path}" + (f" at {rev}" if rev else "") + (f" (cluster {cluster})" if cluster else "")
        )
        raise _fail(command, f"{where}: the desired state is invalid ({len(result.errors)} errors)")
    layout = result.state.settings.spec.layout
    snap = tree.files.get(layout.snapshot) if layout.snapshot else None
    return Loaded(result.state, tree.root, snap, result.snapshot_document)


def _trust(command: str, path: str, rev: str | None, loaded: Loaded) -> str | None:
    """The signing rule (:mod:`reconciler.source.signature`, the one ``apply`` and ``run``
    use, here with no anchor: there is no cluster record offline). The reason a revision is
    untrusted, None when it is trusted or nothing requires signatures."""
    from reconciler.source import signature

    try:
        if rev is None:
            signature.verify_worktree(path, loaded.state.settings.spec.signing is not None)
        else:
            signature.verify(path, rev)
    except errors.SourceError as exc:
        return str(exc)
    return None


def _shared_snapshot(loaded: Loaded, content: bytes, name: str) -> snapshot.Composed | None:
    """The observed devices from the nodes validation composed, when ``content`` is the
    repository snapshot it read (``--observed`` naming the committed file, or no flag):
    the same text through the same composer, so only observe's conversion and checks run
    again, not the parsing of the whole file. None when it cannot be shared: text that
    reading the file would change (a BOM, CR line ends) is parsed from the file as before."""
    document = loaded.snapshot_document
    if (
        document is None
        or content != loaded.snapshot_bytes
        or content.startswith(b"\xef\xbb\xbf")
        or b"\r" in content
    ):
        return None
    return snapshot.Composed(document.root, name)


def _same_as_repository_snapshot(loaded: Loaded, path: Path) -> bytes:
    """``path``'s bytes when it may be the repository snapshot (a regular file of the same
    size), else nothing: never read a device, a FIFO or a huge file here."""
    if loaded.snapshot_document is None or loaded.snapshot_bytes is None:
        return b""
    try:
        info = path.stat()
        if stat.S_ISREG(info.st_mode) and info.st_size == len(loaded.snapshot_bytes):
            return path.read_bytes()
    except OSError:
        pass  # the Snapshot source reports it when it reads, as before
    return b""


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
        content = _same_as_repository_snapshot(loaded, observed)
        shared = _shared_snapshot(loaded, content, str(observed))
        return shared if shared is not None else snapshot.Snapshot(observed)
    if kubeconfig is not None:
        from reconciler.observe import cluster  # the Kubernetes client: only for a live cluster

        try:
            return cluster.Cluster(cluster.connect(str(kubeconfig), context))
        except errors.ObserveError as exc:
            raise _fail(command, str(exc)) from exc
    if allow_repository_snapshot and loaded.snapshot_bytes is not None:
        layout = loaded.state.settings.spec.layout
        typer.echo(f"cuctl {command}: observed devices from {layout.snapshot}", err=True)
        shared = _shared_snapshot(loaded, loaded.snapshot_bytes, str(layout.snapshot))
        if shared is not None:
            try:
                return sources.InMemory(snapshot.parse_composed([shared.root], shared.name))
            except errors.ObserveError as exc:
                raise _fail(command, str(exc)) from exc
        try:
            text = loaded.snapshot_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(command, f"{layout.snapshot}: not UTF-8 text") from exc
        try:
            return sources.InMemory(snapshot.parse(text, str(layout.snapshot)))
        except errors.ObserveError as exc:
            raise _fail(command, str(exc)) from exc
    try:  # the ambient cluster, as kubectl finds it: KUBECONFIG, in-cluster, ~/.kube/config
        from reconciler.observe import cluster

        return cluster.Cluster(cluster.connect(None, context))
    except (errors.ObserveError, ModuleNotFoundError) as exc:
        raise _fail(
            command,
            "needs the observed devices: --observed FILE, --kubeconfig FILE, "
            "ClusterSettings spec.layout.snapshot naming a committed snapshot, or a cluster "
            f"found through KUBECONFIG / ~/.kube/config ({exc})",
        ) from exc


def _plan(
    command: str,
    desired: st.DesiredState,
    src: sources.Source,
    live: Iterable[Mapping[str, Any]] | None = None,
    now: dt.datetime | None = None,
) -> tuple[planning.Plan, obs.ObservedState]:
    try:
        observed = observe.observe(src, desired)
        if observed.inventory is not None and not observed.inventory.stored:
            # A preview of a cluster we never applied to (engine mode, or before the first
            # apply): our marks decide here; apply itself never trusts them.
            observed = dataclasses.replace(observed, inventory=None)
        result = planning.plan(desired, observed, live, now=now or _wall_clock())
    except errors.CUError as exc:
        raise _fail(command, str(exc)) from exc
    except ValueError as exc:
        raise _fail(command, f"cannot plan revision {desired.revision[:12]}: {exc}") from exc
    return result, observed


@dataclass(frozen=True, slots=True)
class Costs:
    """The cost figures of a preview (plan/costs.py) and what tenants' bills would change."""

    report: costs.CostReport | None
    changes: tuple[costs.PaysChange, ...] = ()

    def to_json(self) -> dict[str, Any] | None:
        if self.report is None:
            return None
        out = self.report.to_json()
        out["paysChanges"] = [
            {
                "tenant": c.tenant,
                "guaranteedPerMonth": [round(c.before[0], 2), round(c.after[0], 2)],
                "inUsePerMonth": [round(c.before[1], 2), round(c.after[1], 2)],
            }
            for c in self.changes
        ]
        return out


def _wall_clock() -> dt.datetime:
    """The instant a plan is made for when none is given (``--at``): now."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _at(text: str | None) -> dt.datetime:
    """``--at`` (RFC 3339 with an offset) → an aware instant; exit 2 when unreadable."""
    if text is None:
        return _wall_clock()
    try:
        at = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise _fail("plan", f"--at {text!r}: not an RFC 3339 time ({exc})") from exc
    if at.tzinfo is None:
        raise _fail("plan", f"--at {text!r}: give an offset (2026-03-29T08:00:00+02:00 or …Z)")
    return at.astimezone(dt.UTC)


def _against_base(
    path: str,
    base: str,
    cluster: str | None,
    loaded: Loaded,
    src: sources.Source,
    *,
    own_snapshots: bool = False,
    now: dt.datetime | None = None,
) -> tuple[planning.Plan, render.Preview, Costs]:
    """A pull request's preview: what ``loaded`` changes relative to what ``base`` produces,
    objects and desired-state fields alike, and what tenants would pay (when costs are
    declared).

    ``own_snapshots`` (no ``--observed``/``--kubeconfig``): each side is planned with its own
    revision's committed snapshot, so a pull request that refreshes the snapshot shows the
    capacity it changes and the objects it deletes. A base without a snapshot is planned
    with the pull request's observed devices. Otherwise both sides read ``src``."""
    base_loaded = _load("plan", path, base, "--base", cluster)
    base_src = src
    if own_snapshots and base_loaded.snapshot_bytes is not None:
        base_src = _source("plan", base_loaded, None, None, None, allow_repository_snapshot=True)
    # Both sides at the same instant: the preview shows what the commit changes, not the clock.
    base_plan, base_observed = _plan("plan", base_loaded.state, base_src, now=now)
    result, observed = _plan("plan", loaded.state, src, base_plan.objects, now=now)
    changes = changeset.compute(result.objects, base_plan.objects)
    meaning_changes = meaning.compare(base_loaded.state, loaded.state)
    preview = render.Preview(
        changes, result.report, result.refusal, base_plan.revision, meaning_changes
    )
    before = costs.compute(base_loaded.state, base_observed, base_plan.report)
    after = costs.compute(loaded.state, observed, result.report)
    return result, preview, Costs(after, costs.compare(before, after))


def _what_if(
    loaded: Loaded, src: sources.Source, texts: list[str], now: dt.datetime | None = None
) -> tuple[planning.Plan, render.Preview, tuple[str, ...], Costs]:
    """``plan --what-if``: the plan as it is, against the plan with the scenarios applied to
    its inputs (plan/whatif.py). Both are pure plans of in-memory inputs: nothing is written."""
    from reconciler.plan import whatif

    try:
        scenarios = [whatif.parse(text) for text in texts]
    except whatif.WhatIfError as exc:
        raise _fail("plan", f"--what-if: {exc}") from exc
    now = now or _wall_clock()
    base_plan, observed = _plan("plan", loaded.state, src, now=now)
    try:
        applied = whatif.apply(scenarios, loaded.state, observed)
        result = planning.plan(applied.desired, applied.observed, base_plan.objects, now=now)
    except whatif.WhatIfError as exc:
        raise _fail("plan", f"--what-if: {exc}") from exc
    except (errors.CUError, ValueError) as exc:
        raise _fail("plan", f"--what-if: cannot plan the scenario: {exc}") from exc
    changes = changeset.compute(result.objects, base_plan.objects)
    preview = render.Preview(
        changes,
        result.report,
        result.refusal,
        base_plan.revision,
        meaning.compare(loaded.state, applied.desired),
    )
    before = costs.compute(loaded.state, observed, base_plan.report)
    after = costs.compute(applied.desired, applied.observed, result.report)
    return result, preview, applied.notes, Costs(after, costs.compare(before, after))


def _color(force: bool | None) -> bool:
    if force is not None:
        return force
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


@_app.app.command("plan")
@_gc.one_shot
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
    cluster: str | None = typer.Option(
        None, "--cluster", help="Fleet repository: plan this cluster (default with --base: all)."
    ),
    diffs: bool = typer.Option(
        True,
        "--diffs/--no-diffs",
        help="Per-object diffs after the summary (--no-diffs: the summary and a list).",
    ),
    what_if: list[str] = typer.Option(
        [],
        "--what-if",
        help="Preview a hypothetical change to the inputs, writing nothing (repeatable): "
        "'lose node NODE', 'add 16 x L40S to pool POOL', 'factor BR104/decode -10%', "
        "'price H100-SXM5-80GB +20%'.",
    ),
    at: str | None = typer.Option(
        None,
        "--at",
        help="Plan for this instant (RFC 3339, e.g. 2026-12-07T22:00:00+01:00): the "
        "guarantee windows in force then (default: now).",
    ),
) -> None:
    """Preview what the reconciler would change: exit 0 in sync, 1 changes (objects, the
    desired state, or promises the devices cannot keep), 2 error."""
    if base is not None and cluster is None and observed is None and kubeconfig is None:
        clusters = _fleet_clusters(path, rev, base)
        if clusters:
            _plan_fleet(path, rev, base, clusters, output, color, diffs)
            return
    if what_if and base is not None:
        raise _fail("plan", "--what-if compares with the plan as it is; drop --base")
    now = _at(at)
    loaded = _load("plan", path, rev, "--rev" if rev else "PATH", cluster)
    untrusted = _trust("plan", path, rev, loaded)
    src = _source("plan", loaded, observed, kubeconfig, context, allow_repository_snapshot=True)
    notes: tuple[str, ...] = ()
    if what_if:
        result, preview, notes, cost = _what_if(loaded, src, what_if, now)
    elif base is not None:
        own = observed is None and kubeconfig is None
        result, preview, cost = _against_base(
            path, base, cluster, loaded, src, own_snapshots=own, now=now
        )
    else:
        result, seen = _plan("plan", loaded.state, src, now=now)
        changes = changeset.compute(result.objects, result.live)
        # Against what is live: the tenant settings the cluster last had applied, compared
        # with the guarantees in force at the instant planned for (a window edge the
        # controller has not reached yet is an edit to apply).
        in_force, _ = schedule.in_force(loaded.state, now)
        edits = meaning.against_recorded(in_force, report.recorded_settings(result.live))
        preview = render.Preview(changes, result.report, result.refusal, meaning=edits)
        cost = Costs(costs.compute(loaded.state, seen, result.report))
    _write(preview, output, color, diffs, notes, cost, result.report.windows)
    if result.refusal:
        typer.echo(f"cuctl plan: {result.refusal}", err=True)
    for shortfall in result.report.shortfalls:
        typer.echo(f"cuctl plan: promise not deliverable: {shortfall.render()}", err=True)
    for warning in result.warnings:
        typer.echo(f"cuctl plan: warning: {render.escape(warning)}", err=True)
    if untrusted:  # a preview (a pull request's unsigned commits): said, not refused
        typer.echo(
            f"cuctl plan: untrusted: {untrusted} (render, apply and run refuse this revision)",
            err=True,
        )
    raise typer.Exit(preview.exit_code)


def _write(
    preview: render.Preview,
    output: Output,
    color: bool | None,
    diffs: bool,
    notes: tuple[str, ...],
    cost: Costs,
    windows: schedule.Schedule | None = None,
) -> None:
    """The preview, with what-if notes first, then the cost section (when costs are
    declared) and the guarantee windows (when a quota has a schedule)."""
    hours = schedule.text(windows) if windows is not None else []
    if output is Output.JSON:
        text = render.json_text(preview)
        extra: dict[str, Any] = {}
        if notes:
            extra["whatIf"] = list(notes)
        if cost.report is not None:
            extra["costs"] = cost.to_json()
        if windows is not None and windows.rows:
            extra["schedule"] = windows.to_json()
        if extra:
            import json

            text = json.dumps({**json.loads(text), **extra}, indent=2) + "\n"
        sys.stdout.write(text)
        return
    section = costs.text(cost.report, cost.changes) if cost.report is not None else ""
    section += "".join(f"{line}\n" for line in hours)
    if output is Output.MARKDOWN:
        head = "".join(f"- what-if: {render.escape(n)}\n" for n in notes)
        tail = "\n" + costs.markdown(cost.report, cost.changes) if cost.report else ""
        if hours:  # names and zones are validated grammar; a literal block keeps the layout
            tail += (
                "\n#### Guarantee windows\n\n```text\n"
                + "".join(f"{line}\n" for line in hours)
                + "```\n"
            )
        sys.stdout.write(
            head + ("\n" if head else "") + render.markdown(preview, diffs=diffs) + tail
        )
    else:
        head = "".join(f"what-if: {render.escape(n)}\n" for n in notes)
        sys.stdout.write(head + render.text(preview, color=_color(color), diffs=diffs) + section)


_COMMIT_ID = re.compile(r"[0-9a-f]{7,64}")


@_app.app.command("render")
@_gc.one_shot
def render_command(
    path: str = typer.Argument(".", help="Repository directory."),
    rev: str | None = typer.Option(None, "--rev", help="Render this Git revision."),
    observed: Path | None = typer.Option(
        None, "--observed", help="Snapshot file (default: the repository's committed snapshot)."
    ),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Read the live cluster."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    cluster: str | None = typer.Option(
        None, "--cluster", help="Fleet repository: render this cluster's objects."
    ),
    plain: bool = typer.Option(
        False,
        "--plain",
        help="Objects exactly as cuctl apply writes them (per-commit revision annotation, no "
        "sync waves) instead of the GitOps-engine form.",
    ),
    status: bool = typer.Option(
        False,
        "--status",
        help="Also render the CUEngineStatus cu-reconciler-engine-status (reconciler "
        "namespace; CRD in deploy/engine): revision, admitted and pending claims with reasons, "
        "shortfalls, pool and tenant figures. The shipped engine recipes pass it.",
    ),
    source_revision: str | None = typer.Option(
        None,
        "--source-revision",
        help="The Git commit a directory without --rev was checked out at, recorded as the "
        "engine status's revision (Argo CD's plugin passes $ARGOCD_APP_REVISION, the "
        "hydration workflow $GITHUB_SHA). Empty: ignored.",
    ),
) -> None:
    """Print the target objects as a YAML stream (stdout); logs on stderr.

    By default in the form a GitOps engine applies: sync waves in apply order, replace on
    immutable claims, a content hash instead of the per-commit revision (docs/gitops.md).
    """
    source_revision = source_revision or None
    if source_revision is not None:
        if rev is not None:
            raise _fail(
                "render", "--source-revision names the checkout of PATH; with --rev, omit it"
            )
        if not _COMMIT_ID.fullmatch(source_revision):
            raise _fail(
                "render",
                f"--source-revision {source_revision[:80]!r}: expected a Git commit id "
                "(7 to 64 hexadecimal digits)",
            )
    loaded = _load("render", path, rev, "--rev" if rev else "PATH", cluster)
    untrusted = _trust("render", path, rev, loaded)
    if untrusted:
        raise _fail("render", f"untrusted: {untrusted}; nothing rendered")
    src = _source("render", loaded, observed, kubeconfig, context, allow_repository_snapshot=True)
    result, _ = _plan("render", loaded.state, src)
    if result.refusal:
        raise _fail("render", result.refusal)
    spec = loaded.state.settings.spec
    # The kubelet plugin's driver name travels with the objects (model/driverconfig.py).
    rendered = (
        *result.objects,
        driverconfig.config_map(spec.driver_name, spec.reconciler_namespace),
    )
    if status:
        revision = source_revision or result.revision
        rendered += (gitops.status_object(result.report, revision, spec.reconciler_namespace),)
    objects = rendered if plain else tuple(gitops.for_engine(rendered))
    sys.stdout.write(yamltext.dump_all(objects))
    for warning in result.warnings:
        typer.echo(f"cuctl render: warning: {warning}", err=True)
    admitted = sum(1 for d in result.report.decisions if d.status == "Admitted")
    typer.echo(
        f"cuctl render: {len(result.objects)} objects at {result.revision[:12]}; "
        f"{admitted} of {len(result.report.decisions)} claims admitted",
        err=True,
    )
    edge = result.report.windows.next_edge
    if edge is not None:
        # Nothing rendered moves by itself: the engine must render again after the edge
        # (docs/peaks-and-troughs.md, "Engine mode").
        at = schedule.stamp(result.report.windows.at)
        typer.echo(
            f"cuctl render: guarantee windows in force at {at}; "
            f"the next edge is {schedule.stamp(edge)}: render again then",
            err=True,
        )


def _fleet_clusters(path: str, rev: str | None, base: str) -> tuple[str, ...]:
    """Clusters of a fleet repository at either revision (empty: a single-cluster repo)."""
    try:
        head = source.read(path, rev)
        old = source.read(path, base)
    except errors.SourceError as exc:
        raise _fail("plan", str(exc)) from exc
    return tuple(sorted({*source.fleet.names(head), *source.fleet.names(old)}))


def _affected(path: str, rev: str | None, base: str, name: str) -> bool:
    """Whether a cluster's overlay differs between the two revisions."""
    views = []
    for r in (rev, base):
        tree = source.read(path, r)
        if name not in source.fleet.names(tree):
            return True
        views.append(dict(source.fleet.view(tree, name).files))
    return views[0] != views[1]


def _plan_fleet(
    path: str,
    rev: str | None,
    base: str,
    clusters: tuple[str, ...],
    output: Output,
    color: bool | None,
    diffs: bool,
) -> None:
    """``plan --base`` over a fleet repository: one preview per affected cluster."""
    previews: dict[str, render.Preview] = {}
    unchanged: list[str] = []
    changed = False
    for name in clusters:
        if not _affected(path, rev, base, name):
            unchanged.append(name)
            continue
        loaded = _load("plan", path, rev, "--rev" if rev else "PATH", name)
        src = _source("plan", loaded, None, None, None, allow_repository_snapshot=True)
        result, preview, _ = _against_base(path, base, name, loaded, src, own_snapshots=True)
        previews[name] = preview
        changed = changed or preview.exit_code != _app.EXIT_OK
        if result.refusal:
            typer.echo(f"cuctl plan: cluster {name}: {result.refusal}", err=True)
    if output is Output.JSON:
        import json

        payload = {
            "clusters": {n: json.loads(render.json_text(p)) for n, p in previews.items()},
            "unchanged": unchanged,
        }
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        for name, preview in previews.items():
            if output is Output.MARKDOWN:
                sys.stdout.write(
                    f"## Cluster {render.md_literal(name, cell=False)}\n\n"
                    + render.markdown(preview, diffs=diffs)
                    + "\n"
                )
            else:
                sys.stdout.write(
                    f"=== cluster {name} ===\n"
                    + render.text(preview, color=_color(color), diffs=diffs)
                )
        if unchanged:
            if output is Output.MARKDOWN:
                note = ", ".join(render.md_literal(n, cell=False) for n in unchanged)
                sys.stdout.write(f"\nUnchanged clusters: {note}\n")
            else:
                sys.stdout.write(f"unchanged clusters: {render.escape(', '.join(unchanged))}\n")
    raise typer.Exit(_app.EXIT_FINDINGS if changed else _app.EXIT_OK)

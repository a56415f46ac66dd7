"""``cuctl apply``: one reconcile against a cluster, from the command line.

``cuctl apply [PATH] [--rev REV] [--kubeconfig FILE] [--context NAME] [--dry-run] [--no-prune]
[--lease-wait SECONDS] [--concurrency N] [--adopt]`` runs the controller's pipeline once
(fetch, validate, observe, plan, diff, apply) and prints what happened to each object
(stdout: ``subject outcome``, one line each; objects not converged also name the reason).
``--adopt`` takes live objects wearing our marks into the inventory (docs/apply.md). Without
``--kubeconfig`` the cluster comes from ``KUBECONFIG``, the Pod's ServiceAccount or
``~/.kube/config``. A real apply holds the Lease ``cu-system/cu-reconciler`` (the
controller's) while it writes: a second writer waits up to ``--lease-wait`` seconds, then
exits 2 naming the holder. Exit codes:

* 0: converged (or already in sync); ``N objects written`` counts objects whose
  resourceVersion changed.
* 2: a step failed before any write (invalid revision, refused plan, wrong identity, a field
  the apiserver would drop, the Lease held by another writer): nothing was written.
* 3: degraded: some objects failed, conflicted (not ours) or were skipped because an object
  they depend on failed; every other object converged, and the objects written are listed.
  Also 3: interrupted between two write waves, because another writer holds the Lease now
  (this process was paused or cut off past the renew deadline) or SIGTERM/SIGINT asked it
  to stop; the message names what was written and how many objects were not.

SIGTERM and SIGINT stop the apply before its next wave (the writes in flight finish), release
the Lease at once (the next writer need not wait for it to expire) and exit; a second signal
exits at once. The Lease also carries the record of the last apply (the last verified
revision and the safety limits in force, :mod:`reconciler.apply.record`), read before the
revision is verified and written after the apply.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import typer

from reconciler import errors, kube
from reconciler.apply import apply as applying
from reconciler.apply import lease as leases
from reconciler.apply import record as records
from reconciler.apply import writer as writers
from reconciler.cli import _app
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.model import observed as obs
from reconciler.observe import cluster

EXIT_DEGRADED = 3
"""Some objects did not converge; everything else did (``ReconciliationDegraded``)."""


@_app.app.command("apply")
def apply_command(
    path: str = typer.Argument(".", help="Repository directory."),
    rev: str | None = typer.Option(None, "--rev", help="Apply this Git revision."),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="The cluster to converge (default: KUBECONFIG, in-cluster)."
    ),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Server-side dry run of every write; store nothing."
    ),
    prune: bool = typer.Option(
        True, "--prune/--no-prune", help="Delete owned objects the target no longer holds."
    ),
    lease_wait: float = typer.Option(
        30.0, "--lease-wait", help="Seconds to wait for another writer to release the Lease."
    ),
    concurrency: int = typer.Option(
        8, "--concurrency", min=1, help="Parallel writes within one ordering wave."
    ),
    adopt: bool = typer.Option(
        False,
        "--adopt",
        help="Take live objects wearing our marks into the inventory (upgrading an install "
        "made before it, or leaving engine mode); check `cuctl plan` first.",
    ),
) -> None:
    """Converge the cluster: exit 0 converged, 2 failed (nothing written), 3 degraded."""
    try:
        api = cluster.connect(str(kubeconfig) if kubeconfig else None, context)
    except errors.ObserveError as exc:
        typer.echo(f"cuctl apply: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    kube.ensure_pool(api, concurrency + 2)  # the writers, the Lease renewal, the main thread
    identity = f"cuctl-apply@{socket.gethostname()}/{os.getpid()}"
    stop = _stop_on_signals()
    lease = leases.Lease(api, identity)
    with api, _one_writer(lease, lease_wait, dry_run=dry_run, stop=stop):
        outcome = pipeline.reconcile(
            pipeline.Request(path, rev, adopt=adopt),
            cluster.Cluster(api),
            writers.KubeWriter(api)
            if dry_run
            else leases.HeldWriter(writers.KubeWriter(api), lease),
            applying.ApplyOptions(
                dry_run=dry_run,
                prune=prune,
                concurrency=concurrency,
                checkpoint=None if dry_run else leases.checkpoint(lease, stop),
            ),
            memory=records.LeaseMemory(lease),
        )
    for diagnostic in outcome.diagnostics:
        typer.echo(diagnostic.render(), err=True)
    if outcome.plan is not None:
        for finding in outcome.plan.report.findings:
            if finding.code is obs.FindingCode.FENCE_BYPASS:
                typer.echo(f"cuctl apply: finding: {finding.render()}", err=True)
    if outcome.applied is not None:
        for entry in outcome.applied.entries:
            if entry.outcome is not applying.Outcome.UNCHANGED:
                why = f": {entry.reason}" if entry.reason else ""
                typer.echo(f"{entry.subject} {entry.outcome}{why}")
    if outcome.seconds:  # where the time went, as the controller logs it per reconcile
        steps = ", ".join(f"{step} {took:.2f}" for step, took in outcome.seconds)
        total = sum(took for _, took in outcome.seconds)
        typer.echo(f"cuctl apply: took {total:.2f} s ({steps})", err=True)
    revision = outcome.revision[:12] or "?"
    typer.echo(f"cuctl apply: {outcome.reason} at {revision}: {outcome.message}", err=True)
    if outcome.ok:
        raise typer.Exit(_app.EXIT_OK)
    partial = outcome.reason in (Reason.DEGRADED, Reason.INTERRUPTED)
    raise typer.Exit(EXIT_DEGRADED if partial else _app.EXIT_ERROR)


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT set the returned event (the apply stops before its next wave and
    releases the Lease); a second signal exits at once, the Lease released best-effort."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        typer.echo(
            f"cuctl apply: {signal.Signals(signum).name}: stopping before the next write wave",
            err=True,
        )

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)
    return stop


@contextlib.contextmanager
def _one_writer(
    lease: leases.Lease, wait: float, *, dry_run: bool, stop: threading.Event
) -> Iterator[None]:
    """Hold the shared Lease around a real apply; a dry run writes nothing and needs none."""
    if dry_run:
        yield
        return
    try:
        with leases.held(lease, wait, stop):
            yield
    except errors.ApplyError as exc:  # the pipeline reports its own; this is the Lease's
        typer.echo(f"cuctl apply: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc

"""The reconcile loop: when to run the pipeline, never what it does.

Level-based (controller-runtime's shape): there is one key, the ``CUSync``; watch events,
the Git poll, a push webhook and the periodic resync only mark it dirty, and the loop runs
one full reconcile (:func:`reconciler.controller.pipeline.reconcile`) for any number of
marks, after a short debounce. A commit's loaded desired state is kept
(:mod:`reconciler.controller.revisions`), so a cluster event re-reads only the cluster, and
the watch events of our own writes are not news (:mod:`reconciler.controller.echoes`).
A failed reconcile is retried with exponential backoff and full jitter; one the user must
fix (invalid commit, refused plan) is ``Stalled`` and waits for a new revision. Only the
Lease holder reconciles; writes are re-checked per object. Gaining or regaining the Lease,
and every (re-)list of a watch, asks for a reconcile: changes made while nobody led or while
a watch was down (an apiserver restart) are never reported as events.
The status, events and metrics are written only when they change, so an idle controller
writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from reconciler import errors, kube
from reconciler.apply import apply as applying
from reconciler.apply import lease as leases
from reconciler.apply import record as records
from reconciler.apply import writer as writers
from reconciler.controller import echoes, events, leader, metrics, mirror, pipeline, watches
from reconciler.controller import revisions as revs
from reconciler.controller import status as st
from reconciler.controller.reasons import Reason
from reconciler.observe import cluster

log = logging.getLogger("cu-reconciler.loop")


@dataclass(frozen=True, slots=True)
class Config:
    repo: str
    branch: str = "main"
    path: str = "."
    interval: float = 60.0
    """Git polling period, seconds."""
    resync: float = 600.0
    """Full reconcile period even with no news, seconds."""
    name: str = "default"
    cache: Path = Path("/tmp/cu-reconciler")
    debounce: float = 0.1
    """Wait after the first mark for more of a burst (what comes later marks again)."""
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    identity: str = ""
    cluster: str | None = None
    """A fleet repository's cluster (``clusters/<name>/``); None: the CUSync's spec.cluster."""


@dataclass
class Controller:
    api: ApiClient
    config: Config
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)
    stop: threading.Event = field(default_factory=threading.Event)
    _dirty: threading.Event = field(default_factory=threading.Event)
    _why: set[str] = field(default_factory=set)
    _changes: dict[watches.Change, None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _failures: int = 0
    _retry_at: float = 0.0
    _synced_at: float = 0.0
    _polled_at: float = 0.0
    _last_sha: str = ""
    _reconciled_sha: str = ""
    ready: bool = False
    _failed: bool = False

    def __post_init__(self) -> None:
        cfg = self.config
        # One pooled connection per long-lived watch, per parallel write, and the Lease's.
        kube.ensure_pool(self.api, len(watches.TARGETS) + applying.ApplyOptions().concurrency + 2)
        self.mirror = mirror.Mirror(cfg.repo, cfg.branch, cfg.cache, cfg.path)
        self.elector = leader.Elector(
            leases.Lease(self.api, cfg.identity or f"cu-reconciler-{uuid.uuid4().hex[:8]}"),
            self.stop,
        )
        self.recorder = events.Recorder(self.api, cfg.name, self.elector.lease.identity)
        self.echoes = echoes.Echoes()
        self.writer = leader.LeaderWriter(writers.KubeWriter(self.api), self.elector, self.echoes)
        self.revisions = revs.Revisions()

    # --- requests ------------------------------------------------------------------------

    def request(self, why: str) -> None:
        """Mark the key dirty (thread-safe); the loop reconciles once for many marks."""
        with self._lock:
            self._why.add(why)
        self._dirty.set()

    def changed(self, change: watches.Change) -> None:
        """A watch event; whether it is our own write's echo is decided before reconciling."""
        with self._lock:
            self._changes[change] = None
        self._dirty.set()

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Until :attr:`stop` is set: lead or stand by, and reconcile when asked."""
        self.elector.start()
        watching = leading = False
        while not self.stop.is_set():
            if not self.elector.leading:
                leading = False
                self.ready = True  # a standby is ready: it serves health and metrics
                self.stop.wait(0.5)
                continue
            if not watching:
                watches.start(self.api, self.changed, self.stop)
                watching = True
            if not leading:
                # Gaining or regaining the Lease: while we were not leading nobody may have
                # repaired anything (another replica, or none), so read everything afresh.
                leading = True
                self.request("leader")
            self._tick()
            now = time.monotonic()
            wait = min(
                self._poll_due(now),
                self._resync_due(now),
                self._retry_due(now),
                leases.RENEW_PERIOD,
            )
            if self._dirty.wait(timeout=max(0.0, wait)):
                self.stop.wait(self.config.debounce)  # let a burst of events settle
        log.info("stopped", extra={"identity": self.elector.lease.identity})

    def _poll_due(self, now: float) -> float:
        return self._polled_at + self.config.interval - now

    def _resync_due(self, now: float) -> float:
        return self._synced_at + self.config.resync - now

    def _retry_due(self, now: float) -> float:
        return self._retry_at - now if self._retry_at else float("inf")

    def _tick(self) -> None:
        now = time.monotonic()
        if self._poll_due(now) <= 0:
            self._polled_at = now
            self.request("poll")
        if self._resync_due(now) <= 0:
            self.request("resync")
        if self._retry_at and self._retry_due(now) <= 0:
            self._retry_at = 0.0
            self.request("retry")
        if not self._dirty.is_set():
            return
        with self._lock:
            why, self._why = self._why, set()
            changes, self._changes = list(self._changes), {}
            self._dirty.clear()
        news = self.echoes.news(changes)
        why |= {f"watch:{c.kind}" for c in news}
        if not why:
            log.debug("only our own writes changed", extra={"echoes": len(changes)})
            return
        try:
            self.reconcile_once(why)
        except Exception as exc:  # the API unreachable beyond retries, and the like
            log.warning("reconcile failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        """Exponential backoff with jitter in [d/2, d] (never an immediate hot loop)."""
        d = min(self.config.backoff_cap, self.config.backoff_base * 2 ** min(self._failures, 20))
        self._retry_at = time.monotonic() + d / 2 + random.random() * d / 2
        self._failures += 1

    # --- one reconcile -------------------------------------------------------------------

    def _fetch(self, why: set[str], rid: str) -> str | None:
        if self._last_sha and all(w.startswith("watch:") for w in why):
            return self._last_sha  # the cluster changed, not Git: reconcile what we have
        try:
            sha = self.mirror.fetch()
        except errors.SourceError as exc:
            self.metrics.git_fetch_errors.inc()
            log.warning("git fetch failed", extra={"reconcile": rid, "error": str(exc)})
            self._finish(
                pipeline.Outcome(Reason.SOURCE_FAILED, str(exc), revision=self._last_sha), rid, 0
            )
            return None
        self._last_sha = sha
        self.metrics.set_revision("desired", sha)
        if why == {"poll"} and sha == self._reconciled_sha and not self._retry_at:
            return None  # nothing new in Git and nothing else asked: no reconcile
        return sha

    def reconcile_once(self, why: set[str]) -> pipeline.Outcome | None:
        rid = uuid.uuid4().hex[:12]
        t0 = time.monotonic()
        sha = self._fetch(why, rid)
        if sha is None:
            return None
        sync = self._get_sync()
        spec = sync.get("spec") or {}
        generation = int((sync.get("metadata") or {}).get("generation") or 0)
        if spec.get("suspend"):
            log.info("suspended", extra={"reconcile": rid, "revision": sha})
            return None
        previous = sync.get("status") or {}
        if st.needs_progress(previous, sha, generation):
            self._write_status(sync, st.progressing(previous, sha, generation, _now()))
            sync = self._get_sync()
        log.info("reconcile", extra={"reconcile": rid, "revision": sha, "why": sorted(why)})
        outcome = pipeline.reconcile(
            pipeline.Request(
                self.mirror.source_path, sha, self.config.cluster or spec.get("cluster") or None
            ),
            cluster.Cluster(self.api),
            self.writer,
            # Between waves: still the leader (by the apiserver and the clock), not stopping.
            applying.ApplyOptions(checkpoint=leases.checkpoint(self.elector.lease, self.stop)),
            self.revisions,
            # The last verified revision and the limits in force, kept on the Lease: a
            # restarted controller (empty cache) reads them back.
            memory=records.LeaseMemory(self.elector.lease),
        )
        self._synced_at = time.monotonic()
        self._finish(outcome, rid, generation, sync, t0)
        return outcome

    def _finish(
        self,
        outcome: pipeline.Outcome,
        rid: str,
        generation: int,
        sync: Mapping[str, Any] | None = None,
        t0: float | None = None,
    ) -> None:
        result = outcome.reason.value
        if t0 is not None:
            self.metrics.reconcile_duration.labels(result).observe(time.monotonic() - t0)
        self.metrics.reconcile_total.labels(result).inc()
        written = outcome.applied.writes if outcome.applied else 0
        if outcome.applied is not None:
            for e in outcome.applied.entries:
                if e.outcome not in (applying.Outcome.UNCHANGED, applying.Outcome.DRY_RUN):
                    self.metrics.objects_applied.labels(e.subject.split("/")[0], e.outcome).inc()
        if outcome.ok or outcome.reason.stalled:
            self._failures, self._retry_at = 0, 0.0
            self._reconciled_sha = outcome.revision
        else:
            self._schedule_retry()
        extra = {
            "reconcile": rid,
            "revision": outcome.revision,
            "result": result,
            "written": written,
            "cached": outcome.cached,
            "seconds": dict(outcome.seconds),
        }
        if t0 is not None:
            extra["duration"] = round(time.monotonic() - t0, 3)
        (log.info if outcome.ok else log.warning)(outcome.message or result, extra=extra)
        if sync is None:
            sync = self._get_sync()
        previous = sync.get("status") or {}
        if not generation:
            generation = int(previous.get("observedGeneration") or 0)
        new = st.compute(previous, outcome, generation, _now())
        if new != previous:
            self._write_status(sync, new)
        if outcome.ok:
            self.metrics.set_revision("applied", outcome.revision)
            self.metrics.set_figures(new)
            age, alarms = self.mirror.factor_evidence(outcome.revision)
            self.metrics.factor_table_age.set(age)
            self.metrics.set_drift(alarms)
        self._events(outcome, written, new)
        self._failed = not outcome.ok
        self.ready = True

    def _events(self, outcome: pipeline.Outcome, written: int, status: Mapping[str, Any]) -> None:
        rec = self.recorder
        if outcome.ok:
            if written:
                rec.emit(
                    "Normal",
                    outcome.reason.value,
                    f"revision {outcome.revision[:12]}: {outcome.message}",
                )
            elif self._failed:  # a recovery is news; a steady state is not
                rec.emit("Normal", "Recovered", f"revision {outcome.revision[:12]} in sync")
            if outcome.plan is not None:
                preempted = [
                    d.claim for d in outcome.plan.report.decisions if d.status == "Preempted"
                ]
                if preempted:
                    rec.emit(
                        "Warning",
                        "Preempted",
                        f"{len(preempted)} claims preempted: {', '.join(preempted[:10])}",
                        action="Admit",
                    )
        elif outcome.reason in (Reason.PLAN_REFUSED, Reason.IDENTITY_REFUSED):
            rec.emit("Warning", outcome.reason.value, outcome.message, action="Refuse")
        else:
            err = status.get("lastError") or {}
            where = f"{err.get('file')}:{err.get('line')}: " if err.get("file") else ""
            rec.emit("Warning", outcome.reason.value, f"{where}{err.get('message', '')}")
        findings = status.get("fenceFindings") or []
        if findings:
            names = ", ".join(f"{f['namespace']}/{f['name']}" for f in findings[:10])
            rec.emit("Warning", "FenceFinding", f"{len(findings)}: {names}", action="Audit")

    # --- the CUSync object ---------------------------------------------------------------

    def _get_sync(self) -> dict[str, Any]:
        path = st.path(self.config.name)
        resp = kube.call(self.api, "GET", path)
        if resp.status == 404:
            body = {
                "apiVersion": f"{st.GROUP}/{st.VERSION}",
                "kind": st.KIND,
                "metadata": {"name": self.config.name},
                "spec": {
                    "git": {
                        "url": self.config.repo,
                        "branch": self.config.branch,
                        "path": self.config.path,
                    },
                    "interval": f"{int(self.config.interval)}s",
                    "suspend": False,
                    **({"cluster": self.config.cluster} if self.config.cluster else {}),
                },
            }
            resp = kube.call(self.api, "POST", st.COLLECTION, body=body)
            if resp.status == 409:
                resp = kube.call(self.api, "GET", path)
        if not resp.ok or not isinstance(resp.data, dict):
            raise errors.ApplyError(f"CUSync {self.config.name}: {resp.reason()}")
        self.recorder.uid = str((resp.data.get("metadata") or {}).get("uid") or "")
        return resp.data

    def _write_status(self, sync: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        body = {**sync, "status": dict(status)}
        resp = kube.call(self.api, "PUT", f"{st.path(self.config.name)}/status", body=body)
        if not resp.ok:  # 409: someone wrote in between; the next reconcile writes again
            log.warning("status not written", extra={"error": resp.reason()})


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

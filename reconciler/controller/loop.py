"""The reconcile loop: when to run the pipeline, never what it does.

Level-based (controller-runtime's shape): there is one key, the ``CUSync``; watch events,
the Git poll, a push webhook and the periodic resync only mark it dirty, and the loop runs
one full reconcile (:func:`reconciler.controller.pipeline.reconcile`) for any number of
marks, after a short debounce. A commit's loaded desired state is kept
(:mod:`reconciler.controller.revisions`), so a cluster event re-reads only the cluster, and
the watch events of our own writes are not news (:mod:`reconciler.controller.echoes`).
Guarantee windows (docs/peaks-and-troughs.md) change the desired guarantees with no event:
each reconcile plans for :attr:`Controller.clock` and the plan names the next window edge,
at which the loop asks for a ``window`` reconcile of the revision it has (RequeueAfter).

The CUSync is the API: each reconcile reads its spec first and follows it (Git URL, branch,
path, credentials Secret, interval, cluster, ``suspend``); the command-line flags only seed a
CUSync that does not exist yet. The CUSync itself is watched, so an edit takes effect at once.

Failures (client-go's workqueue semantics): every failed reconcile, whatever raised, ends
in the status (Ready=False with the step's reason, Reconciling while it is retried, Stalled
after :attr:`Config.stall_after` failures in a row or at once when the user must fix the
commit), an Event and ``cu_reconcile_total{result}``; it is retried after an exponential
delay with jitter, capped. While a retry is pending, polls, resyncs and cluster events wait
for it (no hot loop when Git or the apiserver is down); a push webhook or an edit of the
CUSync is tried at once. A suspended CUSync does nothing (no fetch) until it is resumed.
Only the Lease holder reconciles; writes are re-checked per object. Gaining or regaining the
Lease, and every (re-)list of a watch, asks for a reconcile: changes made while nobody led or
while a watch was down (an apiserver restart) are never reported as events. The status,
events and metrics are written only when they change, so an idle controller writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from reconciler import errors, kube
from reconciler.apply import apply as applying
from reconciler.apply import lease as leases
from reconciler.apply import record as records
from reconciler.apply import writer as writers
from reconciler.controller import (
    credentials,
    echoes,
    events,
    leader,
    metrics,
    mirror,
    outages,
    pipeline,
    watches,
)
from reconciler.controller import revisions as revs
from reconciler.controller import status as st
from reconciler.controller.reasons import Reason
from reconciler.observe import cluster, sources

log = logging.getLogger("cu-reconciler.loop")

URGENT = frozenset({"webhook", "leader", "stop", "spec"})
"""Requests that do not wait for a pending retry: a person pushed, or the spec changed."""
CUSYNC = watches.Target("CUSync", st.COLLECTION)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
MIN_INTERVAL = 1.0
OUTAGE_REPORT_EVERY = 5.0
"""Seconds between attempts to write an ended outage into the status (it must not wait for
the next resync, minutes away, when the first write after the outage failed)."""
EDGE_MARGIN = 0.5
"""Seconds after a guarantee window edge at which the controller reconciles."""


def parse_duration(text: str) -> float | None:
    """``90``, ``60s``, ``10m``, ``1h``, ``500ms`` → seconds (Go-like, one unit); None when
    not a positive duration (the CRD's pattern, ``cuctl run --interval``)."""
    m = _DURATION.match(str(text).strip())
    if not m or float(m.group(1)) <= 0:
        return None
    return float(m.group(1)) * _UNIT[m.group(2)]


@dataclass(frozen=True, slots=True)
class Config:
    repo: str
    """The flag's URL: may carry credentials, which never leave the process."""
    branch: str = "main"
    path: str = "."
    interval: float = 60.0
    """Git polling period, seconds (seed of ``spec.interval``)."""
    resync: float = 600.0
    """Full reconcile period even with no news, seconds."""
    name: str = "default"
    cache: Path = Path("/tmp/cu-reconciler")
    debounce: float = 0.1
    """Wait after the first mark for more of a burst (what comes later marks again)."""
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    stall_after: int = 5
    """Consecutive failures after which the CUSync is Stalled (kstatus Failed)."""
    identity: str = ""
    cluster: str | None = None
    """A fleet repository's cluster (``clusters/<name>/``); None: the CUSync's spec.cluster."""
    memo: bool = True
    """Keep the last reconcile's work for the next (:class:`pipeline.Memo`); False plans
    every event in full (the memo never changes a result; this is the comparison and the
    escape hatch)."""
    watch_cache: bool = True
    """Observe from the watches' stores (:mod:`reconciler.observe.informer`); False lists
    every collection on every reconcile (the comparison and the escape hatch)."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where the desired state comes from, as the CUSync spec says (URL without secrets)."""

    url: str
    branch: str
    path: str
    interval: float
    cluster: str | None
    secret: str | None = None
    """``spec.git.secretRef.name``: a Secret in the controller's namespace holding the
    credentials git uses (read at each fetch)."""


@dataclass
class Controller:
    api: ApiClient
    config: Config
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)
    stop: threading.Event = field(default_factory=threading.Event)
    _dirty: threading.Event = field(default_factory=threading.Event)
    _urgent: threading.Event = field(default_factory=threading.Event)
    _why: set[str] = field(default_factory=set)
    _changes: dict[watches.Change, None] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _failures: int = 0
    _retry_at: float = 0.0
    _synced_at: float = 0.0
    _polled_at: float = 0.0
    _last_sha: str = ""
    _reconciled: tuple[str, int] = ("", 0)
    """(revision, generation) of the last reconcile that ended (succeeded or stalled)."""
    _suspended: bool = False
    _outage_report_at: float = 0.0
    ready: bool = False
    _failed: bool = False
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    """The wall clock the guarantee windows are read with: tests give a clock of their own."""
    _edge_at: float = 0.0
    """Monotonic time of the next guarantee window edge (0: none): a reconcile then."""

    def __post_init__(self) -> None:
        cfg = self.config
        # One pooled connection per long-lived watch, per parallel write, and the Lease's.
        kube.ensure_pool(
            self.api, len(watches.stored()) + 1 + applying.ApplyOptions().concurrency + 2
        )
        self._seed_url, self._credentials = credentials.split(cfg.repo)
        self._url_credentials = self._credentials
        self.source = Source(self._seed_url, cfg.branch, cfg.path, cfg.interval, cfg.cluster)
        self.mirror = self._mirror(self.source)
        self.outages = outages.Outages(
            on_change=lambda up: self.metrics.apiserver_up.set(1 if up else 0),
            on_error=self.metrics.apiserver_errors.inc,
        )
        self.elector = leader.Elector(
            leases.Lease(self.api, cfg.identity or f"cu-reconciler-{uuid.uuid4().hex[:8]}"),
            self.stop,
            outages=self.outages,
        )
        self.recorder = events.Recorder(self.api, cfg.name, self.elector.lease.identity)
        self.echoes = echoes.Echoes()
        self.targets = watches.stored() if cfg.watch_cache else watches.TARGETS
        self.cache = (
            cluster.cached(self.api, watches.stores(self.targets)) if cfg.watch_cache else None
        )
        """What the watches keep; a reconcile reads it instead of listing everything."""
        if self.cache is not None:
            self.cache.counted = lambda src: self.metrics.observe_reads.labels(src).inc()
        self.writer = leader.LeaderWriter(
            writers.KubeWriter(self.api), self.elector, self.echoes, self.cache
        )
        self.revisions = revs.Revisions()
        self.memo = pipeline.Memo() if cfg.memo else None
        """The last reconcile's work: a re-list re-normalises only the slices whose uid or
        resourceVersion changed, the plan rebuilds only the nodes whose devices or live
        slices changed, the diff re-checks only pairs that are not as they were."""
        if self.cache is not None and self.memo is not None:
            for store in self.cache.stores.values():
                # Our live objects keep the planned spec they equal: one copy, not two.
                store.twin = self.memo.plan.planned

    def _mirror(
        self, source: Source, secret: credentials.Credentials | None = None
    ) -> mirror.Mirror:
        if source.url == self._seed_url:
            secret = self._credentials  # the flag's URL: its credentials apply
        return mirror.Mirror(source.url, source.branch, self.config.cache, source.path, secret)

    # --- requests ------------------------------------------------------------------------

    def request(self, why: str) -> None:
        """Mark the key dirty (thread-safe); the loop reconciles once for many marks."""
        with self._lock:
            self._why.add(why)
        if why in URGENT:
            self._urgent.set()
        self._dirty.set()

    def changed(self, change: watches.Change) -> None:
        """A watch event; whether it is our own write's echo is decided before reconciling."""
        with self._lock:
            self._changes[change] = None
        if change.kind == CUSYNC.kind:
            self._urgent.set()
        self._dirty.set()

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Until :attr:`stop` is set: lead or stand by, and reconcile when asked."""
        self.elector.start()
        watching = leading = False
        while not self.stop.is_set():
            lease = self.elector.lease
            if lease.last_renewed and not lease.valid() and not self.outages.down:
                # The renewals are overdue (each may wait on the transport's retries): say so
                # now; the elector reports when the apiserver answers again.
                self.outages.failed(f"Lease not renewed for {leases.RENEW_DEADLINE:.0f}s")
            if not self.elector.leading:
                leading = False
                self.ready = True  # a standby is ready: it serves health and metrics
                self.stop.wait(0.5)
                continue
            if not watching:
                stores = self.cache.stores if self.cache is not None else None
                watches.start(self.api, self.changed, self.stop, self.targets, stores)
                watches.start(self.api, self.changed, self.stop, targets=(CUSYNC,))
                watching = True
            if not leading:
                # Gaining or regaining the Lease: while we were not leading nobody may have
                # repaired anything (another replica, or none), so read everything afresh.
                leading = True
                self.request("leader")
            self._tick()
            now = time.monotonic()
            holding = self._holding(now)
            due = [
                self._retry_due(now),
                leases.RENEW_PERIOD,
                self._outage_due(now),
                self._edge_due(now),
            ]
            if not holding:
                due += [self._poll_due(now), self._resync_due(now)]
            elif self._suspended:
                due.append(self._resync_due(now))
            # While a retry (or a suspension) holds the key, only urgent news wakes the loop.
            flag = self._urgent if holding else self._dirty
            if flag.wait(timeout=max(0.0, min(due))):
                self.stop.wait(self.config.debounce)  # let a burst of events settle
        log.info("stopped", extra={"identity": self.elector.lease.identity})

    def _holding(self, now: float) -> bool:
        return self._suspended or bool(self._retry_at and now < self._retry_at)

    def _poll_due(self, now: float) -> float:
        if self._suspended:
            return float("inf")
        return self._polled_at + self.source.interval - now

    def _resync_due(self, now: float) -> float:
        return self._synced_at + self.config.resync - now

    def _retry_due(self, now: float) -> float:
        return self._retry_at - now if self._retry_at else float("inf")

    def _outage_due(self, now: float) -> float:
        if not self.outages.pending or self.outages.down:
            return float("inf")
        return self._outage_report_at - now

    def _edge_due(self, now: float) -> float:
        return self._edge_at - now if self._edge_at else float("inf")

    def _next_edge(self, outcome: pipeline.Outcome, planned_at: dt.datetime) -> None:
        """Requeue at the next guarantee window edge (controller-runtime's RequeueAfter):
        the guarantees change then with no commit and no event to wake us."""
        if outcome.plan is None:
            return  # no plan, no schedule read: the retry plans again
        windows = outcome.plan.report.windows
        self.metrics.set_windows(windows)
        edge = windows.next_edge
        if edge is None:
            self._edge_at = 0.0
            return
        # A little after the edge: the plan then is sure to see the new window.
        wait = (edge - planned_at).total_seconds() + EDGE_MARGIN
        self._edge_at = time.monotonic() + max(0.0, wait)
        log.info("next guarantee window edge", extra={"at": edge.isoformat(), "in": round(wait, 1)})

    def _tick(self) -> None:
        now = time.monotonic()
        if self._retry_at and self._retry_due(now) <= 0:
            self._retry_at = 0.0
            self.request("retry")
        holding = self._holding(now)
        if not holding and self._poll_due(now) <= 0:
            self._polled_at = now
            self.request("poll")
        if self._resync_due(now) <= 0 and not (self._retry_at and holding):
            self.request("resync")
        if self._outage_due(now) <= 0:  # an ended outage not in the status yet: report it
            self._outage_report_at = now + OUTAGE_REPORT_EVERY
            self.request("outage")
        if self._edge_at and self._edge_due(now) <= 0:
            self._edge_at = 0.0
            self.request("window")
        if not self._dirty.is_set():
            return
        self._urgent.clear()
        with self._lock:
            why, changes = set(self._why), list(self._changes)
        news = self.echoes.news(changes)
        urgent = bool(why & URGENT) or any(c.kind == CUSYNC.kind for c in news)
        if holding and not urgent and "resync" not in why:
            with self._lock:  # the cluster's news waits for the retry, as one mark
                for c in changes:
                    self._changes.pop(c, None)
                if news:
                    self._why.add("watch:held")
                if not self._changes and not self._why:
                    self._dirty.clear()
            return
        with self._lock:
            for c in changes:
                self._changes.pop(c, None)
            self._why -= why
            if not self._changes and not self._why:
                self._dirty.clear()
        why |= {f"watch:{c.kind}" for c in news}
        if not why:
            log.debug("only our own writes changed", extra={"echoes": len(changes)})
            return
        if not why <= {"poll", "outage"}:
            # An attempt restarts the resync period (a failed or suspended one too: no hot
            # loop). A poll that finds nothing new reconciles nothing, so it must not: with
            # polls more frequent than resyncs, the resync would never come (reconcile_once
            # restarts the period when a poll does find something).
            self._synced_at = time.monotonic()
        rid = uuid.uuid4().hex[:12]
        try:
            self.reconcile_once(why, rid)
        except Exception as exc:  # whatever raised: reported like any failure, then backoff
            self._crashed(exc, rid)

    def _crashed(self, exc: Exception, rid: str) -> None:
        """A reconcile that raised (the apiserver unreachable beyond retries, a bug): the same
        status, Event and metric as any failure, the status written if the apiserver lets us."""
        transport = isinstance(exc, (*kube.TRANSIENT_ERRORS, errors.ApplyError))
        reason = Reason.API_UNAVAILABLE if transport else Reason.INTERNAL_ERROR
        text = credentials.redact(f"{type(exc).__name__}: {exc}")[:1000]
        if isinstance(exc, kube.TRANSIENT_ERRORS):
            self.outages.failed(text)
        try:
            self._finish(pipeline.Outcome(reason, text, revision=self._last_sha), rid, 0)
        except Exception as again:  # never let the loop die: logged, retried with backoff
            log.warning(
                "failure not reported",
                extra={"reconcile": rid, "error": credentials.redact(repr(again))[:300]},
            )

    def _schedule_retry(self) -> None:
        """Exponential backoff with jitter in [d/2, d], capped (never an immediate hot loop)."""
        self._failures += 1
        exponent = min(self._failures - 1, 20)
        d = min(self.config.backoff_cap, self.config.backoff_base * 2**exponent)
        self._retry_at = time.monotonic() + d / 2 + random.random() * d / 2
        self.metrics.consecutive_failures.set(self._failures)

    # --- one reconcile -------------------------------------------------------------------

    def _follow(self, spec: Mapping[str, Any], rid: str) -> None:
        """Make the spec the source in force (a new clone target, branch, path, interval)."""
        cfg = self.config
        git = spec.get("git") if isinstance(spec.get("git"), Mapping) else {}
        assert isinstance(git, Mapping)
        # A URL someone wrote with credentials in the spec: used, but never echoed or stored.
        url, secret = credentials.split(str(git.get("url") or self._seed_url))
        if url == self._seed_url and secret is None:
            secret = self._credentials  # the flag's URL: its credentials apply
        self._url_credentials = secret
        interval = parse_duration(str(spec.get("interval") or "")) or cfg.interval
        ref = git.get("secretRef") if isinstance(git.get("secretRef"), Mapping) else {}
        assert isinstance(ref, Mapping)
        source = Source(
            url,
            str(git.get("branch") or cfg.branch),
            str(git.get("path") or cfg.path),
            max(MIN_INTERVAL, interval),
            cfg.cluster or spec.get("cluster") or None,
            str(ref.get("name") or "") or None,
        )
        if source == self.source:
            return
        where = (source.url, source.branch, source.path)
        if where != (self.source.url, self.source.branch, self.source.path):
            log.info(
                "source changed",
                extra={
                    "reconcile": rid,
                    "url": credentials.redact(source.url),
                    "branch": source.branch,
                    "path": source.path,
                },
            )
            self.mirror.close()
            self.mirror = self._mirror(source, secret)
            self._last_sha, self._reconciled = "", ("", 0)
        self.source = source

    def _fetch(self, why: set[str], rid: str, sync: Mapping[str, Any], gen: int) -> str | None:
        if self._last_sha and all(w.startswith("watch:") or w == "window" for w in why):
            # The cluster or the clock changed, not Git: reconcile what we have.
            return self._last_sha
        try:
            self.mirror.authenticate(self._git_credentials())
            sha = self.mirror.fetch()
        except errors.SourceError as exc:
            self.metrics.git_fetch_errors.inc()
            text = str(exc)
            if self.source.secret and "spec.git.secretRef" not in text:
                text += f" (credentials from {_secret_name(self.source.secret)})"
            self._finish(
                pipeline.Outcome(Reason.SOURCE_FAILED, text, revision=self._last_sha),
                rid,
                gen,
                sync,
            )
            return None
        self._last_sha = sha
        self.metrics.set_revision("desired", sha)
        if why <= {"poll"} and (sha, gen) == self._reconciled and not self._failures:
            return None  # nothing new in Git or the spec, and nothing else asked
        return sha

    def _git_credentials(self) -> credentials.Credentials | None:
        """The credentials in force: the Secret ``spec.git.secretRef`` names (read now, so a
        rotation counts at the next fetch), else those of the URL. A Secret that cannot be
        read or holds no usable keys is a source failure naming it (never its values)."""
        name = self.source.secret
        if not name:
            return self._url_credentials
        where = _secret_name(name)
        path = f"/api/v1/namespaces/{leases.NAMESPACE}/secrets/{name}"
        resp = kube.call(self.api, "GET", path)
        if resp.status == 404:
            raise errors.SourceError(
                f"{where} (spec.git.secretRef) not found: create it with the keys username and "
                "password, or bearerToken, or identity and known_hosts (docs/controller.md)"
            )
        if resp.status == 403:
            raise errors.SourceError(
                f"{where} (spec.git.secretRef): the controller may not read it: add its name "
                "to the resourceNames of the Role cu-reconciler-git-secret (deploy/rbac.yaml)"
            )
        if not resp.ok or not isinstance(resp.data, dict):
            raise errors.SourceError(f"{where} (spec.git.secretRef): {resp.reason()}")
        try:
            return credentials.from_secret(f"{where} (spec.git.secretRef)", resp.data.get("data"))
        except ValueError as exc:
            raise errors.SourceError(str(exc)) from exc

    def reconcile_once(self, why: set[str], rid: str = "") -> pipeline.Outcome | None:
        rid = rid or uuid.uuid4().hex[:12]
        t0 = time.monotonic()
        sync = self._get_sync()
        self.outages.succeeded()
        sync = self._report_outage(sync)
        if why <= {"outage"}:
            return None  # only the outage to report: no fetch, no plan
        spec = sync.get("spec") or {}
        generation = int((sync.get("metadata") or {}).get("generation") or 0)
        self._follow(spec, rid)
        if spec.get("suspend") is True:
            self._suspend(sync, generation, rid)
            return None
        if self._suspended:
            self._suspended = False
            self.metrics.suspended.set(0)
            self.recorder.emit("Normal", "Resumed", "spec.suspend is false: reconciling again")
        sha = self._fetch(why, rid, sync, generation)
        if sha is None:
            return None
        self._synced_at = time.monotonic()
        previous = sync.get("status") or {}
        if st.needs_progress(previous, sha, generation):
            self._write_status(sync, st.progressing(previous, sha, generation, _now()))
            sync = self._get_sync()
        log.info("reconcile", extra={"reconcile": rid, "revision": sha, "why": sorted(why)})
        planned_at = self.clock()
        outcome = pipeline.reconcile(
            pipeline.Request(self.mirror.source_path, sha, self.source.cluster, now=planned_at),
            self._observed_source(why),
            self.writer,
            # Between waves: still the leader (by the apiserver and the clock), not stopping.
            applying.ApplyOptions(checkpoint=leases.checkpoint(self.elector.lease, self.stop)),
            self.revisions,
            # The last verified revision and the limits in force, kept on the Lease: a
            # restarted controller (empty cache) reads them back.
            memory=records.LeaseMemory(self.elector.lease),
            memo=self.memo,
        )
        if self.cache is not None:
            for store in self.cache.stores.values():
                store.adopt()
        self._next_edge(outcome, planned_at)
        self._finish(outcome, rid, generation, sync, t0)
        return outcome

    def _observed_source(self, why: set[str]) -> sources.Source:
        """The watch cache; a full list when leading anew, on the periodic resync, or with
        no cache (a list is the reference the cache must equal, so it is also the repair)."""
        if self.cache is None or why & {"leader", "resync"}:
            self.metrics.observe_reads.labels("list").inc()
            return cluster.Cluster(self.api)
        return self.cache

    @staticmethod
    def _stalled(status: Mapping[str, Any]) -> bool:
        return any(
            c.get("type") == "Stalled" and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )

    def _suspend(self, sync: Mapping[str, Any], generation: int, rid: str) -> None:
        if not self._suspended:
            log.info("suspended", extra={"reconcile": rid})
            self.recorder.emit("Normal", "Suspended", "spec.suspend is true: nothing is applied")
        self._suspended = True
        self._retry_at, self._failures = 0.0, 0
        self.metrics.suspended.set(1)
        self.metrics.consecutive_failures.set(0)
        previous = sync.get("status") or {}
        new = st.suspended(previous, generation)
        if new != previous:
            self._write_status(sync, new)
        self.ready = True

    def _report_outage(self, sync: dict[str, Any]) -> dict[str, Any]:
        """An apiserver outage that ended: into the status and an Event, once. Returns the
        CUSync as stored (its new resourceVersion: the next status write must carry it)."""
        found = self.outages.take()
        if found is None:
            return sync
        self.metrics.apiserver_outage_seconds.set(found.seconds)
        previous = sync.get("status") or {}
        if not self._write_status(sync, st.outage(previous, found.record())):
            self.outages.put_back(found)
            return sync
        self.recorder.emit("Warning", "APIServerUnavailable", found.message(), action="Observe")
        return self._get_sync()

    def _finish(
        self,
        outcome: pipeline.Outcome,
        rid: str,
        generation: int,
        sync: Mapping[str, Any] | None = None,
        t0: float | None = None,
    ) -> None:
        outcome = replace(outcome, message=credentials.redact(outcome.message))
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
            self.metrics.consecutive_failures.set(0)
            self._reconciled = (outcome.revision, generation)
        else:
            self._schedule_retry()
        extra: dict[str, Any] = {
            "reconcile": rid,
            "revision": outcome.revision,
            "result": result,
            "written": written,
            "cached": outcome.cached,
            "seconds": dict(outcome.seconds),
        }
        if not outcome.ok and not outcome.reason.stalled:
            extra["failures"] = self._failures
            extra["retry_in"] = round(max(0.0, self._retry_at - time.monotonic()), 1)
        if t0 is not None:
            extra["duration"] = round(time.monotonic() - t0, 3)
        (log.info if outcome.ok else log.warning)(outcome.message or result, extra=extra)
        if sync is None:
            try:
                sync = self._get_sync()
            except Exception as exc:  # the apiserver is down: the next reconcile writes it
                log.warning(
                    "status not written",
                    extra={"reconcile": rid, "error": credentials.redact(repr(exc))[:300]},
                )
                return
        previous = sync.get("status") or {}
        if not generation:
            generation = int(previous.get("observedGeneration") or 0)
        failures = 0 if outcome.ok else self._failures
        new = st.compute(
            previous,
            outcome,
            generation,
            _now(),
            failures=failures,
            stall_after=self.config.stall_after,
        )
        if new != previous:
            self._write_status(sync, new)
        self.metrics.set_conditions(new)
        if outcome.plan is not None:
            self.metrics.set_audit(new)
        if outcome.ok:
            self.metrics.set_revision("applied", outcome.revision)
            self.metrics.set_figures(new)
            self.metrics.set_costs(outcome.costs)
            age, alarms = self.mirror.factor_evidence(outcome.revision)
            self.metrics.factor_table_age.set(age)
            self.metrics.set_drift(alarms)
        self._events(outcome, written, new, previous)
        self._failed = not outcome.ok
        self.ready = True

    def _events(
        self,
        outcome: pipeline.Outcome,
        written: int,
        status: Mapping[str, Any],
        previous: Mapping[str, Any],
    ) -> None:
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
        stalled = [c for c in status.get("conditions") or () if c.get("type") == "Stalled"]
        if stalled and not outcome.reason.stalled and not self._stalled(previous):
            rec.emit("Warning", "Stalled", str(stalled[0].get("message") or ""))
        findings = status.get("fenceFindings") or []
        if findings and outcome.plan is not None:
            names = ", ".join(f"{f['namespace']}/{f['name']}" for f in findings[:10])
            rec.emit("Warning", "FenceFinding", f"{len(findings)}: {names}", action="Audit")
        shortfalls = status.get("shortfalls") or []
        if shortfalls and outcome.plan is not None:
            more = f" (and {len(shortfalls) - 5} more)" if len(shortfalls) > 5 else ""
            rec.emit(
                "Warning",
                "PromiseNotDeliverable",
                "; ".join(str(x["message"]) for x in shortfalls[:5]) + more,
                action="Admit",
            )

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
                        "url": self._seed_url,
                        "branch": self.config.branch,
                        "path": self.config.path,
                    },
                    "interval": _duration(self.config.interval),
                    "suspend": False,
                    **({"cluster": self.config.cluster} if self.config.cluster else {}),
                },
            }
            resp = kube.call(self.api, "POST", st.COLLECTION, body=body)
            if resp.status == 409:
                resp = kube.call(self.api, "GET", path)
            elif resp.ok and isinstance(resp.data, dict):
                self.echoes.wrote(resp.data)
        if not resp.ok or not isinstance(resp.data, dict):
            raise errors.ApplyError(f"CUSync {self.config.name}: {resp.reason()}")
        self.recorder.uid = str((resp.data.get("metadata") or {}).get("uid") or "")
        return resp.data

    def _write_status(self, sync: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        body = {**sync, "status": dict(status)}
        try:
            resp = kube.call(self.api, "PUT", f"{st.path(self.config.name)}/status", body=body)
        except Exception as exc:  # transport gave up: the next reconcile writes it again
            self.outages.failed(repr(exc))
            log.warning("status not written", extra={"error": credentials.redact(repr(exc))})
            return False
        if not resp.ok:  # 409: someone wrote in between; the next reconcile writes again
            log.warning("status not written", extra={"error": resp.reason()})
            return False
        if isinstance(resp.data, dict):
            self.echoes.wrote(resp.data)
        return True


def _secret_name(name: str) -> str:
    return f"Secret {leases.NAMESPACE}/{name}"


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(seconds * 1000)}ms"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

"""One writer at a time: a ``coordination.k8s.io/v1`` Lease for ``cuctl apply`` and the controller.

Both take the same Lease (``cu-system/cu-reconciler``), so a manual apply and a running
controller, or two controller replicas, never write concurrently. The algorithm is
client-go's leader election (``tools/leaderelection``): a holder renews ``renewTime`` every
few seconds; a candidate may take the Lease only once it has seen the same record unchanged
for ``leaseDurationSeconds`` *by its own clock* (so clock skew between machines does not
matter), or when the record names no holder (released). Every write is an update with the
record's ``resourceVersion``, so of two candidates exactly one wins.

A holder also checks, before each write wave (:func:`checkpoint`), that the apiserver still
names it and that its own renewal is younger than :data:`RENEW_DEADLINE` by the clock: a
process paused (SIGSTOP, a long GC, a frozen VM) past the deadline may find another holder,
and then stops with :class:`LeaseLostError` instead of writing (issue 19). The Lease also
carries the record of the last apply (:mod:`reconciler.apply.record`) as annotations, which
renewals keep and only the holder changes (:meth:`Lease.annotate`).

Why not ``kubernetes.leaderelection``: its ``run()`` waits forever for the lock (a CLI needs a
bounded wait and an error naming the holder), cannot be stopped or release the Lease on
exit, writes ``renewTime`` as a naive local time, and goes through the typed models without
our transport's retries. This module keeps its algorithm and adds those.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient

from reconciler import errors, kube
from reconciler.apply import writer as writers

NAME = "cu-reconciler"
NAMESPACE = "cu-system"
DURATION = 15
"""Seconds a holder keeps the Lease without renewing (client-go's default)."""
RENEW_PERIOD = 2.0
"""Seconds between renewals and between tries of a candidate (client-go's retryPeriod)."""
RENEW_DEADLINE = 10.0
"""A holder that could not renew for this long stops writing (before others may take over)."""


CALL_TIMEOUT = 5.0
CALL_RETRY = kube.RetryPolicy(attempts=2, cap=1.0)
"""One Lease request gives up within about 11 s (client-go's RenewDeadline is 10 s): a renewal
that cannot finish in time is a failed renewal, reported at once (the apiserver outage it
means must not hide behind the transport's default retries, up to a minute with etcd down)
and tried again at the next period."""


class LeaseLostError(errors.WriterStopped):
    """This process held the Lease and does not any more (or cannot tell that it does)."""


class LeaseHeldError(errors.ApplyError):
    """Another identity holds the Lease and did not release it within the wait."""

    def __init__(self, holder: str, namespace: str, name: str, waited: float) -> None:
        self.holder = holder
        super().__init__(
            f"Lease {namespace}/{name} is held by {holder!r} (waited {waited:.0f}s): another "
            "apply or the controller is writing; retry later, or stop that writer "
            "(`kubectl -n cu-system get lease cu-reconciler` shows the holder)"
        )


@dataclass(frozen=True, slots=True)
class Record:
    holder: str
    duration: int
    renew_time: str
    transitions: int
    resource_version: str
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        meta = lease.get("metadata") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or DURATION),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
            annotations=tuple(
                sorted((str(k), str(v)) for k, v in (meta.get("annotations") or {}).items())
            ),
        )

    def renewed(self) -> dt.datetime | None:
        """``renewTime`` as a UTC time (None when absent or unreadable)."""
        try:
            return dt.datetime.strptime(self.renew_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=dt.UTC
            )
        except ValueError:
            return None


def _micro_time(now: dt.datetime) -> str:
    """A ``metav1.MicroTime``: RFC 3339, UTC, microseconds."""
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Lease:
    """A candidate for (or the holder of) one Lease object."""

    api: ApiClient
    identity: str
    name: str = NAME
    namespace: str = NAMESPACE
    duration: int = DURATION
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    _observed: Record | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)
    _acquired_at: str = field(default="", init=False)
    last_renewed: float = field(default=0.0, init=False)
    """Monotonic time of the last successful write by this holder (0 = never)."""
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    """One read-modify-write at a time (the renewal thread, a checkpoint, an annotation)."""

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    @property
    def holder(self) -> str:
        """The holder as last observed ("" when none or not yet read)."""
        return self._observed.holder if self._observed else ""

    def _body(self, record: Record | None, *, holder: str, duration: int) -> dict[str, Any]:
        now = _micro_time(self.wall())
        if record is None or record.holder != self.identity or not self._acquired_at:
            self._acquired_at = now
        transitions = record.transitions if record else 0
        if record is not None and record.holder and record.holder != holder:
            transitions += 1
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": duration,
                "acquireTime": self._acquired_at,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }
        if record is not None:
            body["metadata"]["resourceVersion"] = record.resource_version
            if record.annotations:  # the record of the last apply survives renewals
                body["metadata"]["annotations"] = dict(record.annotations)
        return body

    def _read(self) -> Record | None:
        resp = self._call("GET", self.path)
        if resp.status == 404:
            return None
        if not resp.ok or not isinstance(resp.data, dict):
            raise errors.ApplyError(f"GET {self.path}: {resp.reason()}", subject="Lease")
        record = Record.of(resp.data)
        if self._observed is None or record != self._observed:
            self._observed, self._observed_at = record, self.clock()
        return record

    def _call(self, method: str, path: str, body: Any = None) -> kube.Response:
        try:
            return kube.call(
                self.api, method, path, body=body, timeout=CALL_TIMEOUT, retry=CALL_RETRY
            )
        except Exception as exc:  # transport errors after retries: translate once
            raise errors.ApplyError(f"{method} {path}: {exc}", subject="Lease") from exc

    def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease; True when this identity holds it now."""
        with self._lock:
            return self._try_acquire()

    def _try_acquire(self) -> bool:
        record = self._read()
        if record is None:
            collection = self.path.rsplit("/", 1)[0]
            body = self._body(None, holder=self.identity, duration=self.duration)
            resp = self._call("POST", collection, body)
            if resp.status == 409:
                return False
            return self._won(resp)
        mine = record.holder == self.identity
        expired = self.clock() - self._observed_at >= record.duration
        if not mine and record.holder and not expired:
            return False
        body = self._body(record, holder=self.identity, duration=self.duration)
        resp = self._call("PUT", self.path, body)
        if resp.status == 409:  # someone else wrote in between: re-read next time
            return False
        return self._won(resp)

    def _won(self, resp: kube.Response) -> bool:
        if not resp.ok or not isinstance(resp.data, dict):
            raise errors.ApplyError(f"write {self.path}: {resp.reason()}", subject="Lease")
        self._observed, self._observed_at = Record.of(resp.data), self.clock()
        self.last_renewed = self.clock()
        return True

    def acquire(
        self,
        wait: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        stop: threading.Event | None = None,
    ) -> None:
        """Take the Lease within ``wait`` seconds or raise :class:`LeaseHeldError`
        (:class:`reconciler.errors.WriterStopped` when ``stop`` is set while waiting)."""
        start = self.clock()
        while not self.try_acquire():
            waited = self.clock() - start
            if waited >= wait:
                raise LeaseHeldError(self.holder, self.namespace, self.name, waited)
            pause = min(RENEW_PERIOD, max(0.0, wait - waited))
            if stop is not None:
                if stop.wait(pause):
                    raise errors.WriterStopped(
                        f"stopped while waiting for Lease {self.namespace}/{self.name} "
                        f"(held by {self.holder!r}); nothing was written"
                    )
            else:
                sleep(pause)

    def release(self, patience: float = 10.0) -> None:
        """Give the Lease up at once (holder cleared), if this identity still holds it.

        A restarting apiserver refuses for a few seconds (connection refused, then 403 while
        its authorizer catches up): retried for up to ``patience`` seconds, since a Lease left
        held makes the next writer wait out :data:`DURATION`."""
        deadline = self.clock() + patience
        with self._lock:
            while True:
                try:
                    record = self._read()
                    if record is None or record.holder != self.identity:
                        break
                    resp = self._call("PUT", self.path, self._body(record, holder="", duration=1))
                    if resp.ok:
                        break
                except errors.ApplyError:
                    pass
                if self.clock() >= deadline:
                    break
                time.sleep(0.5)
            self.last_renewed = 0.0

    def annotate(self, values: dict[str, str]) -> None:
        """Set annotations on the Lease, as its holder (raise LeaseLostError otherwise)."""
        with self._lock:
            for _ in range(5):
                record = self._read()
                if record is None or record.holder != self.identity:
                    raise self._lost(record, "before recording the apply")
                body = self._body(record, holder=self.identity, duration=self.duration)
                body["metadata"]["annotations"] = {**dict(record.annotations), **values}
                resp = self._call("PUT", self.path, body)
                if resp.status == 409:
                    continue
                self._won(resp)
                return
            raise errors.ApplyError("kept conflicting with another write", subject="Lease")

    def annotations(self) -> dict[str, str]:
        """The Lease's annotations as stored now ({} when there is no Lease)."""
        with self._lock:
            record = self._read()
        return dict(record.annotations) if record is not None else {}

    def _lost(self, record: Record | None, when: str) -> LeaseLostError:
        holder = repr(record.holder) if record is not None and record.holder else "nobody"
        return LeaseLostError(
            f"Lease {self.namespace}/{self.name} is held by {holder}, not by {self.identity!r}, "
            f"{when}: another writer took over while this one was paused or cut off"
        )

    def confirm(self, when: str = "before the next write") -> None:
        """Raise :class:`LeaseLostError` unless this identity still holds the Lease: the
        apiserver names it, and its last renewal is younger than :data:`RENEW_DEADLINE`
        by this process's clock and than the lease duration by ``renewTime`` (else it is
        renewed first, with the record's resourceVersion, so nobody took it in between)."""
        with self._lock:
            try:
                record = self._read()
            except errors.ApplyError as exc:
                if self.valid():
                    return  # unreadable for now, but renewed recently enough to be ours
                raise LeaseLostError(
                    f"Lease {self.namespace}/{self.name} cannot be read ({exc}) and was last "
                    f"renewed {self.clock() - self.last_renewed:.0f}s ago, {when}"
                ) from exc
            if record is None or record.holder != self.identity:
                raise self._lost(record, when)
            renewed = record.renewed()
            stale = renewed is None or (self.wall() - renewed).total_seconds() >= record.duration
            if (stale or not self.valid()) and not self._try_acquire():
                raise self._lost(self._observed, when)

    def valid(self) -> bool:
        """Whether this holder renewed recently enough that nobody else can hold it."""
        return self.last_renewed > 0 and self.clock() - self.last_renewed < RENEW_DEADLINE


def checkpoint(lease: Lease, stop: threading.Event | None = None) -> Callable[[], None]:
    """What to call before each write wave (``ApplyOptions.checkpoint``): raise
    :class:`reconciler.errors.WriterStopped` when asked to stop, or when the Lease is lost."""

    def check() -> None:
        if stop is not None and stop.is_set():
            raise errors.WriterStopped("stopped by a signal (SIGTERM or SIGINT)")
        lease.confirm()

    return check


@contextlib.contextmanager
def held(lease: Lease, wait: float, stop: threading.Event | None = None) -> Iterator[Lease]:
    """Hold ``lease`` for the block: acquire (bounded), renew in the background, release."""
    lease.acquire(wait, stop=stop)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(RENEW_PERIOD):
            with contextlib.suppress(errors.ApplyError):
                lease.try_acquire()

    thread = threading.Thread(target=renew, name="lease-renew", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(timeout=15)
        lease.release()


@dataclass(frozen=True, slots=True)
class HeldWriter:
    """A :class:`reconciler.apply.writer.Writer` that sends a write only while ``lease`` is
    held by this process's clock (no request: the renewal thread keeps it fresh).

    Another writer can take the Lease only after seeing it unrenewed for :data:`DURATION`,
    longer than :data:`RENEW_DEADLINE`; so a process paused long enough to lose the Lease
    finds it invalid at its very next write, even in the middle of a wave (that object is
    ``failed``, not sent), and :func:`checkpoint` stops the apply before the next wave.
    """

    inner: writers.Writer
    lease: Lease

    def _check(self, obj: Mapping[str, Any]) -> None:
        if self.lease.holder != self.lease.identity:
            raise LeaseLostError(
                f"not sent: Lease {self.lease.namespace}/{self.lease.name} is held by "
                f"{self.lease.holder!r}, not by this writer",
                subject=writers.subject_of(obj),
            )
        if not self.lease.valid():
            ago = self.lease.clock() - self.lease.last_renewed
            raise LeaseLostError(
                f"not sent: Lease {self.lease.namespace}/{self.lease.name} last renewed by "
                f"this writer {ago:.0f}s ago (deadline {RENEW_DEADLINE:.0f}s)",
                subject=writers.subject_of(obj),
            )

    def whoami(self) -> str:
        return self.inner.whoami()

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not dry_run:
            self._check(obj)
        return self.inner.apply(obj, dry_run=dry_run)

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        if not dry_run:
            self._check(obj)
        return self.inner.delete(obj, dry_run=dry_run)

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not dry_run:
            self._check(obj)
        return self.inner.replace(obj, dry_run=dry_run)

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        if not dry_run:
            self._check(live)
        return self.inner.set_managed_fields(live, fields, dry_run=dry_run)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.inner.get(obj)

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.inner.holders(kind)

"""One writer at a time: a ``coordination.k8s.io/v1`` Lease for ``cuctl apply`` and the controller.

Both take the same Lease (``cu-system/cu-reconciler``), so a manual apply and a running
controller, or two controller replicas, never write concurrently. The algorithm is
client-go's leader election (``tools/leaderelection``): a holder renews ``renewTime`` every
few seconds; a candidate may take the Lease only once it has seen the same record unchanged
for ``leaseDurationSeconds`` *by its own clock* (so clock skew between machines does not
matter), or when the record names no holder (released). Every write is an update with the
record's ``resourceVersion``, so of two candidates exactly one wins.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient

from reconciler import errors, kube

NAME = "cu-reconciler"
NAMESPACE = "cu-system"
DURATION = 15
"""Seconds a holder keeps the Lease without renewing (client-go's default)."""
RENEW_PERIOD = 2.0
"""Seconds between renewals and between tries of a candidate (client-go's retryPeriod)."""
RENEW_DEADLINE = 10.0
"""A holder that could not renew for this long stops writing (before others may take over)."""


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

    @classmethod
    def of(cls, lease: dict[str, Any]) -> Record:
        spec = lease.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or DURATION),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((lease.get("metadata") or {}).get("resourceVersion") or ""),
        )


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
            return kube.call(self.api, method, path, body=body, timeout=10)
        except Exception as exc:  # transport errors after retries: translate once
            raise errors.ApplyError(f"{method} {path}: {exc}", subject="Lease") from exc

    def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease; True when this identity holds it now."""
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

    def acquire(self, wait: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        """Take the Lease within ``wait`` seconds or raise :class:`LeaseHeldError`."""
        start = self.clock()
        while not self.try_acquire():
            waited = self.clock() - start
            if waited >= wait:
                raise LeaseHeldError(self.holder, self.namespace, self.name, waited)
            sleep(min(RENEW_PERIOD, max(0.0, wait - waited)))

    def release(self) -> None:
        """Give the Lease up at once (holder cleared), if this identity still holds it."""
        with contextlib.suppress(errors.ApplyError):
            record = self._read()
            if record is None or record.holder != self.identity:
                return
            self._call("PUT", self.path, self._body(record, holder="", duration=1))
        self.last_renewed = 0.0

    def valid(self) -> bool:
        """Whether this holder renewed recently enough that nobody else can hold it."""
        return self.last_renewed > 0 and self.clock() - self.last_renewed < RENEW_DEADLINE


@contextlib.contextmanager
def held(lease: Lease, wait: float) -> Iterator[Lease]:
    """Hold ``lease`` for the block: acquire (bounded), renew in the background, release."""
    lease.acquire(wait)
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

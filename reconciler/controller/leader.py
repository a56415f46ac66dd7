"""Leader election on the shared Lease, and a Writer that refuses to write without it.

The elector renews every :data:`lease.RENEW_PERIOD`; it counts as leading only while its
last successful renewal is younger than :data:`lease.RENEW_DEADLINE`, which is shorter than
the lease duration, so a leader cut off from the apiserver stops writing before any other
replica may take over (client-go's renewDeadline < leaseDuration argument). Every write
goes through :class:`LeaderWriter`, which checks that just before the request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import errors
from reconciler.apply import lease as leases
from reconciler.apply import writer as writers
from reconciler.controller import echoes as echo
from reconciler.controller import outages as outage
from reconciler.observe import informer

log = logging.getLogger("cu-reconciler.leader")


@dataclass
class Elector:
    lease: leases.Lease
    stop: threading.Event
    _was_leading: bool | None = field(default=None, init=False)
    became_leader: threading.Event = field(default_factory=threading.Event)
    outages: outage.Outages | None = None
    """Told of every renewal that failed or succeeded (an apiserver outage is never silent)."""

    @property
    def leading(self) -> bool:
        return self.lease.valid() and self.lease.holder == self.lease.identity

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.lease.try_acquire()
            except errors.ApplyError as exc:
                if self.outages is not None:
                    self.outages.failed(str(exc))
            except Exception as exc:  # the renewal thread must never die: leadership would
                # lapse without a word (found by the idle-controller test after the merges)
                log.warning("lease renewal failed", extra={"error": repr(exc)[:300]})
            else:
                if self.outages is not None:
                    self.outages.succeeded()
            now = self.leading
            if now != self._was_leading:
                log.info(
                    "leadership changed",
                    extra={"leading": now, "holder": self.lease.holder or "?"},
                )
                self._was_leading = now
                if now:
                    self.became_leader.set()
            self.stop.wait(leases.RENEW_PERIOD)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="leader", daemon=True)
        thread.start()
        return thread


@dataclass(frozen=True, slots=True)
class LeaderWriter:
    """A :class:`reconciler.apply.writer.Writer` that writes only while leading, and
    remembers what it wrote in ``echoes`` (so the watches can tell our writes from news)."""

    inner: writers.Writer
    elector: Elector
    echoes: echo.Echoes | None = None
    cache: informer.Cache | None = None
    """Told of every write, so the next read from it waits until the watches reflect them."""

    def _wrote(self, stored: Mapping[str, Any]) -> None:
        if self.echoes is not None:
            self.echoes.wrote(stored)
        if self.cache is not None:
            self.cache.wrote(stored)

    def whoami(self) -> str:
        return self.inner.whoami()

    def _check(self, obj: Mapping[str, Any]) -> None:
        if not self.elector.leading:
            raise errors.ApplyError(
                "not the leader any more: write skipped", subject=writers.subject_of(obj)
            )

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not dry_run:
            self._check(obj)
        stored = self.inner.apply(obj, dry_run=dry_run)
        if not dry_run:
            self._wrote(stored)
        return stored

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        if not dry_run:
            self._check(obj)
            if self.echoes is not None:  # before: the DELETED event may outrun the response
                self.echoes.deleted(obj)
        gone = self.inner.delete(obj, dry_run=dry_run)
        if not dry_run and self.cache is not None:
            self.cache.deleted(obj)  # accepted, or already gone (False): either way, absent
        return gone

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not dry_run:
            self._check(obj)
        stored = self.inner.replace(obj, dry_run=dry_run)
        if not dry_run:
            self._wrote(stored)
        return stored

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        if not dry_run:
            self._check(live)
        stored = self.inner.set_managed_fields(live, fields, dry_run=dry_run)
        if not dry_run:
            self._wrote(stored)
        return stored

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.inner.get(obj)

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.inner.holders(kind)

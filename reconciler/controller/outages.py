"""Whether the apiserver answers, told by everything that talks to it (the Lease renewals
every 2 s, the loop's own requests), so an outage is never silent.

Why: with etcd down the apiserver answers 5xx or not at all; the Lease cannot be renewed, the
leader steps down and, before this, the loop only waited (issue 20: a 60 s etcd outage left
no log line, metric, status or Event). Now the first failure logs one warning and sets
``cu_apiserver_up`` to 0 (every failure counts in ``cu_apiserver_errors_total``); the first
success after it logs the outage's length and keeps an :class:`Outage` that the leader writes
into the CUSync status (``lastOutage``) and an Event once it can write again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.controller import credentials

log = logging.getLogger("cu-reconciler.apiserver")
REMIND_EVERY = 60.0
"""Seconds between the warnings repeated while an outage lasts."""


@dataclass(frozen=True, slots=True)
class Outage:
    start: str
    end: str
    seconds: float
    error: str

    def record(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "seconds": self.seconds, "error": self.error}

    def message(self) -> str:
        return (
            f"the apiserver did not answer for {self.seconds:.0f}s "
            f"({self.start} to {self.end}): {self.error}"
        )


def _wall() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outages:
    on_change: Callable[[bool], None] = lambda up: None
    """Called with the new state when the apiserver goes down or comes back."""
    on_error: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], str] = _wall
    _since: float | None = None
    _start: str = ""
    _error: str = ""
    _reminded: float = 0.0
    _finished: Outage | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, error: str) -> None:
        """A request that the transport gave up on (or a 5xx after its retries)."""
        error = credentials.redact(error)[:300]
        self.on_error()
        with self._lock:
            now = self.clock()
            first = self._since is None
            if first:
                self._since, self._start, self._reminded = now, self.wall(), now
            self._error = error
            remind = not first and now - self._reminded >= REMIND_EVERY
            if remind:
                self._reminded = now
            since = self._since or now
        if first:
            log.warning("apiserver unreachable", extra={"error": error})
            self.on_change(False)
        elif remind:
            log.warning(
                "apiserver still unreachable",
                extra={"error": error, "seconds": round(now - since, 1)},
            )

    def succeeded(self) -> None:
        with self._lock:
            if self._since is None:
                return
            seconds = round(self.clock() - self._since, 1)
            outage = Outage(self._start, self.wall(), seconds, self._error)
            self._since, self._finished = None, outage
        log.warning("apiserver reachable again", extra={"seconds": seconds, "since": outage.start})
        self.on_change(True)

    @property
    def pending(self) -> bool:
        """An outage ended and is not in the status yet."""
        return self._finished is not None

    def take(self) -> Outage | None:
        """The outage that ended and is not reported in the status yet (then forgotten)."""
        with self._lock:
            outage, self._finished = self._finished, None
            return outage

    def put_back(self, outage: Outage) -> None:
        """Report it later (the status write failed)."""
        with self._lock:
            if self._finished is None:
                self._finished = outage

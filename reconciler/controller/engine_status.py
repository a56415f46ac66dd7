"""Engine mode's metrics: the ``CUEngineStatus`` an engine applied, read and exported.

With Argo CD or Flux applying ``cuctl render --status`` there is no controller, so nothing
would export ``cu_pool_admitted_cu`` and the rest. :class:`Reader` reads the one status object
(read-only: a GET by name every ``interval`` seconds; it changes once per synced commit) and
sets the controller's own gauges from it (:meth:`Metrics.set_engine_report`), so the
dashboard, its ``cluster`` label and alerts work unchanged. An unreachable apiserver sets
``cu_apiserver_up`` 0 and keeps the last figures (they still describe the cluster); a deleted
object clears them (nothing describes the cluster any more).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kubernetes.client import ApiClient

from reconciler import kube
from reconciler.controller import metrics as m
from reconciler.model import kinds
from reconciler.plan import gitops

log = logging.getLogger("cu-reconciler.export")


def path(namespace: str, name: str = gitops.STATUS_NAME) -> str:
    return kinds.of(gitops.STATUS_KIND).object_path(name, namespace)


@dataclass
class Reader:
    api: ApiClient
    metrics: m.Metrics
    path: str
    interval: float = 15.0
    stop: threading.Event = field(default_factory=threading.Event)
    ready: bool = False
    """True once the object has been read (``/readyz``)."""
    revision: str = ""

    def refresh(self) -> bool:
        """Read the object once and set the gauges; whether it was read."""
        try:
            resp = kube.call(self.api, "GET", self.path, timeout=10.0, retry=kube.NO_RETRY)
        except kube.TRANSIENT_ERRORS as exc:
            self.metrics.apiserver_up.set(0)
            self.metrics.apiserver_errors.inc()
            log.warning("apiserver unreachable, keeping the last figures: %s", type(exc).__name__)
            return False
        self.metrics.apiserver_up.set(1)
        if resp.status == 404:
            if self.revision:
                log.warning("%s is gone: figures cleared", self.path)
            self._clear()
            return False
        if not resp.ok:
            self.metrics.apiserver_errors.inc()
            log.warning("cannot read %s: %s", self.path, resp.reason())
            return False
        report = resp.data.get("report") if isinstance(resp.data, dict) else None
        if not isinstance(report, dict):
            log.warning("%s has no report: figures unchanged", self.path)
            return False
        self.metrics.set_engine_report(report)
        revision = str(report.get("revision", ""))
        if revision != self.revision:
            log.info("engine status at revision %s", revision)
        self.revision = revision
        self.ready = True
        return True

    def _clear(self) -> None:
        self.metrics.set_figures({})
        self.metrics.set_shortfalls({})
        self.metrics.revision_info.clear()
        self.revision = ""

    def run(self) -> None:
        """Refresh every ``interval`` seconds until :attr:`stop` is set."""
        while not self.stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep serving: the next refresh may succeed
                log.error("refresh failed: %s: %s", type(exc).__name__, exc)
            self.stop.wait(self.interval)

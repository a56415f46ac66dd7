"""Kubernetes Events on the ``CUSync``: reconciles, refusals, preemptions, fence findings.

``events.k8s.io/v1`` Events in ``default`` (where client-go's recorder puts events about
cluster-scoped objects). The :class:`Recorder` emits an event only when its (reason, note)
differs from the last one of the same reason it sent, so a steady state emits nothing; a
failure, a recovery and every new finding do. A failure to record is logged, never fatal.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import ApiClient

from reconciler import kube
from reconciler.controller import credentials
from reconciler.controller import status as st

NAMESPACE = "default"
REPORTING_CONTROLLER = "cu-reconciler.io/controller"
log = logging.getLogger("cu-reconciler.events")


@dataclass
class Recorder:
    api: ApiClient
    name: str
    instance: str
    uid: str = ""
    _last: dict[str, str] = field(default_factory=dict)

    def emit(self, type_: str, reason: str, note: str, *, action: str = "Reconcile") -> bool:
        """Send one event unless it repeats the last of its ``reason``; True when sent."""
        note = credentials.redact(note)
        key = f"{type_}/{action}/{reason}"
        if self._last.get(key) == note:
            return False
        if type_ == "Normal":  # a recovery: the next failure of any kind is news again
            for k in [k for k in self._last if k.startswith("Warning/")]:
                del self._last[k]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{self.name}.{uuid.uuid4().hex[:16]}", "namespace": NAMESPACE},
            "eventTime": now,
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance[:128],
            "action": action,
            "reason": reason,
            "type": type_,
            "note": note[:1024],
            "regarding": {
                "apiVersion": f"{st.GROUP}/{st.VERSION}",
                "kind": st.KIND,
                "name": self.name,
                **({"uid": self.uid} if self.uid else {}),
            },
        }
        try:
            resp = kube.call(
                self.api, "POST", f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events", body=body
            )
        except Exception as exc:  # an event is best effort: never fail a reconcile on it
            log.warning("event not recorded: %s", exc)
            return False
        if not resp.ok:
            log.warning("event not recorded: %s", resp.reason())
            return False
        self._last[key] = note
        return True

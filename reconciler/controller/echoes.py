"""Our own writes, remembered so that their watch events do not wake the loop again.

Why: every object a reconcile writes comes back as a watch event a moment later. Taken as
news, it costs one more full reconcile that writes nothing, and a real event (a vendor node)
arriving meanwhile waits behind it. An event is an echo when it carries exactly the
resourceVersion one of our writes returned (the object is then what we stored), or deletes a
uid we deleted. Anyone else's change has another resourceVersion and still counts. The
loop asks only when it is about to reconcile (after the debounce, or after the reconcile that
wrote), because a write's event may arrive before its response.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.controller import watches

CAPACITY = 8192
"""Writes remembered; older ones are forgotten (their events are long delivered)."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


@dataclass
class Echoes:
    capacity: int = CAPACITY
    _written: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    _deleted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrote(self, stored: Mapping[str, Any]) -> None:
        """Remember the object a write returned (uid and resourceVersion)."""
        meta = _meta(stored)
        uid, rv = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
        if uid and rv:
            with self._lock:
                self._remember(self._written, (uid, rv))

    def deleted(self, live: Mapping[str, Any]) -> None:
        """Remember a uid we deleted (the delete carried it as a precondition)."""
        uid = str(_meta(live).get("uid") or "")
        if uid:
            with self._lock:
                self._remember(self._deleted, uid)

    def _remember(self, where: OrderedDict[Any, None], item: Any) -> None:
        where[item] = None
        while len(where) > self.capacity:
            where.popitem(last=False)

    def echo(self, change: watches.Change) -> bool:
        """Whether a watch event is one of our writes."""
        with self._lock:
            if change.event == "DELETED":
                return change.uid in self._deleted
            return (change.uid, change.resource_version) in self._written

    def news(self, changes: Iterable[watches.Change]) -> list[watches.Change]:
        """The changes that are not our own writes."""
        return [c for c in changes if not self.echo(c)]

"""An in-memory :class:`~reconciler.apply.writer.Writer` for tests of apply's callers.

It keeps objects by path with a uid, a resourceVersion that moves only when the stored
object changes, and the managedFields server-side apply would record, counts real writes,
and can be told to reject one subject, so tests of the controller's logic can assert "a
failed dry run writes nothing" and "a second run writes nothing" without an apiserver.
It does not merge field ownership like the apiserver: every path the real apiserver takes
is proven by the integration tests (tests/integration/test_apply_*.py).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import errors
from reconciler.apply import writer as writers
from reconciler.model import ownership
from reconciler.plan import managed

_SERVER_META = ("uid", "resourceVersion", "managedFields", "creationTimestamp")


@dataclass
class MemoryWriter:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)
    """Subjects (``Kind/ns/name``) whose writes the fake server rejects, dry run included."""
    writes: int = 0
    identity: str = "system:serviceaccount:cu-system:cu-reconciler"
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def whoami(self) -> str:
        return self.identity

    def _check(self, obj: Mapping[str, Any]) -> str:
        subject = writers.subject_of(obj)
        if subject in self.reject:
            raise errors.ApplyError("HTTP 422 Invalid: rejected by the fake", subject=subject)
        return subject

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        self._check(obj)
        path = writers.path_of(obj)
        old = self.objects.get(path)
        stored = copy.deepcopy({k: v for k, v in obj.items() if k != "status"})
        meta = stored.setdefault("metadata", {})
        entry = {
            "manager": ownership.FIELD_MANAGER,
            "operation": "Apply",
            "apiVersion": str(obj.get("apiVersion", "")),
            "fieldsType": "FieldsV1",
            "fieldsV1": managed.fieldset_of(stored),
        }
        meta["managedFields"] = [entry]
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if "status" in old:
                stored["status"] = old["status"]
            if _content(old) == _content(stored):
                return copy.deepcopy(old)
        if dry_run:
            return stored
        meta.setdefault("uid", f"uid-{path}")
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[path] = stored
        self.writes += 1
        return copy.deepcopy(stored)

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        self._check(obj)
        path = writers.path_of(obj)
        if path not in self.objects:
            return False
        if not dry_run:
            del self.objects[path]
            self.writes += 1
        return True

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        subject = self._check(obj)
        path = writers.path_of(obj)
        old = self.objects.get(path)
        meta = obj.get("metadata") or {}
        if old is None or any(
            meta.get(k) != old["metadata"].get(k) for k in ("uid", "resourceVersion")
        ):
            raise errors.ApplyError("HTTP 409 Conflict: the object changed", subject=subject)
        stored = copy.deepcopy({k: v for k, v in obj.items() if k != "status"})
        stored["metadata"]["managedFields"] = [
            {
                "manager": ownership.FIELD_MANAGER,
                "operation": "Update",
                "apiVersion": str(obj.get("apiVersion", "")),
                "fieldsType": "FieldsV1",
                "fieldsV1": managed.fieldset_of(stored),
            }
        ]
        if "status" in old:
            stored["status"] = old["status"]
        if dry_run:
            return stored
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[path] = stored
        self.writes += 1
        return copy.deepcopy(stored)

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        subject = self._check(live)
        stored = self.objects.get(writers.path_of(live))
        version = (live.get("metadata") or {}).get("resourceVersion")
        if stored is None or stored["metadata"]["resourceVersion"] != version:
            raise errors.ApplyError("HTTP 409 Conflict: resourceVersion changed", subject=subject)
        if dry_run:
            return copy.deepcopy(stored)
        stored["metadata"]["managedFields"] = copy.deepcopy(fields)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.writes += 1
        return copy.deepcopy(stored)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        stored = self.objects.get(writers.path_of(obj))
        return copy.deepcopy(stored) if stored is not None else None

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (str(m.get("namespace") or ""), str(m.get("name", ""))): copy.deepcopy(m)
            for o in self.objects.values()
            if o.get("kind") == kind
            for m in [o.get("metadata") or {}]
        }


def _content(obj: Mapping[str, Any]) -> Any:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_META}
    return {**{k: v for k, v in obj.items() if k not in ("metadata", "status")}, "metadata": meta}

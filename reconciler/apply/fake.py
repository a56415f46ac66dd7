"""An in-memory :class:`~reconciler.apply.writer.Writer` for tests of apply's callers.

It keeps objects by path, counts real writes, and can be told to reject one subject, so
tests of the controller's logic can assert "a failed dry run writes nothing" and "a second
run writes nothing" without an apiserver (the real apiserver is covered by integration tests).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import errors
from reconciler.apply import writer as writers


@dataclass
class MemoryWriter:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    reject: set[str] = field(default_factory=set)
    """Subjects (``Kind/ns/name``) whose writes the fake server rejects, dry run included."""
    writes: int = 0
    identity: str = "system:serviceaccount:cu-system:cu-reconciler"

    def whoami(self) -> str:
        return self.identity

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        subject = writers.subject_of(obj)
        if subject in self.reject:
            raise errors.ApplyError("HTTP 422 Invalid: rejected by the fake", subject=subject)
        stored = copy.deepcopy(dict(obj))
        if not dry_run:
            self.objects[writers.path_of(obj)] = stored
            self.writes += 1
        return stored

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        subject = writers.subject_of(obj)
        if subject in self.reject:
            raise errors.ApplyError("HTTP 422 Invalid: rejected by the fake", subject=subject)
        path = writers.path_of(obj)
        if path not in self.objects:
            return False
        if not dry_run:
            del self.objects[path]
            self.writes += 1
        return True

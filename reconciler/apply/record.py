"""What one apply leaves in the cluster for the next: the last verified revision, the keys
trusted there, and the safety limits in force.

Why in the cluster: the next writer may be a controller restarted with an empty cache, a CI
job with a fresh clone, or ``cuctl apply`` on a laptop, and the commit that was applied may
be gone from Git after a force-push. Where: annotations on the Lease ``cu-system/cu-reconciler``
(:mod:`reconciler.apply.lease`), the object every writer must hold to write. Only the holder
updates it (a PUT with the Lease's resourceVersion), renewals keep it, and the reconciler's
RBAC already allows exactly that one object (``get``, ``update`` on ``leases/cu-reconciler``).
Who can update the Lease can reset the record, as they could take the Lease: that is the
reconciler's ServiceAccount and cluster admins, not whoever can push to Git.

Deleting the Lease forgets the record: the next apply verifies with no anchor (see
:mod:`reconciler.source.signature`) and takes the new commit's limits as they are. A record
that cannot be parsed is read as the strictest limits (no deletes) and as trusting no key
for a rewritten history, until an apply replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from reconciler.apply import lease as leases
from reconciler.model import documents as docs
from reconciler.source import signature

REVISION = "cu-reconciler.io/verified-revision"
"""The full SHA of the last revision verified and applied."""
SIGNING = "cu-reconciler.io/trusted-keys"
"""JSON of ``spec.signing`` at that revision ("null": nothing required)."""
SAFETY = "cu-reconciler.io/safety-limits"
"""JSON of ``policy.spec.safety`` in force after that apply."""

STRICTEST = docs.SafetyPolicy(max_delete_fraction=0.0, allow_empty=False)


@dataclass(frozen=True, slots=True)
class Record:
    revision: str = ""
    """"" when no verified commit was applied yet (or a working tree was)."""
    signing: docs.CommitSigning | None = None
    safety: docs.SafetyPolicy | None = None

    @property
    def anchor(self) -> signature.Anchor | None:
        return signature.Anchor(self.revision, self.signing) if self.revision else None


def parse(annotations: Mapping[str, str]) -> Record | None:
    """The record in a Lease's annotations (None when there is none)."""
    if not any(k in annotations for k in (REVISION, SIGNING, SAFETY)):
        return None
    revision = annotations.get(REVISION, "")
    signing: docs.CommitSigning | None = None
    raw = annotations.get(SIGNING)
    if raw is not None:
        try:
            value = json.loads(raw)
            signing = None if value is None else docs.CommitSigning.model_validate(value)
        except (ValueError, ValidationError):
            signing = docs.CommitSigning()  # unreadable: trusts no key
    safety: docs.SafetyPolicy | None = None
    raw = annotations.get(SAFETY)
    if raw is not None:
        try:
            safety = docs.SafetyPolicy.model_validate(json.loads(raw))
        except (ValueError, ValidationError):
            safety = STRICTEST
    return Record(revision, signing, safety)


def to_annotations(record: Record) -> dict[str, str]:
    out: dict[str, str] = {}
    if record.revision:
        out[REVISION] = record.revision
        signing = record.signing
        out[SIGNING] = json.dumps(
            None if signing is None else signing.model_dump(by_alias=True), sort_keys=True
        )
    if record.safety is not None:
        out[SAFETY] = json.dumps(record.safety.model_dump(by_alias=True), sort_keys=True)
    return out


class Memory(Protocol):
    """Where the record is kept between writers."""

    def recall(self) -> Record | None: ...

    def remember(self, record: Record) -> None: ...


@dataclass(frozen=True, slots=True)
class LeaseMemory:
    """The record on the shared Lease (read: a GET; write: only while holding it)."""

    lease: leases.Lease

    def recall(self) -> Record | None:
        return parse(self.lease.annotations())

    def remember(self, record: Record) -> None:
        self.lease.annotate(to_annotations(record))


@dataclass
class InMemory:
    """For tests and offline runs: the record in this process."""

    record: Record | None = None

    def recall(self) -> Record | None:
        return self.record

    def remember(self, record: Record) -> None:
        self.record = record

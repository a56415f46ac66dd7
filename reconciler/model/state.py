"""The desired state: every document of one repository revision, validated, with locations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NewType

from reconciler.model import documents as docs

Revision = NewType("Revision", str)
"""A Git commit SHA, or ``worktree`` for uncommitted files."""


@dataclass(frozen=True, slots=True, order=True)
class SourceRef:
    """Where a document or one of its fields was written: for diagnostics and reports."""

    file: str
    line: int
    column: int = 1


@dataclass(frozen=True, slots=True)
class DocumentKey:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What Git says, at one revision. Tuples are sorted by name so planning is deterministic."""

    revision: Revision
    settings: docs.ClusterSettings
    policy: docs.Policy
    adapters: tuple[docs.VendorAdapter, ...] = ()
    pools: tuple[docs.CUPool, ...] = ()
    tenants: tuple[docs.Tenant, ...] = ()
    claims: tuple[docs.CUClaim, ...] = ()
    factor_tables: tuple[docs.FactorTable, ...] = ()
    device_costs: docs.DeviceCosts | None = None
    """What devices cost (the ``DeviceCosts`` document); None: no cost figures."""
    locations: Mapping[DocumentKey, SourceRef] = field(default_factory=dict)

    def location(self, kind: str, name: str) -> SourceRef | None:
        return self.locations.get(DocumentKey(kind, name))


DEFAULT_POLICY = docs.Policy.model_validate(
    {"apiVersion": docs.API_VERSION, "kind": "Policy", "metadata": {"name": "default"}}
)
"""Used when a repository has no Policy document: every default is the safe one."""

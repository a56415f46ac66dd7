"""The committed snapshot of observed objects: bytes in, raw objects out.

A snapshot is what ``kubectl get nodes,resourceslices,resourceclaims -A -o yaml`` prints: a
``kind: List`` whose ``items`` are Nodes, ResourceSlices and ResourceClaims. It lets planning
and the device-aware checks run offline (in a pull request, without cluster access). The
normalisation through the vendor adapters is :func:`reconciler.model.observed.build`, shared
with ``reconciler.observe``; this module only parses and sorts the objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model import codes, ownership
from reconciler.model import diagnostics as diag
from reconciler.model import observed as obs
from reconciler.validate import syntax

_KINDS = {"Node": "nodes", "ResourceSlice": "slices", "ResourceClaim": "claims"}
MAX_WARNINGS = 20
"""Warnings per snapshot before the rest are counted in one line."""


def _read_as_live(item: object) -> bool:
    """An object we render, carrying our label, or a kubelet plugin's Lease: planning reads
    them as the live side (what exists, what is in use), so they belong in the snapshot."""
    if not isinstance(item, Mapping):
        return False
    kind = item.get("kind")
    return kind == "Lease" or (kind in ownership.OUR_KINDS and ownership.is_owned(item))


def parse(file: str, content: bytes) -> tuple[obs.RawObjects | None, list[diag.Diagnostic]]:
    """Parse a snapshot file; None with diagnostics when it cannot be used at all."""
    raw, problems, _ = parse_document(file, content)
    return raw, problems


def parse_document(
    file: str, content: bytes, budget: syntax.Budget | None = None
) -> tuple[obs.RawObjects | None, list[diag.Diagnostic], syntax.LoadedDocument | None]:
    """:func:`parse`, and the loaded document (its composed nodes) when there is one.

    ``budget``: the revision's node budget (validation passes its own, so the snapshot and
    the documents share one bound); a standalone parse gets a fresh one."""
    loaded, problems = syntax.load(
        file, content, syntax.SNAPSHOT_LIMITS, budget if budget is not None else syntax.Budget()
    )
    if problems:
        return None, problems, None
    if not loaded:
        return obs.RawObjects(), [], None
    document = loaded[0]
    raw, found = _objects(file, document)
    return raw, found, document


def _objects(
    file: str, document: syntax.LoadedDocument
) -> tuple[obs.RawObjects | None, list[diag.Diagnostic]]:
    data: Mapping[str, Any] = document.data
    if data.get("kind") != "List" or not isinstance(data.get("items"), list):
        pos = document.locate(("kind",))
        return None, [
            diag.Diagnostic(
                file,
                pos.line,
                pos.column,
                codes.Code.SNAPSHOT_INVALID,
                "the snapshot must be a 'kind: List' with 'items' (kubectl get ... -o yaml); "
                "regenerate it",
            )
        ]
    buckets: dict[str, list[Mapping[str, Any]]] = {"nodes": [], "slices": [], "claims": []}
    found: list[diag.Diagnostic] = []
    skipped = 0
    for i, item in enumerate(data["items"]):
        kind = item.get("kind") if isinstance(item, Mapping) else None
        bucket = _KINDS.get(kind) if isinstance(kind, str) else None
        if bucket is None and _read_as_live(item):
            continue  # our own objects (``cuctl snapshot`` writes them): the live side
        if bucket is None:
            skipped += 1
            if skipped > MAX_WARNINGS:
                continue
            pos = document.locate(("items", i, "kind"))
            found.append(
                diag.Diagnostic(
                    file,
                    pos.line,
                    pos.column,
                    codes.Code.SNAPSHOT_INVALID,
                    f"snapshot item {i} is a {kind!r} that is not ours; only Node, "
                    "ResourceSlice, ResourceClaim and the objects cu-reconciler owns are "
                    "read, so it is ignored",
                    diag.Severity.WARNING,
                )
            )
            continue
        buckets[bucket].append(item)
    if skipped > MAX_WARNINGS:
        # One line for the rest: a 6 MB snapshot must not print a million warnings.
        found.append(
            diag.Diagnostic(
                file,
                1,
                1,
                codes.Code.SNAPSHOT_INVALID,
                f"… and {skipped - MAX_WARNINGS} more items of other kinds ({skipped} in "
                "all); only Node, ResourceSlice, ResourceClaim and our objects are read",
                diag.Severity.WARNING,
            )
        )
    raw = obs.RawObjects(
        nodes=tuple(buckets["nodes"]),
        slices=tuple(buckets["slices"]),
        claims=tuple(buckets["claims"]),
    )
    return raw, found

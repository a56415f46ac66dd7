"""The validation pipeline for one source tree: select, load, check the schema, cross-check.

Stages run in order and every stage runs even when an earlier one found problems, so a pull
request sees all of its mistakes at once; a file that failed to load simply contributes no
documents. The result is a :class:`Validation` whose ``state`` is set only when there is no
error (warnings do not block).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler import _gc
from reconciler.model import codes
from reconciler.model import diagnostics as diag
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.source import tree as source_tree
from reconciler.validate import schema, semantics, snapshot, syntax

_DEFAULT_LAYOUT = docs.GitLayout()


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome: the desired state when valid, and every finding, sorted by position."""

    revision: st.Revision
    state: st.DesiredState | None
    diagnostics: tuple[diag.Diagnostic, ...]
    observed: obs.ObservedState | None = None
    """The observed state the device checks ran against (the snapshot's, or the given one)."""
    files: tuple[str, ...] = ()
    """The files loaded as documents."""
    snapshot_document: syntax.LoadedDocument | None = field(default=None, repr=False)
    """The repository's snapshot as composed for the device checks: a caller planning with
    the same file converts these nodes instead of parsing 1 MB of YAML again."""

    @property
    def ok(self) -> bool:
        return self.state is not None

    @property
    def errors(self) -> tuple[diag.Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is diag.Severity.ERROR)

    @property
    def warnings(self) -> tuple[diag.Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is diag.Severity.WARNING)


def validate_tree(
    tree: source_tree.SourceTree, observed: obs.ObservedState | None = None
) -> Validation:
    """Validate every document of ``tree``.

    ``observed``: the devices to run the device checks against; by default the repository's
    own snapshot (``ClusterSettings.spec.layout.snapshot``) when it has one, else only the
    static checks run.
    """
    with _gc.paused():
        return _validate(tree, observed)


def _validate(tree: source_tree.SourceTree, observed: obs.ObservedState | None) -> Validation:
    fatal = tuple(d for d in tree.diagnostics if d.code in source_tree.FATAL)
    if fatal:
        return Validation(tree.revision, None, fatal, observed)
    found: list[diag.Diagnostic] = list(tree.diagnostics)
    budget = syntax.Budget()
    settings = _bootstrap_settings(tree)
    layout = settings.spec.layout if settings is not None else _DEFAULT_LAYOUT
    selected = tree.select(layout.include, layout.exclude)
    if layout.snapshot is not None:
        selected.pop(layout.snapshot, None)
    loaded: list[syntax.LoadedDocument] = []
    broken: dict[tuple[str, str], str] = {}
    for path, content in selected.items():
        in_file, problems = syntax.load(path, content, syntax.DOCUMENT_LIMITS, budget)
        if budget.exhausted:
            # One fatal error, nothing after it: every later finding would be a follow-on.
            return Validation(tree.revision, None, tuple(problems), observed, tuple(selected))
        found += problems
        if any(p.severity is diag.Severity.ERROR for p in problems):
            broken.update(_declared(path, content))
        if not in_file and not problems:
            found.append(
                diag.Diagnostic(
                    path,
                    1,
                    1,
                    codes.Code.EMPTY_FILE,
                    "file holds no YAML document; delete it or exclude it in the layout",
                    diag.Severity.WARNING,
                )
            )
        loaded += in_file
    buckets: dict[str, list[semantics.Entry[Any]]] = {k: [] for k in docs.DOCUMENT_KINDS}
    for document in loaded:
        typed, problems = schema.check(document)
        found += problems
        if typed is None:
            data = document.data
            meta = data.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if isinstance(data.get("kind"), str) and isinstance(name, str):
                broken[(str(data["kind"]), name)] = document.file
        if typed is not None:
            buckets[typed.kind].append(semantics.Entry(typed, document))
    documents = semantics.Documents(
        settings=buckets["ClusterSettings"],
        policies=buckets["Policy"],
        adapters=buckets["VendorAdapter"],
        pools=buckets["CUPool"],
        tenants=buckets["Tenant"],
        claims=buckets["CUClaim"],
        factor_tables=buckets["FactorTable"],
        device_costs=buckets["DeviceCosts"],
    )
    snapshot_document = None
    if observed is None and documents.settings:
        observed, problems, snapshot_document = _repository_snapshot(tree, documents, budget)
        if budget.exhausted:
            return Validation(tree.revision, None, tuple(problems), None, tuple(selected))
        found += problems
    found += _collapse(semantics.check(documents, observed), broken)
    ordered = tuple(sorted(set(found), key=_order))
    has_error = any(d.severity is diag.Severity.ERROR for d in ordered)
    state = None if has_error else _desired_state(tree.revision, documents)
    return Validation(tree.revision, state, ordered, observed, tuple(selected), snapshot_document)


_KIND_LINE = re.compile(rb"^kind:\s*['\"]?(\w+)", re.MULTILINE)
_NAME_LINE = re.compile(rb"^\s+name:\s*['\"]?([A-Za-z0-9][A-Za-z0-9.-]*)", re.MULTILINE)
_REFERENCE = re.compile(r"^unknown (pool|tenant) '([^']*)'")
_REFERENCED_KIND = {"pool": "CUPool", "tenant": "Tenant"}


def _declared(path: str, content: bytes) -> dict[tuple[str, str], str]:
    """What a file that does not load meant to declare, read as plain text (best effort;
    a UTF-16 file is read as such, so its references are not reported a second time)."""
    encoding = syntax.other_encoding(content)
    if encoding is not None:
        text = content.decode(encoding.split(" ")[0].lower(), "replace")
        content = text.lstrip("\ufeff").encode("utf-8")
    out = {}
    for part in re.split(rb"(?m)^---", content):
        kind, name = _KIND_LINE.search(part), _NAME_LINE.search(part)
        if kind and name:
            out[(kind[1].decode(), name[1].decode())] = path
    return out


def _collapse(
    found: list[diag.Diagnostic], broken: dict[tuple[str, str], str]
) -> list[diag.Diagnostic]:
    """Drop "unknown pool/tenant" errors whose target is declared in a file that failed to
    load: the root cause is reported there, once, with a count of what it hid. Likewise "no
    ClusterSettings" when the settings are there but invalid (e.g. an admitted identity)."""
    out: list[diag.Diagnostic] = []
    hidden: dict[tuple[str, str], int] = defaultdict(int)
    settings_broken = any(kind == "ClusterSettings" for kind, _ in broken)
    for d in found:
        if d.code is codes.Code.NO_SETTINGS and settings_broken:
            continue
        match = _REFERENCE.match(d.message) if d.code in _CASCADING else None
        key = (_REFERENCED_KIND[match[1]], match[2]) if match else None
        if key is not None and key in broken:
            hidden[key] += 1
            continue
        out.append(d)
    for (kind, name), count in sorted(hidden.items()):
        out.append(
            diag.Diagnostic(
                broken[(kind, name)],
                1,
                1,
                codes.Code.UNKNOWN_POOL if kind == "CUPool" else codes.Code.UNKNOWN_TENANT,
                f"{count} reference(s) to {kind} {name!r} in other files fail because this file "
                "does not load; fix the error(s) here first",
                diag.Severity.WARNING,
            )
        )
    return out


_CASCADING = {codes.Code.UNKNOWN_POOL, codes.Code.UNKNOWN_TENANT}


def _order(d: diag.Diagnostic) -> tuple[bool, str, int, int, str, str]:
    """Causes first: errors reading or loading a file (CU1xx) come before everything else,
    since a file that does not load makes findings elsewhere (an unknown pool, a missing
    settings document) follow-ons; then by position."""
    cause = d.code.startswith("CU1") and d.severity is diag.Severity.ERROR
    return (not cause, d.file, d.line, d.column, d.code, d.message)


def _bootstrap_settings(tree: source_tree.SourceTree) -> docs.ClusterSettings | None:
    """The ClusterSettings among the files the default layout selects, if exactly one loads.

    A cheap byte scan finds candidate files so only those are parsed here; every file is
    parsed (and reported on) again in the main pass under the settings' own layout.
    """
    candidates = tree.select(_DEFAULT_LAYOUT.include, _DEFAULT_LAYOUT.exclude)
    found: list[docs.ClusterSettings] = []
    for path, content in candidates.items():
        if b"ClusterSettings" not in content:
            continue
        documents, _ = syntax.load(path, content, syntax.DOCUMENT_LIMITS, syntax.Budget())
        for document in documents:
            if document.data.get("kind") == "ClusterSettings":
                typed, problems = schema.check(document)
                if typed is not None and not problems:
                    assert isinstance(typed, docs.ClusterSettings)
                    found.append(typed)
    return found[0] if len(found) == 1 else None


def _repository_snapshot(
    tree: source_tree.SourceTree, documents: semantics.Documents, budget: syntax.Budget
) -> tuple[obs.ObservedState | None, list[diag.Diagnostic], syntax.LoadedDocument | None]:
    settings = documents.settings[0].document
    path = settings.spec.layout.snapshot
    if path is None:
        return None, [], None
    if path not in tree.files:
        # A missing or misspelt snapshot would silently turn off every device check: an
        # error when written, a warning when it is the default (`snapshot: null` says "none").
        explicit = "snapshot" in settings.spec.layout.model_fields_set
        return (
            None,
            [
                documents.settings[0].at(
                    ("spec", "layout", "snapshot"),
                    codes.Code.SNAPSHOT_INVALID,
                    f"layout.snapshot names {path!r}, which is not a file in the repository; "
                    "commit the snapshot (kubectl get nodes,resourceslices,resourceclaims -A -o "
                    "yaml), or set layout.snapshot: null to plan without device checks",
                    diag.Severity.ERROR if explicit else diag.Severity.WARNING,
                )
            ],
            None,
        )
    raw, problems, document = snapshot.parse_document(path, tree.files[path], budget)
    if raw is None:
        return None, problems, None
    adapters = [e.document for e in documents.adapters]
    return obs.build(raw, adapters, settings.spec.driver_name), problems, document


def _sorted(entries: Sequence[semantics.Entry[Any]]) -> tuple[Any, ...]:
    return tuple(e.document for e in sorted(entries, key=lambda e: e.name))


def _desired_state(revision: st.Revision, found: semantics.Documents) -> st.DesiredState:
    locations = {
        st.DocumentKey(e.document.kind, e.name): st.SourceRef(
            e.source.file, e.source.start.line, e.source.start.column
        )
        for e in found.all()
    }
    return st.DesiredState(
        revision=revision,
        settings=found.settings[0].document,
        policy=found.policies[0].document if found.policies else st.DEFAULT_POLICY,
        adapters=_sorted(found.adapters),
        pools=_sorted(found.pools),
        tenants=_sorted(found.tenants),
        claims=_sorted(found.claims),
        factor_tables=_sorted(found.factor_tables),
        device_costs=found.device_costs[0].document if found.device_costs else None,
        locations=locations,
    )

"""Preview renderers: text (unified diff), markdown (pull-request comment), json (machines).

All three are pure functions of a :class:`Preview`; colour is a parameter (the CLI decides
from ``isatty``), and the markdown stays under :data:`MARKDOWN_LIMIT` characters by
summarising: per-object diffs first become a list of subjects, then a count.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.diff import changeset as cs
from reconciler.diff import yamltext
from reconciler.plan import admission
from reconciler.plan import report as rpt

MARKDOWN_LIMIT = 65_000
_RESET = "\033[0m"
_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m", "=": "\033[1m", "!": "\033[1;33m"}


@dataclass(frozen=True, slots=True)
class Preview:
    """Everything a preview shows: the changes, the report, and the safety verdict."""

    changes: cs.ChangeSet
    report: rpt.Report
    refusal: str | None = None
    base: str | None = None
    """The base revision for ``plan --base`` (None: compared with the live cluster)."""


def _short(revision: str) -> str:
    return revision[:12]


def _title(preview: Preview) -> str:
    rev = _short(preview.report.revision)
    if preview.base is not None:
        return f"{_short(preview.base)} → {rev}"
    return f"live → {rev}"


def _counts(changes: cs.ChangeSet) -> str:
    parts = [
        f"{changes.count(action)} to {action}"
        for action in (cs.Action.CREATE, cs.Action.UPDATE, cs.Action.REPLACE, cs.Action.DELETE)
    ]
    return ", ".join(parts) + f", {changes.count(cs.Action.UNCHANGED)} unchanged"


def unified(entry: cs.ChangeSetEntry) -> list[str]:
    """The unified diff of one entry (``diff -u -N`` style headers)."""
    before = yamltext.dump(entry.before, sort_keys=True) if entry.before is not None else ""
    after = yamltext.dump(entry.after, sort_keys=True) if entry.after is not None else ""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"live/{entry.subject}" if entry.before is not None else "/dev/null",
            tofile=f"target/{entry.subject}" if entry.after is not None else "/dev/null",
            n=3,
        )
    ]


def _paint(line: str, color: bool) -> str:
    if not color or not line:
        return line
    code = _COLOURS.get(line[0])
    if line.startswith(("+++", "---")):
        code = _COLOURS["="]
    return f"{code}{line}{_RESET}" if code else line


def _quota_text(quota: rpt.QuotaFigures | None, part: str) -> str:
    """A quota figure; ``—`` where there is no quota (or none was recorded before)."""
    if quota is None:
        return "—"
    return rpt.milli_text(quota.guaranteed_milli if part == "guaranteed" else quota.limit_milli)


def _tenant_cells(t: rpt.TenantReport, bold: bool) -> tuple[str, str, str]:
    """Guaranteed, limit and claimed CU, each ``before → after`` where it changed."""
    changed = t.changed
    pairs = (
        (
            "guaranteed",
            _quota_text(t.quota_before, "guaranteed"),
            _quota_text(t.quota_after, "guaranteed"),
        ),
        ("limit", _quota_text(t.quota_before, "limit"), _quota_text(t.quota_after, "limit")),
        ("claimed", rpt.milli_text(t.before_milli), rpt.milli_text(t.after_milli)),
    )
    cells = []
    for name, before, after in pairs:
        if name not in changed:
            cells.append(after)
        else:
            cells.append(f"{before} → **{after}**" if bold else f"{before} → {after}")
    return cells[0], cells[1], cells[2]


def status_before(d: admission.Decision) -> str | None:
    """The claim's status on the other side of the diff: Admitted when its object exists.

    Only admitted claims have objects, so "before" cannot tell a pending claim from one
    that was not declared: both are None (shown ``—``).
    """
    return str(admission.Status.ADMITTED) if d.live else None


def status_changed(d: admission.Decision) -> bool:
    """Admitted on one side only (the object appears, or goes)."""
    return (status_before(d) is not None) != (d.status is admission.Status.ADMITTED)


def _status_cell(d: admission.Decision, bold: bool) -> str:
    if not status_changed(d):
        return str(d.status)
    after = f"**{d.status}**" if bold else str(d.status)
    return f"{status_before(d) or '—'} → {after}"


def _replicas_cell(d: admission.Decision) -> str:
    return f"{d.replicas} ({d.running} running)" if d.running else str(d.replicas)


def text(preview: Preview, *, color: bool = False) -> str:
    out = [_paint(f"=== cu-reconciler plan {_title(preview)}", color)]
    if preview.refusal:
        out.append(_paint(f"!!! {preview.refusal}", color))
    for warning in preview.report.warnings:
        out.append(_paint(f"!!! {warning}", color))
    for entry in preview.changes.changes:
        out.append("")
        out.append(_paint(f"=== {entry.action} {entry.subject}", color))
        out.extend(_paint(line, color) for line in unified(entry))
    out.append("")
    out.append("Capacity (CU):")
    for pool in preview.report.pools:
        out.append(
            f"  {pool.name} ({pool.sharing}): {rpt.milli_text(pool.before_milli)} → "
            f"{rpt.milli_text(pool.after_milli)}; "
            f"admittable {rpt.milli_text(pool.admittable_milli)}, "
            f"admitted {rpt.milli_text(pool.admitted_milli)}"
        )
        for line in pool.lines:
            out.append(f"    {line.render(pool.cu_per_device)}")
    if preview.report.tenants:
        out.append("Tenants (CU; ~ marks a change):")
        for t in preview.report.tenants:
            guaranteed, limit, claimed = _tenant_cells(t, bold=False)
            out.append(
                f"  {'~' if t.changed else ' '} {t.tenant} in {t.pool} (priority {t.priority}): "
                f"guaranteed {guaranteed}, limit {limit}, claimed {claimed}"
            )
    shown = [
        d
        for d in preview.report.decisions
        if d.status is not admission.Status.ADMITTED or status_changed(d)
    ]
    if shown:
        out.append("Claims changed or not admitted:")
        for d in shown:
            replicas = f", {_replicas_cell(d)} replicas" if d.replicas > 1 else ""
            out.append(
                f"  {_status_cell(d, bold=False)} {d.namespace}/{d.claim} "
                f"({d.tenant}, {d.pool}{replicas}): {d.reason}"
            )
    for finding in preview.report.findings:
        out.append(f"  note: {finding.render()}")
    out.append(f"Plan: {_counts(preview.changes)}.")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ markdown


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _arrow(before: int, after: int) -> str:
    if before == after:
        return rpt.milli_text(after)
    return f"{rpt.milli_text(before)} → **{rpt.milli_text(after)}**"


def _budgeted(lines: list[str], budget: int, more: str) -> list[str]:
    """Keep table rows while they fit; then one line saying how many were left out."""
    out: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > budget and i > 2:
            out.append(more.format(n=len(lines) - i))
            return out
        out.append(line)
        used += len(line) + 1
    return out


def markdown(preview: Preview, *, limit: int = MARKDOWN_LIMIT) -> str:
    report = preview.report
    changes = preview.changes.changes
    head = [f"### cu-reconciler plan `{_title(preview)}`", ""]
    if preview.refusal:
        head += [f"> [!CAUTION]\n> **{preview.refusal}**", ""]
    for warning in report.warnings:
        head += [f"> [!WARNING]\n> {warning}", ""]
    head += [f"**{len(changes)} changes**: {_counts(preview.changes)}.", ""]
    head += ["#### CU capacity per pool", ""]
    head += _table(
        ("Pool", "Sharing", "Devices", "Published CU", "Admittable", "Admitted"),
        (
            (
                p.name,
                p.sharing,
                str(p.devices),
                _arrow(p.before_milli, p.after_milli),
                rpt.milli_text(p.admittable_milli),
                rpt.milli_text(p.admitted_milli),
            )
            for p in report.pools
        ),
    )
    head.append("")
    tenant_rows = _table(
        ("Tenant", "Pool", "Priority", "Guaranteed", "Limit", "Claimed CU"),
        ((t.tenant, t.pool, str(t.priority), *_tenant_cells(t, bold=True)) for t in report.tenants),
    )
    head += ["#### CU per tenant", ""]
    head += _budgeted(tenant_rows, limit // 6, "| … {n} more tenants (see `-o json`) | | | | | |")
    head.append("")
    by_status = {s: [d for d in report.decisions if d.status is s] for s in admission.Status}
    head += ["#### Claims", ""]
    head.append(
        f"{len(by_status[admission.Status.ADMITTED])} admitted, "
        f"{len(by_status[admission.Status.PENDING])} pending, "
        f"{len(by_status[admission.Status.PREEMPTED])} preempted."
    )
    head.append("")
    shown = [
        d
        for d in report.decisions
        if d.status is not admission.Status.ADMITTED or status_changed(d)
    ]
    if len(report.decisions) <= 50:
        shown = list(report.decisions)
    if shown:
        claim_rows = _table(
            ("Claim", "Tenant", "Pool", "Replicas", "CU", "Status", "Reason"),
            (
                (
                    f"{d.namespace}/{d.claim}",
                    d.tenant,
                    d.pool,
                    _replicas_cell(d),
                    rpt.milli_text(d.charged_milli or d.requested_milli),
                    _status_cell(d, bold=True),
                    d.reason,
                )
                for d in shown
            ),
        )
        head += _budgeted(
            claim_rows, limit // 6, "| … {n} more claims (see `-o json`) | | | | | | |"
        )
        head.append("")
    arithmetic = ["<details><summary>CU arithmetic</summary>", ""]
    for p in report.pools:
        arithmetic.append(f"- **{p.name}**: {rpt.milli_text(p.total_milli)} CU")
        arithmetic += [f"  - {line.render(p.cu_per_device)}" for line in p.lines]
        if p.headroom_percent:
            arithmetic.append(
                f"  - headroom {p.headroom_percent:g}% → admittable "
                f"{rpt.milli_text(p.admittable_milli)} CU"
            )
    if report.findings:
        arithmetic.append("")
        arithmetic.append("Findings:")
        arithmetic += [f"- `{f.code}` {f.subject}: {f.message}" for f in report.findings[:50]]
        if len(report.findings) > 50:
            arithmetic.append(f"- … {len(report.findings) - 50} more")
    arithmetic += ["", "</details>", ""]
    if sum(len(x) + 1 for x in head + arithmetic) < limit // 2:
        head += arithmetic
    body = ["#### Changes", ""] if changes else []
    footer_reserve = 200
    used = sum(len(x) + 1 for x in head + body)
    rest_index = len(changes)
    for i, entry in enumerate(changes):
        block = [
            f"<details><summary><code>{entry.action}</code> {entry.subject}</summary>",
            "",
            "```diff",
            *unified(entry),
            "```",
            "</details>",
            "",
        ]
        size = sum(len(x) + 1 for x in block)
        if used + size + footer_reserve > limit:
            rest_index = i
            break
        body += block
        used += size
    if rest_index < len(changes):
        body.append("Not shown in detail:")
        for j, entry in enumerate(changes[rest_index:]):
            line = f"- `{entry.action}` {entry.subject}"
            if used + len(line) + 1 + footer_reserve > limit:
                body.append(
                    f"- … and {len(changes) - rest_index - j} more (see `cuctl plan -o json`)"
                )
                break
            body.append(line)
            used += len(line) + 1
    return "\n".join(head + body).rstrip() + "\n"


# ---------------------------------------------------------------------------------- json


def _decision(d: admission.Decision) -> dict[str, Any]:
    return {
        "claim": d.claim,
        "namespace": d.namespace,
        "tenant": d.tenant,
        "pool": d.pool,
        "priority": d.priority,
        "status": str(d.status),
        "statusBefore": status_before(d),
        "reason": str(d.reason),
        "replicas": d.replicas,
        "runningReplicas": d.running,
        "phase": None if d.phase is None else str(d.phase),
        "requestedCU": rpt.milli_text(d.requested_milli),
        "chargedCU": rpt.milli_text(d.charged_milli),
        "devices": [str(x) for x in d.devices],
        "inUse": d.in_use,
        "exists": d.live,
        "message": d.message or None,
    }


def _figures(quota: rpt.QuotaFigures | None, claimed: int) -> dict[str, Any]:
    """``guaranteedCU``/``limitCU`` are null without a quota; ``limitCU`` null: no limit."""
    return {
        "quota": quota is not None,
        "guaranteedCU": None if quota is None else rpt.milli_text(quota.guaranteed_milli),
        "limitCU": (
            None
            if quota is None or quota.limit_milli is None
            else rpt.milli_text(quota.limit_milli)
        ),
        "claimedCU": rpt.milli_text(claimed),
    }


def json_document(preview: Preview) -> dict[str, Any]:
    report = preview.report
    return {
        "revision": report.revision,
        "base": preview.base,
        "inSync": preview.changes.in_sync,
        "refusal": preview.refusal,
        "summary": {str(a): preview.changes.count(a) for a in cs.Action},
        "changes": [e.to_json() for e in preview.changes.changes],
        "pools": [
            {
                "pool": p.name,
                "sharing": p.sharing,
                "devices": p.devices,
                "beforeCU": rpt.milli_text(p.before_milli),
                "afterCU": rpt.milli_text(p.after_milli),
                "totalCU": rpt.milli_text(p.total_milli),
                "admittableCU": rpt.milli_text(p.admittable_milli),
                "admittedCU": rpt.milli_text(p.admitted_milli),
                "headroomPercent": p.headroom_percent,
                "arithmetic": [
                    {
                        "model": line.model,
                        "devices": line.devices,
                        "factor": line.factor,
                        "cuEach": rpt.milli_text(line.milli_each),
                        "cuTotal": rpt.milli_text(line.milli_total),
                        "notCounted": line.unusable,
                    }
                    for line in p.lines
                ],
            }
            for p in report.pools
        ],
        "tenants": [
            {
                "tenant": t.tenant,
                "pool": t.pool,
                "priority": t.priority,
                "before": _figures(t.quota_before, t.before_milli),
                "after": _figures(t.quota_after, t.after_milli),
                "changed": list(t.changed),
            }
            for t in report.tenants
        ],
        "claims": [_decision(d) for d in report.decisions],
        "findings": [
            {"code": str(f.code), "subject": f.subject, "message": f.message}
            for f in report.findings
        ],
        "warnings": list(report.warnings),
    }


def json_text(preview: Preview) -> str:
    return json.dumps(json_document(preview), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

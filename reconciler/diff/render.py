"""Preview renderers: text (unified diff), markdown (pull-request comment), json (machines).

All three are pure functions of a :class:`Preview`; colour is a parameter (the CLI decides
from ``isatty``), and the markdown stays under :data:`MARKDOWN_LIMIT` characters by
summarising: per-object diffs first become a list of subjects, then a count.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.diff import changeset as cs
from reconciler.diff import yamltext
from reconciler.model import observed as obs
from reconciler.plan import admission, meaning
from reconciler.plan import report as rpt

MARKDOWN_LIMIT = 60_000
"""GitHub caps a comment at 65,536 characters; a preview stays well below."""
FULL_PLAN_HINT = "the full plan: `cuctl plan -o text` (or `-o json`)"
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
    meaning: tuple[meaning.FieldChange, ...] = ()
    """Desired-state fields that changed (``plan --base``), whether or not objects did."""

    @property
    def exit_code(self) -> int:
        """0 in sync; 1 when objects change, the desired state changed, a promise
        (guarantee, pinned claim) cannot be kept with the devices there are, a claim we did
        not generate bypasses the fence, or a kubelet plugin serves another driver name."""
        bypass = any(
            f.code in (obs.FindingCode.FENCE_BYPASS, obs.FindingCode.DRIVER_MISMATCH)
            for f in self.report.findings
        )
        if self.changes.in_sync and not self.meaning and not self.report.shortfalls and not bypass:
            return 0
        return 1


_UNMANAGED = (
    obs.FindingCode.NO_ADAPTER,
    obs.FindingCode.UNKNOWN_MODEL,
    obs.FindingCode.UNKNOWN_NODE,
    obs.FindingCode.NOT_NODE_LOCAL,
)
_SHOWN_PER_GROUP = 5


def unmanaged(report: rpt.Report) -> list[obs.Finding]:
    """Devices no adapter, value map or node covers: shown first, they are CU nobody can use.

    One line per driver and message (an unknown model on 40 nodes is one line, with the
    count and the first devices), not one per device: the summary must stay readable."""
    groups: dict[tuple[obs.FindingCode, str, str], list[str]] = defaultdict(list)
    for f in report.findings:
        if f.code in _UNMANAGED:
            groups[(f.code, f.subject.partition("/")[0], f.message)].append(f.subject)
    out = []
    for (code, driver, message), subjects in groups.items():
        if len(subjects) == 1:
            out.append(obs.Finding(code, subjects[0], message))
            continue
        shown = ", ".join(subjects[:_SHOWN_PER_GROUP])
        more = len(subjects) - _SHOWN_PER_GROUP
        more_text = f" and {more} more" if more > 0 else ""
        summary = f"{len(subjects)} devices: {message} ({shown}{more_text})"
        out.append(obs.Finding(code, driver, summary))
    return out


def escape(text: str) -> str:
    """One line of output from untrusted text: control characters (newlines, ANSI escapes)
    shown as escapes, so a file or object name cannot forge lines or annotations."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def overcommit(pool: rpt.PoolReport) -> str:
    """Guarantees beyond what the pool gives now, by how much (docs/plan.md, "Overcommit")."""
    share = pool.guaranteed_milli * 100 // max(pool.admittable_milli, 1)
    return (
        f"guarantees in {pool.name} add up to {rpt.milli_text(pool.guaranteed_milli)} CU, "
        f"{share}% of its {rpt.milli_text(pool.admittable_milli)} CU after headroom: "
        f"overcommitted by {rpt.milli_text(pool.overcommit_milli)} CU"
    )


def accounting(p: rpt.PoolReport) -> str:
    """``capacity = Σ tenants + unaccounted + free + headroom``, with the figures."""
    return (
        f"{rpt.milli_text(p.total_milli)} = tenants {rpt.milli_text(p.admitted_milli)} + "
        f"unaccounted {rpt.milli_text(p.unaccounted_milli)} + free "
        f"{rpt.milli_text(p.free_milli)} + headroom {rpt.milli_text(p.headroom_milli)}"
    )


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
    if not before or not after:
        return _one_sided(entry, before, after)
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


def _one_sided(entry: cs.ChangeSetEntry, before: str, after: str) -> list[str]:
    """A creation or deletion: what :func:`difflib.unified_diff` prints for it (one hunk of
    every line), written directly; a preview of thousands of new objects spent most of its
    time in the diff algorithm finding that nothing matches."""
    # Split as difflib is fed (keepends, then only "\n" stripped): a value holding U+2028
    # or "\r" must keep it, so the output stays byte-identical to the general path.
    old = [line.rstrip("\n") for line in before.splitlines(keepends=True)]
    new = [line.rstrip("\n") for line in after.splitlines(keepends=True)]
    if not old and not new:
        return []
    source = f"live/{entry.subject}" if entry.before is not None else "/dev/null"
    target = f"target/{entry.subject}" if entry.after is not None else "/dev/null"
    return [
        f"--- {source}".rstrip("\n"),
        f"+++ {target}".rstrip("\n"),
        f"@@ -{_hunk_range(len(old))} +{_hunk_range(len(new))} @@",
        *(f"-{line}" for line in old),
        *(f"+{line}" for line in new),
    ]


def _hunk_range(length: int) -> str:
    """One side of a hunk header for a side that starts at line 1 (``diff -u``'s format)."""
    if length == 1:
        return "1"
    return "0,0" if length == 0 else f"1,{length}"


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


def summary_lines(preview: Preview) -> list[str]:
    """The plain-text summary: promises, unmanaged devices, meaning changes, capacity,
    tenants, claims; everything a reader needs before any object diff."""
    report = preview.report
    out: list[str] = []
    if report.shortfalls:
        out.append("Promises the devices cannot keep now:")
        out += [f"  ! {s.render()}" for s in report.shortfalls]
    lost = unmanaged(report)
    if lost:
        out.append("Devices not managed (no adapter, unknown model or node):")
        out += [f"  ! {escape(f.render())}" for f in lost]
    if preview.meaning:
        out.append("Desired-state changes:")
        out += [f"  ~ {escape(c.render())}" for c in preview.meaning]
    out.append("Capacity (CU): capacity = tenants + unaccounted + free + headroom")
    for pool in report.pools:
        published = rpt.milli_text(pool.after_milli)
        if pool.before_milli != pool.after_milli:
            published = f"{rpt.milli_text(pool.before_milli)} → {published}"
        mark = "~" if pool.before_milli != pool.after_milli else " "
        out.append(
            f"{mark} {pool.name} ({pool.sharing}): published {published}; {accounting(pool)}"
        )
        if pool.overcommit_milli:
            out.append(f"  ! {overcommit(pool)}")
        if pool.basis != "raw":  # raw is what every pool sold before atSLO factors
            out.append(f"    factors: {escape(pool.basis)}")
        for line in pool.lines:
            out.append(f"    {line.render(pool.cu_per_device)}")
    if report.tenants:
        out.append("Tenants (CU charged; ~ marks a change):")
        for t in report.tenants:
            guaranteed, limit, claimed = _tenant_cells(t, bold=False)
            out.append(
                f"  {'~' if t.changed else ' '} {t.tenant} in {t.pool} (priority {t.priority}): "
                f"guaranteed {guaranteed}, limit {limit}, claimed {claimed}"
            )
    shown = [
        d
        for d in report.decisions
        if d.status is not admission.Status.ADMITTED or status_changed(d) or d.message
    ]
    if shown:
        out.append("Claims changed, not admitted, or with a note:")
        for d in shown:
            replicas = f", {_replicas_cell(d)} replicas" if d.replicas > 1 else ""
            note = f" ({d.message})" if d.message else ""
            out.append(
                f"  {_status_cell(d, bold=False)} {d.namespace}/{d.claim} "
                f"({d.tenant}, {d.pool}{replicas}): {d.reason}{note}"
            )
    for finding in report.findings:
        if finding.code not in _UNMANAGED:
            out.append(f"  note: {escape(finding.render())}")
    return out


def text(preview: Preview, *, color: bool = False, diffs: bool = True) -> str:
    """Summary first, then (``diffs``) the per-object unified diffs, then the counts."""
    out = [_paint(f"=== cu-reconciler plan {_title(preview)}", color)]
    if preview.refusal:
        out.append(_paint(f"!!! {preview.refusal}", color))
    for warning in preview.report.warnings:
        out.append(_paint(f"!!! {escape(warning)}", color))
    out += summary_lines(preview)
    out.append(f"Plan: {_counts(preview.changes)}.")
    if diffs:
        for entry in preview.changes.changes:
            out.append("")
            out.append(_paint(f"=== {entry.action} {escape(entry.subject)}", color))
            lines = map(escape, unified(entry))
            out.extend((_paint(line, color) for line in lines) if color else lines)
    elif preview.changes.changes:
        out.append("Object diffs left out (--diffs to show them):")
        out += [f"  {e.action} {escape(e.subject)}" for e in preview.changes.changes]
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


def md_literal(text: str, *, cell: bool = True) -> str:
    """Untrusted text (names, values, messages from a pull request) as one inline code span.

    Inside a code span GitHub renders no links, images, HTML, emphasis or @mentions (its
    mention and reference filters skip ``code``), so the text cannot reach anyone or fake
    markup. Control characters become escapes (no forged lines or rows); a backtick run cannot
    close the span because the fence is one backtick longer than the longest run inside; in a
    table ``cell`` ``|`` is escaped because GitHub splits cells on it even inside code spans
    (the escape renders as a plain ``|`` there). Empty text is an em dash.
    """
    flat = escape(text)
    if cell:
        flat = flat.replace("|", "\\|")
    if not flat:
        return "—"
    fence = "`" * (max((len(r) for r in re.findall("`+", flat)), default=0) + 1)
    pad = " " if flat[0] in "` " or flat[-1] in "` " else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def html_literal(text: str) -> str:
    """Untrusted text inside raw HTML (``<summary>``): entity-escaped, in ``<code>`` so
    GitHub's mention filter skips it, with control characters shown as escapes."""
    return f"<code>{html.escape(escape(text), quote=True)}</code>"


def markdown(preview: Preview, *, limit: int = MARKDOWN_LIMIT, diffs: bool = True) -> str:
    """The pull-request comment: summary tables first, per-object diffs while they fit in
    ``limit`` characters, then counts per kind, and a pointer to the full plan."""
    report = preview.report
    changes = preview.changes.changes
    head = [f"### cu-reconciler plan `{_title(preview)}`", ""]
    if preview.refusal:
        head += [f"> [!CAUTION]\n> **{md_literal(preview.refusal, cell=False)}**", ""]
    if report.shortfalls:
        head += ["> [!CAUTION]", "> **Promises the devices cannot keep now:**"]
        head += [f"> - {md_literal(x.render(), cell=False)}" for x in report.shortfalls[:50]]
        if len(report.shortfalls) > 50:
            head.append(f"> - … {len(report.shortfalls) - 50} more")
        head.append("")
    over = [p for p in report.pools if p.overcommit_milli]
    if over:
        head += ["> [!WARNING]", "> **Overcommitted guarantees:**"]
        # Only DNS-label pool names and numbers: nothing a pull request could forge.
        head += [f"> - {overcommit(p)}" for p in over]
        head.append("")
    lost = unmanaged(report)
    if lost:
        head += [
            "> [!WARNING]",
            "> **Devices not managed** (no adapter, unknown model or node):",
        ]
        head += [
            f"> - `{f.code}` {md_literal(f.subject, cell=False)}: "
            f"{md_literal(f.message, cell=False)}"
            for f in lost[:20]
        ]
        if len(lost) > 20:
            head.append(f"> - … {len(lost) - 20} more")
        head.append("")
    for warning in report.warnings[:20]:
        head += [f"> [!WARNING]\n> {md_literal(warning, cell=False)}", ""]
    if len(report.warnings) > 20:
        head += [f"… {len(report.warnings) - 20} more warnings (see `-o json`).", ""]
    head += [f"**{len(changes)} changes**: {_counts(preview.changes)}.", ""]
    if preview.meaning:
        head += [f"#### Desired-state changes ({len(preview.meaning)})", ""]
        rows = _table(
            ("Document", "Field", "Before", "After"),
            (
                (
                    md_literal(f"{c.kind}/{c.name}"),
                    md_literal(c.path) if c.path else "",
                    md_literal(c.before or ""),
                    md_literal(c.after or ""),
                )
                for c in preview.meaning
            ),
        )
        head += _budgeted(rows, limit // 8, "| … {n} more (see `-o json`) | | | |")
        head.append("")
    head += ["#### CU capacity per pool", ""]
    head.append("Capacity = tenants + unaccounted + free + headroom (docs/plan.md).")
    head.append("")
    head += _table(
        (
            "Pool",
            "Sharing",
            "Devices",
            "Published CU",
            "Capacity",
            "Tenants",
            "Unaccounted",
            "Free",
            "Headroom",
        ),
        (
            (
                p.name,
                p.sharing,
                str(p.devices),
                _arrow(p.before_milli, p.after_milli),
                rpt.milli_text(p.total_milli),
                rpt.milli_text(p.admitted_milli),
                rpt.milli_text(p.unaccounted_milli),
                rpt.milli_text(p.free_milli),
                rpt.milli_text(p.headroom_milli),
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
        if d.status is not admission.Status.ADMITTED or status_changed(d) or d.message
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
                    f"{d.reason}: {md_literal(d.message)}" if d.message else str(d.reason),
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
        if p.basis != "raw":
            arithmetic.append(f"  - factors: {p.basis}")
        arithmetic += [f"  - {line.render(p.cu_per_device)}" for line in p.lines]
        if p.headroom_percent:
            arithmetic.append(
                f"  - headroom {p.headroom_percent:g}% → admittable "
                f"{rpt.milli_text(p.admittable_milli)} CU"
            )
    others = [f for f in report.findings if f.code not in _UNMANAGED]
    if others:
        arithmetic.append("")
        arithmetic.append("Findings:")
        arithmetic += [
            f"- `{f.code}` {md_literal(f.subject, cell=False)}: {md_literal(f.message, cell=False)}"
            for f in others[:50]
        ]
        if len(others) > 50:
            arithmetic.append(f"- … {len(others) - 50} more")
    arithmetic += ["", "</details>", ""]
    if sum(len(x) + 1 for x in head + arithmetic) < limit // 2:
        head += arithmetic
    body: list[str] = []
    footer_reserve = 400
    used = sum(len(x) + 1 for x in head)
    rest_index = len(changes) if diffs else 0
    if diffs and changes:
        body = ["#### Changes", ""]
        used += 14
        for i, entry in enumerate(changes):
            block = [
                f"<details><summary><code>{entry.action}</code> "
                f"{html_literal(entry.subject)}</summary>",
                "",
                "```diff",
                *(line.replace("```", "` ` `") for line in unified(entry)),
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
        counts: dict[tuple[str, str], int] = {}
        for entry in changes[rest_index:]:
            kind = str((entry.after or entry.before or {}).get("kind", "object"))
            counts[(str(entry.action), kind)] = counts.get((str(entry.action), kind), 0) + 1
        title = "Not shown in detail" if rest_index else "Changes"
        body.append(f"{title} ({len(changes) - rest_index} objects; {FULL_PLAN_HINT}):")
        body.append("")
        for (action, kind), n in sorted(counts.items()):
            body.append(f"- `{action}` {n} × {kind}")
    out = "\n".join(head + body).rstrip() + "\n"
    if len(out) > limit:
        # The summary itself is over budget (tens of thousands of rows): cut and point on.
        cut = out[: limit - 200]
        out = cut[: cut.rfind("\n") + 1] + f"\n… cut at {limit:,} characters; {FULL_PLAN_HINT}\n"
    return out


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
        "inSync": preview.changes.in_sync and not preview.meaning,
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
                "tenantsCU": rpt.milli_text(p.admitted_milli),
                "unaccountedCU": rpt.milli_text(p.unaccounted_milli),
                "freeCU": rpt.milli_text(p.free_milli),
                "headroomCU": rpt.milli_text(p.headroom_milli),
                "headroomPercent": p.headroom_percent,
                "guaranteedCU": rpt.milli_text(p.guaranteed_milli),
                "overcommitCU": rpt.milli_text(p.overcommit_milli),
                "factorBasis": p.basis,
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
        "shortfalls": [
            {
                "tenant": x.tenant,
                "pool": x.pool,
                "subject": x.subject,
                "promisedCU": rpt.milli_text(x.promised_milli),
                "deliverableCU": rpt.milli_text(x.deliverable_milli),
                "heldCU": None if x.held_milli is None else rpt.milli_text(x.held_milli),
            }
            for x in report.shortfalls
        ],
        "desiredChanges": [
            {"kind": c.kind, "name": c.name, "path": c.path, "before": c.before, "after": c.after}
            for c in preview.meaning
        ],
        "exitCode": preview.exit_code,
    }


def json_text(preview: Preview) -> str:
    return json.dumps(json_document(preview), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

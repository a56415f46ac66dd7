#!/usr/bin/env python3
"""The preview comment and job summary: build them, and create or update the comment.

``body`` writes two Markdown files from the validate findings and the plan (``cuctl plan -o
markdown``): the *summary* (everything, for ``GITHUB_STEP_SUMMARY``) and the *comment*, sized to
the change: the plan's headline, cautions, desired-state changes and object diffs in full, but of
the repository-sized tables (pools, tenants, claims) only the rows that change, with a link to
the job summary (or, without a run to link to, the full plan folded in ``<details>``).

``post`` finds our comment among the pull request's comments (paged): written by our identity
(``CU_COMMENT_AUTHOR``, ``github-actions[bot]`` for the workflow token) and starting with the
marker. A comment anyone else wrote is never edited, marker or not. A refused or failed call
(a fork pull request's read-only token, 403, rate limits, no network) is a ``::warning``, not a
failed step: the summary and the outputs are already written.

Everything that comes from the pull request (file names, messages, branch names) reaches the
Markdown as literal code spans (:func:`reconciler.diff.render.md_literal`) and reaches the log as
escaped workflow-command data (``annotate.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import annotate  # the sibling script: workflow-command escaping

from reconciler.diff import render

MARKER = "<!-- cu-reconciler:plan-preview -->"
LIMIT = 65_536
"""GitHub's comment limit (characters)."""
SUMMARY_LIMIT = 1_000_000
"""GitHub's step-summary limit is 1 MiB per step; stay below it."""
DEFAULT_AUTHOR = "github-actions[bot]"
CONDENSED = ("#### CU capacity per pool", "#### CU per tenant", "#### Claims")
"""Plan sections whose size follows the repository, not the change: only changed rows shown."""
CHANGED = "→"
"""The plan marks every changed figure or status ``before → after``."""


def _fenced(text: str) -> list[str]:
    """Untrusted text as a fenced code block no line of it can close."""
    lines = [render.escape(line) for line in text.splitlines()]
    longest = max((len(r) for r in re.findall("`+", "\n".join(lines))), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, *lines, fence]


def _findings(path: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The validate findings, or None and why when validate wrote no JSON list."""
    try:
        data = json.loads(Path(path).read_text() or "[]")
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(data, list) or not all(isinstance(f, dict) for f in data):
        return None, "not a list of findings"
    return data, ""


def _validation(args: argparse.Namespace) -> list[str]:
    findings, why = _findings(args.validate)
    if findings == [] and args.validate_rc > 1:
        findings, why = None, "no findings written"
    if findings is None:
        err = Path(args.validate_err) if args.validate_err else None
        tail = err.read_text(errors="replace")[-4000:] if err and err.exists() else ""
        lines = [f"**Validation did not run to the end** (exit {args.validate_rc}; {why})."]
        return lines + (["", *_fenced(tail)] if tail.strip() else [])
    errors = [f for f in findings if f.get("severity") != "warning"]
    warnings = len(findings) - len(errors)
    if args.validate_rc == 0:
        lines = [f"**Validation passed** ({warnings} warning(s))."]
    else:
        lines = [f"**Validation failed**: {len(errors)} error(s), {warnings} warning(s)."]
    if findings:
        lines += ["", "| File | Line | Code | Message |", "|---|---|---|---|"]
        for f in findings[:50]:
            line = f.get("line")
            lines.append(
                f"| {render.md_literal(str(f.get('file', '')))} "
                f"| {line if isinstance(line, int) else ''} "
                f"| {render.md_literal(str(f.get('code', '')))} "
                f"| {render.md_literal(str(f.get('message', '')))} |"
            )
        if len(findings) > 50:
            lines.append(f"| … | | | {len(findings) - 50} more |")
    return lines


def _plan(args: argparse.Namespace) -> list[str]:
    """The plan's Markdown (already escaped by cuctl), or why there is none."""
    if args.plan_rc == 0:
        return ["**No change**: the cluster would stay as it is."]
    if args.plan_rc == 1:
        return Path(args.plan).read_text(errors="replace").rstrip().splitlines()
    if args.validate_rc <= 1:
        err = Path(args.plan_err).read_text(errors="replace") if args.plan_err else ""
        return ["**The plan could not be computed.**", "", *_fenced(err[-4000:])]
    return []


def condense(plan: list[str]) -> list[str]:
    """The plan sized to the change: the repository-sized tables keep only rows that change.

    A table row stays when it shows a change (``→``); the rest become one line with their
    count. The CU arithmetic block and the per-pool cost figures are left to the full plan (the
    bills that change stay). Section and table boundaries are
    those ``cuctl plan -o markdown`` writes (one ``#### `` heading per section).
    """
    out: list[str] = []
    condensing = skipping = False
    table: list[str] = []

    def flush() -> None:
        if not table:
            return
        rows = table[2:]
        kept = [r for r in rows if CHANGED in r]
        if kept:
            out.extend(table[:2] + kept)
        left = len(rows) - len(kept)
        if left and kept:
            out.append(f"\n_{left} unchanged row(s) not shown; see the full plan._")
        elif left:
            out.append(f"_No change here ({left} unchanged row(s); see the full plan)._")
        table.clear()

    for line in plan:
        if skipping:
            skipping = line.strip() != "</details>"
            continue
        if condensing and line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith(("<details><summary>CU arithmetic", "<details><summary>Costs per")):
            skipping = True
            continue
        if line.startswith("#"):
            condensing = line.startswith(CONDENSED)
        if condensing and line.startswith("Capacity = "):
            continue
        if line or (out and out[-1]):
            out.append(line)
    flush()
    return out


def _run_url() -> str:
    server = os.environ.get("GITHUB_SERVER_URL", "").rstrip("/")
    repo = os.environ.get("GITHUB_REPOSITORY", "")
    run = os.environ.get("GITHUB_RUN_ID", "")
    if not (server and repo and run.isdigit()):
        return ""
    attempt = os.environ.get("GITHUB_RUN_ATTEMPT", "")
    return f"{server}/{repo}/actions/runs/{run}" + (f"/attempts/{attempt}" if attempt else "")


def _cut(text: str, limit: int, hint: str) -> str:
    if len(text) <= limit:
        return text
    note = f"\n\n… cut at {limit:,} characters; {hint}\n"
    cut = text[: limit - len(note)]
    return cut[: cut.rfind("\n") + 1] + note


def build(args: argparse.Namespace) -> tuple[str, str]:
    """(comment, summary): the comment sized to the change, the summary complete."""
    title = (
        f"### cu-reconciler preview: `{args.head[:12]}` against "
        f"{render.md_literal(args.base, cell=False)}"
    )
    head = [title, "", *_validation(args), ""]
    plan = _plan(args)
    summary = "\n".join(head + plan).rstrip() + "\n"
    short = condense(plan) if args.plan_rc == 1 else plan
    comment = [MARKER, *head, *short, ""]
    if short != plan:
        url = _run_url()
        if url:
            comment.append(
                f"Full plan (pools, tenants, claims, CU arithmetic): [job summary]({url})."
            )
        else:
            fold = ["<details><summary>Full plan</summary>", "", *plan, "", "</details>"]
            room = LIMIT - sum(len(x) + 1 for x in comment) - 200
            if sum(len(x) + 1 for x in fold) < room:
                comment += fold
            else:
                comment.append(f"Full plan: {render.FULL_PLAN_HINT}.")
    text = _cut("\n".join(comment).rstrip() + "\n", LIMIT, "run `cuctl plan --base` locally")
    return text, _cut(summary, SUMMARY_LIMIT, "run `cuctl plan --base` locally")


# ------------------------------------------------------------------------------------ post


class Refused(Exception):
    """An API call GitHub refused or that did not complete."""


def _call(method: str, url: str, token: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/vnd.github+json")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("X-GitHub-Api-Version", "2022-11-28")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        reason = ""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            reason = str(json.loads(exc.read()).get("message", ""))
        raise Refused(f"{method} {exc.code} {exc.reason}: {reason}".rstrip(": ")) from exc
    except (OSError, ValueError) as exc:  # URLError, timeouts, a body that is not JSON
        raise Refused(f"{method} failed: {exc}") from exc


def ours(comment: Any, author: str) -> bool:
    """Our comment: written by our identity and starting with the marker. Both, because the
    marker alone is text anyone can paste into a comment of their own."""
    if not isinstance(comment, dict):
        return False
    user = comment.get("user")
    login = user.get("login") if isinstance(user, dict) else None
    body = comment.get("body")
    return login == author and isinstance(body, str) and body.startswith(MARKER)


def publish(text: str, api: str, repo: str, number: str, token: str, author: str) -> str:
    """Update our comment in place, or create it: ``updated <id>`` or ``created <id>``."""
    comments = f"{api}/repos/{repo}/issues/{number}/comments"
    page = 1
    while True:
        batch = _call("GET", f"{comments}?per_page=100&page={page}", token)
        if not isinstance(batch, list):
            raise Refused("GET: the comment list is not a list")
        for c in batch:
            if ours(c, author) and isinstance(c.get("id"), int):
                _call(
                    "PATCH", f"{api}/repos/{repo}/issues/comments/{c['id']}", token, {"body": text}
                )
                return f"updated {c['id']}"
        if len(batch) < 100:
            break
        page += 1
    created = _call("POST", comments, token, {"body": text})
    return f"created {created.get('id') if isinstance(created, dict) else '?'}"


def post(args: argparse.Namespace) -> int:
    """Post the comment; any refusal is a warning and ``comment=failed`` (exit 0)."""
    env = os.environ
    number = env.get("CU_PR_NUMBER", "")
    token = env.get("GITHUB_TOKEN", "")
    result = "skipped"
    if not (number.isdigit() and token and env.get("GITHUB_REPOSITORY")):
        print(annotate.workflow_command("notice", "no pull request or token: comment skipped"))
    else:
        try:
            try:
                text = Path(args.body).read_text()
            except OSError as exc:
                raise Refused(f"no comment body: {exc}") from exc
            done = publish(
                text,
                env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
                env["GITHUB_REPOSITORY"],
                number,
                token,
                env.get("CU_COMMENT_AUTHOR") or DEFAULT_AUTHOR,
            )
            result = done.split()[0]
            print(f"{done} (comment)", file=sys.stderr)
        except Refused as exc:
            result = "failed"
            message = (
                f"the preview comment was not posted ({exc}); a pull request from a fork gets a "
                "read-only token. The plan is in the job summary."
            )
            print(annotate.workflow_command("warning", message, title="cu-reconciler preview"))
    if args.output:
        with open(args.output, "a", encoding="utf-8") as out:
            out.write(f"comment={result}\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("body")
    b.add_argument("--validate", required=True)
    b.add_argument("--validate-rc", type=int, required=True)
    b.add_argument("--validate-err", default="")
    b.add_argument("--plan", default="")
    b.add_argument("--plan-err", default="")
    b.add_argument("--plan-rc", type=int, required=True)
    b.add_argument("--base", required=True)
    b.add_argument("--head", required=True)
    b.add_argument("--summary", required=True, help="Write the complete summary here.")
    p = sub.add_parser("post")
    p.add_argument("--body", required=True)
    p.add_argument("--output", default="", help="GITHUB_OUTPUT: append comment=<result>.")
    args = parser.parse_args()
    if args.cmd == "body":
        comment, summary = build(args)
        Path(args.summary).write_text(summary)
        sys.stdout.write(comment)
        return 0
    return post(args)


if __name__ == "__main__":
    sys.exit(main())

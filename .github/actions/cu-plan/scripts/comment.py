#!/usr/bin/env python3
"""The preview comment: build its body, and create or update it on the pull request.

``body``: Markdown from the validate findings and the plan (``cuctl plan -o markdown``), cut to
GitHub's 65,536-character comment limit. ``post``: find our comment by a hidden marker among
the pull request's comments (paged) and PATCH it, or POST a new one, so each push updates one
comment in place. Uses only the standard library and the REST API at ``GITHUB_API_URL``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

MARKER = "<!-- cu-reconciler:plan-preview -->"
LIMIT = 65_536


def body(args: argparse.Namespace) -> str:
    findings = json.loads(Path(args.validate).read_text() or "[]")
    errors = [f for f in findings if f.get("severity") != "warning"]
    warnings = [f for f in findings if f.get("severity") == "warning"]
    head = args.head[:12]
    lines = [MARKER, f"### cu-reconciler preview: `{head}` against `{args.base}`", ""]
    if args.validate_rc == 0:
        lines.append(f"**Validation passed** ({len(warnings)} warning(s)).")
    else:
        lines.append(f"**Validation failed**: {len(errors)} error(s), {len(warnings)} warning(s).")
    if findings:
        lines += ["", "| File | Line | Code | Message |", "|---|---|---|---|"]
        for f in findings[:50]:
            msg = str(f.get("message", "")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{f['file']}` | {f.get('line', '')} | {f.get('code', '')} | {msg} |")
        if len(findings) > 50:
            lines.append(f"| … | | | {len(findings) - 50} more |")
    lines.append("")
    plan = Path(args.plan).read_text() if args.plan else ""
    if args.plan_rc == 0:
        lines.append("**No change**: the cluster would stay as it is.")
    elif args.plan_rc == 1:
        lines.append(plan)
    elif args.validate_rc <= 1:
        err = Path(args.plan_err).read_text().strip() if args.plan_err else ""
        lines += ["**The plan could not be computed.**", "", "```", err[-4000:], "```"]
    text = "\n".join(lines).rstrip() + "\n"
    if len(text) > LIMIT:
        note = "\n\n… cut to fit GitHub's comment limit; run `cuctl plan --base` locally.\n"
        text = text[: LIMIT - len(note)] + note
    return text


def _call(method: str, url: str, token: str, payload: dict[str, Any] | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/vnd.github+json")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("X-GitHub-Api-Version", "2022-11-28")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def post(args: argparse.Namespace) -> int:
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repo = os.environ["GITHUB_REPOSITORY"]
    number = os.environ["CU_PR_NUMBER"]
    token = os.environ["GITHUB_TOKEN"]
    text = Path(args.body).read_text()
    comments = f"{api}/repos/{repo}/issues/{number}/comments"
    page = 1
    while True:
        batch = _call("GET", f"{comments}?per_page=100&page={page}", token)
        for c in batch:
            if MARKER in (c.get("body") or ""):
                url = f"{api}/repos/{repo}/issues/comments/{c['id']}"
                _call("PATCH", url, token, {"body": text})
                print(f"updated comment {c['id']}", file=sys.stderr)
                return 0
        if len(batch) < 100:
            break
        page += 1
    created = _call("POST", comments, token, {"body": text})
    print(f"created comment {created['id']}", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("body")
    b.add_argument("--validate", required=True)
    b.add_argument("--validate-rc", type=int, required=True)
    b.add_argument("--plan", default="")
    b.add_argument("--plan-err", default="")
    b.add_argument("--plan-rc", type=int, required=True)
    b.add_argument("--base", required=True)
    b.add_argument("--head", required=True)
    p = sub.add_parser("post")
    p.add_argument("--body", required=True)
    args = parser.parse_args()
    if args.cmd == "body":
        sys.stdout.write(body(args))
        return 0
    return post(args)


if __name__ == "__main__":
    sys.exit(main())

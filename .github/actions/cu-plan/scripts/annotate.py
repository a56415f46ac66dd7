#!/usr/bin/env python3
"""Turn ``cuctl validate -o json`` (stdin) into GitHub workflow commands (stdout).

One ``::error`` or ``::warning`` per finding, with ``file``, ``line``, ``col`` and ``title``.
GitHub's escaping: in the message ``%``, CR and LF are percent-encoded; in property values also
``:`` and ``,`` (a file name with a comma or colon would otherwise end the property early).
File paths are made relative to the repository root the workflow runs in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(finding: dict[str, object], root: str) -> str:
    level = "warning" if finding.get("severity") == "warning" else "error"
    path = os.path.normpath(os.path.join(root, str(finding["file"])))
    props = {
        "file": path,
        "line": str(finding.get("line") or 1),
        "col": str(finding.get("column") or 1),
        "title": f"cuctl validate {finding.get('code', '')}".strip(),
    }
    message = str(finding.get("message", ""))
    clusters = finding.get("clusters")
    if isinstance(clusters, list) and clusters:
        message += f" (cluster {', '.join(str(c) for c in clusters)})"
    joined = ",".join(f"{k}={escape_property(v)}" for k, v in props.items())
    return f"::{level} {joined}::{escape_data(message)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=".", help="Path of the repository in the workspace.")
    args = parser.parse_args()
    text = sys.stdin.read().strip()
    findings = json.loads(text) if text else []
    for finding in findings:
        print(command(finding, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())

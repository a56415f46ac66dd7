#!/usr/bin/env python3
"""GitHub workflow commands from untrusted text: annotations, and a safe relay of raw output.

``annotate.py`` (default): ``cuctl validate -o json`` on stdin becomes one ``::error`` or
``::warning`` per finding on stdout, with ``file``, ``line``, ``col`` and ``title``.

``annotate.py relay``: copies text (cuctl's stderr) from stdin to stdout so that no line of it
is a workflow command. The runner reads a step's output line by line (CR, LF or CRLF end a line)
and runs a line as a command when, after leading whitespace, it starts with ``::`` (or holds the
older ``##[`` form); a file named ``::add-mask::x`` or ``a\\n::stop-commands::t`` in a pull
request would otherwise forge one. Such lines get a visible ``| `` prefix and ``##[`` becomes
``## [``; every other line passes unchanged.

GitHub's escaping for the commands we write (actions/toolkit ``command.ts``, the runner's
``ActionCommand``): in the message ``%``, CR and LF are percent-encoded; in property values also
``:`` and ``,`` (a file name with a comma or colon would otherwise end the property early). File
paths are made relative to the repository root the workflow runs in.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(name: str, message: str, **props: str) -> str:
    """One ``::name k=v,…::message`` line, every part escaped."""
    joined = ",".join(f"{k}={escape_property(v)}" for k, v in props.items())
    return f"::{name}{' ' + joined if joined else ''}::{escape_data(message)}"


def neutral(line: str) -> str:
    """One line of untrusted output that the runner will not take for a command."""
    if line.lstrip().startswith("::"):
        line = "| " + line
    return line.replace("##[", "## [")


def relay(text: str) -> str:
    """Untrusted output, every line neutral (see the module docstring)."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(neutral(line) + "\n" for line in lines)


def command(finding: dict[str, object], root: str) -> str:
    level = "warning" if finding.get("severity") == "warning" else "error"
    path = os.path.normpath(os.path.join(root, str(finding["file"])))
    message = str(finding.get("message", ""))
    clusters = finding.get("clusters")
    if isinstance(clusters, list) and clusters:
        message += f" (cluster {', '.join(str(c) for c in clusters)})"
    return workflow_command(
        level,
        message,
        file=path,
        line=str(finding.get("line") or 1),
        col=str(finding.get("column") or 1),
        title=f"cuctl validate {finding.get('code', '')}".strip(),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", nargs="?", default="annotate", choices=("annotate", "relay"))
    parser.add_argument("--root", default=".", help="Path of the repository in the workspace.")
    args = parser.parse_args()
    data = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if args.mode == "relay":
        sys.stdout.write(relay(data))
        return 0
    try:
        findings = json.loads(data) if data.strip() else []
    except ValueError:
        findings = []
    if not isinstance(findings, list):
        findings = []
    for finding in findings:
        if isinstance(finding, dict) and "file" in finding:
            print(command(finding, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())

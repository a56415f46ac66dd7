"""Diagnostics: one finding about the user's input, with its location.

Every validation stage returns these instead of raising, so one run reports every problem,
printed ``file:line:col: code: message`` like a compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Diagnostic:
    """A finding; ``code`` is stable (documented in docs/errors.md) so tools can match on it."""

    file: str
    line: int
    column: int
    code: str
    message: str
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        """One line, always: a file name or message with a newline or an escape sequence
        cannot forge further diagnostics (or CI annotations) in text output."""
        return (
            f"{printable(self.file)}:{self.line}:{self.column}: {self.code}: "
            f"{printable(self.message)}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }


def printable(text: str) -> str:
    """Control and other non-printable characters as Python escapes (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)

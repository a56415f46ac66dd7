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
        return f"{self.file}:{self.line}:{self.column}: {self.code}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
        }

"""Every diagnostic code is documented, once, in docs/errors.md."""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.model import codes

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_code_has_a_row() -> None:
    rows = re.findall(r"^\| (CU\d{3}) \|", DOC.read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(c.value for c in codes.Code)
    assert len(rows) == len(set(rows))


def test_codes_are_grouped_by_family() -> None:
    for code in codes.Code:
        assert code.family in {"load", "schema", "semantic", "observed"}

"""The broken-input corpus: every file under testdata/broken/ must fail with its code and line.

Each case is one file laid over the example repository (examples/gitrepo, snapshot
included), so semantic cases can refer to its pools, tenants and devices. The header of
each case says what to expect and, optionally, where to put it and what to take away::

    # expect: CU305 12          code and line in the case file (several lines allowed)
    # path: tenants/x.yaml      where the case goes (default: case.yaml)
    # remove: cluster.yaml      a base file to delete first
    # expect-at: .:1 CU302      a finding in another file (file:line code)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.source import tree as source_tree
from reconciler.source import worktree
from reconciler.validate import validation

ROOT = Path(__file__).resolve().parents[2]
BROKEN = Path(__file__).parent / "testdata" / "broken"
_HEADER = re.compile(rb"^#\s*(expect|expect-at|path|remove):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    path: str
    remove: tuple[str, ...]
    expected: tuple[tuple[str, int, str], ...]  # (file, line, code)


def _case(file: Path) -> Case:
    content = file.read_bytes()
    path, remove, expected = "case.yaml", [], []
    for raw in content.splitlines():
        if not raw.startswith(b"#"):
            break
        match = _HEADER.match(raw)
        if match is None:
            continue
        key, value = match.group(1).decode(), match.group(2).decode()
        if key == "path":
            path = value
        elif key == "remove":
            remove.append(value)
        elif key == "expect":
            code, line = value.split()
            expected.append(("", int(line), code))
        else:
            where, code = value.split()
            file_name, _, line = where.rpartition(":")
            expected.append((file_name, int(line), code))
    assert expected, f"{file.name}: no '# expect:' header"
    expected = [(f or path, line, code) for f, line, code in expected]
    return Case(file.stem, content, path, tuple(remove), tuple(expected))


CASES = [_case(f) for f in sorted(BROKEN.iterdir()) if f.is_file()]


@pytest.fixture(scope="module")
def base() -> source_tree.SourceTree:
    return worktree.read_worktree(str(ROOT / "examples" / "gitrepo"))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60


def test_base_is_valid(base: source_tree.SourceTree) -> None:
    result = validation.validate_tree(base)
    assert result.diagnostics == ()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_input(case: Case, base: source_tree.SourceTree) -> None:
    files = {k: v for k, v in base.files.items() if k not in case.remove}
    files[case.path] = case.content
    result = validation.validate_tree(source_tree.SourceTree(base.revision, "repo", files))
    found = {(d.file, d.line, d.code) for d in result.diagnostics}
    for expected in case.expected:
        assert expected in found, f"expected {expected}, got:\n" + "\n".join(
            d.render() for d in result.diagnostics
        )
    if any(code not in _WARNINGS for _, _, code in case.expected):
        assert result.state is None


_WARNINGS = {"CU116", "CU317", "CU323", "CU404", "CU322", "CU403", "CU405", "CU406", "CU407"}
"""What the observed devices say is a state, not a Git error: warnings (docs/errors.md)."""

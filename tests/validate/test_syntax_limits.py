"""Loading limits that need generated input (too big to keep as corpus files)."""

from __future__ import annotations

from reconciler.model import codes
from reconciler.validate import syntax


def test_document_file_over_one_mebibyte() -> None:
    content = b"a: " + b"x" * (syntax.DOCUMENT_LIMITS.max_file_bytes) + b"\n"
    documents, problems = syntax.load("big.yaml", content)
    assert documents == []
    assert [(p.line, p.code) for p in problems] == [(1, codes.Code.FILE_TOO_LARGE)]


def test_bracket_bomb_is_refused_before_the_c_parser_sees_it() -> None:
    # 100,000 nested brackets crash the C parser (segmentation fault) if it ever parses them.
    content = ("a: " + "[" * 100_000 + "]" * 100_000).encode()
    _, problems = syntax.load("bomb.yaml", content)
    assert [p.code for p in problems] == [codes.Code.TOO_DEEP]


def test_node_budget_per_document() -> None:
    limits = syntax.Limits(max_nodes=100)
    content = ("a: [" + ", ".join(["1"] * 200) + "]\n").encode()
    _, problems = syntax.load("wide.yaml", content, limits)
    assert [p.code for p in problems] == [codes.Code.ALIAS_EXPANSION]


def test_utf8_bom_is_accepted_and_positions_are_one_based() -> None:
    documents, problems = syntax.load("bom.yaml", b"\xef\xbb\xbfa:\n  b: 1\n")
    assert problems == [] and documents[0].data == {"a": {"b": 1}}
    assert documents[0].locate(("a", "b")) == syntax.Position(2, 6)
    assert documents[0].locate(("a", "b"), key=True) == syntax.Position(2, 3)
    assert documents[0].locate(("a", "missing")) == syntax.Position(2, 3)

"""Messages that point at the cause (issue 20, item 8), and one fatal error for a revision
over its budget (items 2 and 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.model import codes
from reconciler.source import tree as source_tree
from reconciler.source import worktree
from reconciler.validate import syntax, validate_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


@pytest.fixture(scope="module")
def example() -> source_tree.SourceTree:
    return worktree.read_worktree(str(EXAMPLE))


@pytest.mark.parametrize(
    ("encode", "named"),
    [
        pytest.param(
            lambda t: "\ufeff".encode("utf-16-le") + t.encode("utf-16-le"),
            "UTF-16LE (byte-order mark FF FE)",
            id="utf16le-bom",
        ),
        pytest.param(
            lambda t: "\ufeff".encode("utf-16-be") + t.encode("utf-16-be"),
            "UTF-16BE (byte-order mark FE FF)",
            id="utf16be-bom",
        ),
        pytest.param(
            lambda t: t.encode("utf-16-le"), "UTF-16LE (no byte-order mark)", id="utf16le-no-bom"
        ),
        pytest.param(
            lambda t: "\ufeff".encode("utf-32-le") + t.encode("utf-32-le"),
            "UTF-32LE",
            id="utf32le-bom",
        ),
    ],
)
def test_a_utf16_file_names_its_encoding_and_is_the_first_error(
    example: source_tree.SourceTree, encode: object, named: str
) -> None:
    text = example.files["tenants/ads-embedding.yaml"].decode()
    files = dict(example.files)
    files["tenants/ads-embedding.yaml"] = encode(text)  # type: ignore[operator]
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    first = result.errors[0]
    assert first.file == "tenants/ads-embedding.yaml" and first.code == codes.Code.NOT_UTF8
    assert named in first.message and "save it as UTF-8" in first.message
    assert {d.file for d in result.errors} == {"tenants/ads-embedding.yaml"}, [
        d.render() for d in result.errors
    ]


def test_keys_one_and_true_are_not_called_duplicates_of_each_other() -> None:
    _, problems = syntax.load("f.yaml", b"kind: X\nmetadata:\n  1: a\n  true: b\n")
    (problem,) = problems
    assert "duplicate key True" not in problem.message
    assert "'true' (a boolean) and key '1' (an integer" in problem.message
    assert "quote them as strings" in problem.message
    _, problems = syntax.load("f.yaml", b"kind: X\nmetadata:\n  a: 1\n  a: 2\n")
    assert "duplicate key 'a'" in problems[0].message


def test_a_homoglyph_names_the_ascii_word_it_imitates(example: source_tree.SourceTree) -> None:
    path = "claims/chat-assistant/decode.yaml"
    assert b"deny: [hygon]" in example.files[path]
    lookalike = "hyg\u043en"  # a Cyrillic о
    files = dict(example.files)
    files[path] = example.files[path].replace(b"deny: [hygon]", f"deny: [{lookalike}]".encode())
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    (finding,) = [d for d in result.errors if d.file == path]
    assert "looks like 'hygon'" in finding.message, finding.message
    assert "U+043E CYRILLIC SMALL LETTER O" in finding.message
    assert "an ASCII name" not in finding.message


def test_too_many_files_is_the_only_error(
    example: source_tree.SourceTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    for rel, data in example.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for i in range(40):
        (root / f"extra/broken-{i}.yaml").parent.mkdir(exist_ok=True)
        (root / f"extra/broken-{i}.yaml").write_bytes(b"a: [\n")
    monkeypatch.setattr(source_tree, "MAX_FILES", len(example.files) + 10)
    result = validate_tree(worktree.read_worktree(str(root)))
    (only,) = result.diagnostics
    assert only.code == codes.Code.TOO_MANY_FILES and "refused whole" in only.message


def test_a_revision_over_the_node_budget_is_one_fatal_error(
    example: source_tree.SourceTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(syntax, "NODE_BUDGET", 50_000)
    monkeypatch.setattr(syntax.Budget, "__init__", _small_budget)
    flood = b"kind: X\nitems: [" + b"1," * 30_000 + b"1]\n"
    files = dict(example.files)
    for i in range(5):
        files[f"aa/flood-{i}.yaml"] = flood
    files["zz/broken.yaml"] = b"a: [\n"
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    (only,) = result.diagnostics
    assert only.code == codes.Code.REVISION_TOO_LARGE and only.file == "aa/flood-1.yaml"
    assert "50000-node budget" in only.message and "layout.exclude" in only.message
    assert result.state is None


def _small_budget(self: syntax.Budget, limit: int = 50_000, left: int = 50_000) -> None:
    self.limit, self.left, self.exhausted = limit, left, False


def test_the_budget_is_checked_before_composing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flow list far over the budget is refused by counting parser events: the composer
    (the memory) never runs."""
    from reconciler import _yamlcore

    composed: list[int] = []
    real = _yamlcore.yaml

    def spy() -> object:
        composed.append(1)
        return real()

    monkeypatch.setattr(syntax, "_yaml", spy)
    budget = syntax.Budget(limit=1000, left=1000)
    docs, problems = syntax.load("f.yaml", b"a: [" + b"1," * 5000 + b"1]\n", budget=budget)
    assert docs == [] and problems[0].code == codes.Code.REVISION_TOO_LARGE
    assert budget.exhausted and composed == []

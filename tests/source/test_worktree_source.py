"""Reading the working tree: uncommitted files, symlinks and size limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.model import codes
from reconciler.source import tree as source_tree
from reconciler.source import worktree


def test_reads_candidates_only(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: 1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text("b: 1\n")
    (tmp_path / "README.md").write_text("# hi\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "c.yaml").write_text("c: 1\n")
    tree = worktree.read_worktree(str(tmp_path))
    assert set(tree.files) == {"a.yaml", "sub/b.yml"}
    assert tree.revision == source_tree.WORKTREE


def test_symlink_outside_is_reported_and_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("secret: 1\n")
    root = tmp_path / "repo"
    root.mkdir()
    os.symlink(outside, root / "link.yaml")
    os.symlink(tmp_path, root / "dirlink")
    (root / "real.yaml").write_text("a: 1\n")
    os.symlink("real.yaml", root / "inside.yaml")
    tree = worktree.read_worktree(str(root))
    assert "link.yaml" not in tree.files
    assert tree.files["inside.yaml"] == b"a: 1\n"
    assert {(d.file, d.code) for d in tree.diagnostics} == {
        ("link.yaml", codes.Code.SYMLINK_ESCAPE),
        ("dirlink", codes.Code.SYMLINK_ESCAPE),
    }


def test_dangling_symlink_is_unreadable(tmp_path: Path) -> None:
    os.symlink("missing.yaml", tmp_path / "dangling.yaml")
    tree = worktree.read_worktree(str(tmp_path))
    assert [d.code for d in tree.diagnostics] == [codes.Code.UNREADABLE]


def test_oversize_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_tree, "MAX_FILE_BYTES", 100)
    (tmp_path / "big.yaml").write_text("a: " + "x" * 200 + "\n")
    tree = worktree.read_worktree(str(tmp_path))
    assert "big.yaml" not in tree.files
    assert [(d.file, d.code) for d in tree.diagnostics] == [("big.yaml", codes.Code.FILE_TOO_LARGE)]


def test_too_many_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_tree, "MAX_FILES", 3)
    for i in range(5):
        (tmp_path / f"f{i}.yaml").write_text("a: 1\n")
    tree = worktree.read_worktree(str(tmp_path))
    assert [d.code for d in tree.diagnostics] == [codes.Code.TOO_MANY_FILES]


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(errors.SourceError):
        worktree.read_worktree(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("link", "target", "expected"),
    [
        ("a/b.yaml", "c.yaml", "a/c.yaml"),
        ("a/b.yaml", "../c.yaml", "c.yaml"),
        ("a/b.yaml", "../../c.yaml", None),
        ("b.yaml", "/etc/passwd", None),
        ("b.yaml", "./x/../y.yaml", "y.yaml"),
    ],
)
def test_resolve_link(link: str, target: str, expected: str | None) -> None:
    assert source_tree.resolve_link(link, target) == expected

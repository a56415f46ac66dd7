"""The working tree and ``--rev`` judge a repository the same way (issue 20, item 8): the
pre-commit hook and the controller must not see different repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.controller import mirror
from reconciler.model import codes
from reconciler.source import git as git_source
from reconciler.source import tree as source_tree
from reconciler.source import worktree


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@x.invalid", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _both(root: Path) -> tuple[source_tree.SourceTree, source_tree.SourceTree]:
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "c")
    return worktree.read_worktree(str(root)), git_source.read_revision(str(root), "HEAD")


def _verdict(t: source_tree.SourceTree) -> list[tuple[str, str, str]]:
    return sorted((d.file, d.code, d.severity) for d in t.diagnostics)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "pools").mkdir()
    (root / "pools" / "a.yaml").write_text("kind: CUPool\n")
    return root


def test_symlinked_directories(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("kind: Secret\n")
    os.symlink(outside, repo / "escape")
    os.symlink("pools", repo / "alias")
    os.symlink("/etc/passwd", repo / "notes")
    on_disk, at_rev = _both(repo)
    assert (
        _verdict(on_disk)
        == _verdict(at_rev)
        == [
            ("escape", codes.Code.SYMLINK_ESCAPE, "error"),
            ("notes", codes.Code.SYMLINK_ESCAPE, "error"),
        ]
    )
    assert sorted(on_disk.files) == sorted(at_rev.files) == ["pools/a.yaml"]


def test_submodules_and_nested_repositories(repo: Path, tmp_path: Path) -> None:
    sub = repo / "vendor"
    sub.mkdir()
    _git(sub, "init", "-q", "-b", "main")
    (sub / "pool.yaml").write_text("kind: CUPool\n")
    _git(sub, "add", "-A")
    _git(sub, "commit", "-q", "-m", "sub")
    on_disk, at_rev = _both(repo)  # `git add` records vendor/ as a gitlink
    assert "160000" in _git(repo, "ls-tree", "HEAD", "vendor")
    assert (
        _verdict(on_disk)
        == _verdict(at_rev)
        == [("vendor", codes.Code.NESTED_REPOSITORY, "warning")]
    )
    assert sorted(on_disk.files) == sorted(at_rev.files) == ["pools/a.yaml"]


@pytest.mark.parametrize("bad", ["..", "../x", "a/../../b", "/etc", "./../.."])
def test_a_path_out_of_the_clone_is_refused_and_creates_nothing(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match=r"outside|absolute"):
        source_tree.subpath(bad)
    cache = tmp_path / "cache"
    m = mirror.Mirror("file:///nowhere", "main", cache, bad)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(errors.SourceError, match="--path"):
        _ = m.source_path
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert source_tree.subpath("a/./b/") == "a/b" and source_tree.subpath(".") == "."

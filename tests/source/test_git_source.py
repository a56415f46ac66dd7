"""Reading desired state at a Git revision: real repositories, never mocks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import git
import pytest

from reconciler import errors, source
from reconciler.model import codes
from reconciler.source import tree as source_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


def _commit(repo: git.Repo, message: str) -> git.Commit:
    repo.git.add(A=True)
    return repo.index.commit(message)


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "desired"
    shutil.copytree(EXAMPLE, root)
    repo = git.Repo.init(root, initial_branch="main")
    _commit(repo, "initial desired state")
    return repo


def test_reads_head_and_records_the_full_sha(repo: git.Repo) -> None:
    tree = source.read(str(repo.working_tree_dir), "HEAD")
    assert tree.revision == repo.head.commit.hexsha
    assert len(tree.revision) == 40
    assert "cluster.yaml" in tree.files
    assert "observed/snapshot.yaml" in tree.files
    assert tree.diagnostics == ()


def test_reads_a_past_commit_not_the_worktree(repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    first = repo.head.commit
    (root / "pools" / "batch.yaml").write_text("changed: true\n")
    second = _commit(repo, "break batch pool")
    (root / "pools" / "batch.yaml").write_text("uncommitted: true\n")
    old = source.read(str(root), first.hexsha)
    new = source.read(str(root), "HEAD")
    disk = source.read(str(root), None)
    assert old.revision == first.hexsha and b"kind: CUPool" in old.files["pools/batch.yaml"]
    assert new.revision == second.hexsha and new.files["pools/batch.yaml"] == b"changed: true\n"
    assert disk.revision == source_tree.WORKTREE
    assert disk.files["pools/batch.yaml"] == b"uncommitted: true\n"


def test_reads_a_branch_and_a_relative_revision(repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    repo.git.checkout("-b", "feature/new-pool")
    (root / "pools" / "extra.yaml").write_text("a: 1\n")
    feature = _commit(repo, "add a pool")
    repo.git.checkout("main")
    assert "pools/extra.yaml" not in source.read(str(root), "main").files
    branch = source.read(str(root), "feature/new-pool")
    assert branch.revision == feature.hexsha and "pools/extra.yaml" in branch.files
    parent = source.read(str(root), "feature/new-pool~1")
    assert parent.revision == repo.commit("main").hexsha


def test_reads_a_bare_remote(repo: git.Repo, tmp_path: Path) -> None:
    bare = repo.clone(str(tmp_path / "remote.git"), bare=True)
    tree = source.read(str(bare.git_dir), "main")
    assert tree.revision == repo.head.commit.hexsha
    assert set(tree.files) == set(source.read(str(repo.working_tree_dir), "HEAD").files)


def test_a_subdirectory_reads_only_that_directory(tmp_path: Path) -> None:
    root = tmp_path / "mono"
    shutil.copytree(EXAMPLE, root / "deploy" / "cu")
    (root / "other.yaml").write_text("not: ours\n")
    repo = git.Repo.init(root)
    _commit(repo, "monorepo")
    tree = source.read(str(root / "deploy" / "cu"), "HEAD")
    assert "cluster.yaml" in tree.files and "other.yaml" not in tree.files


def test_annotated_tag_resolves_to_its_commit(repo: git.Repo) -> None:
    repo.create_tag("v1", message="release 1")
    assert source.read(str(repo.working_tree_dir), "v1").revision == repo.head.commit.hexsha


@pytest.mark.parametrize(
    "rev", ["no-such-branch", "0" * 40, "HEAD~99", "--output=/tmp/x", ""], ids=str
)
def test_unknown_revision_raises_source_error(repo: git.Repo, rev: str) -> None:
    with pytest.raises(errors.SourceError):
        source.read(str(repo.working_tree_dir), rev)


def test_a_tree_object_is_not_a_commit(repo: git.Repo) -> None:
    with pytest.raises(errors.SourceError, match="not a commit"):
        source.read(str(repo.working_tree_dir), "HEAD^{tree}")


def test_not_a_repository_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(errors.SourceError, match="not a Git repository"):
        source.read(str(tmp_path), "HEAD")


def test_committed_symlink_escaping_the_repository_is_reported(repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    os.symlink("/etc/hostname", root / "escape.yaml")
    os.symlink("../../outside.yaml", root / "pools" / "climb.yaml")
    os.symlink("batch.yaml", root / "pools" / "alias.yaml")
    _commit(repo, "symlinks")
    tree = source.read(str(root), "HEAD")
    escaped = {d.file for d in tree.diagnostics if d.code == codes.Code.SYMLINK_ESCAPE}
    assert escaped == {"escape.yaml", "pools/climb.yaml"}
    assert "escape.yaml" not in tree.files
    assert tree.files["pools/alias.yaml"] == tree.files["pools/batch.yaml"]


def test_non_yaml_and_skipped_directories_are_not_read(repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    (root / "notes.txt").write_text("x")
    (root / "node_modules").mkdir()
    (root / "node_modules" / "x.yaml").write_text("a: 1\n")
    _commit(repo, "noise")
    files = source.read(str(root), "HEAD").files
    assert "notes.txt" not in files and "node_modules/x.yaml" not in files

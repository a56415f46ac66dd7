"""Commit one file to a branch with Git plumbing: no checkout, no index, no working tree.

A bot that refreshes a committed file (the observed snapshot) must never touch the user's
checkout: it may be dirty, on another branch, or in use. This writes the blob, builds the new
tree through a private temporary index seeded from the branch's tree, makes the commit, and
moves the branch ref with compare-and-swap (``update-ref NEW OLD``), so a concurrent writer
makes the second one fail instead of losing a commit. An unchanged file makes no commit.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import git

from reconciler import errors


@dataclass(frozen=True, slots=True)
class Committed:
    branch: str
    revision: str
    """The branch head after the call: the new commit, or the unchanged head."""
    changed: bool


def commit_file(
    repo_path: str, branch: str, path: str, content: bytes, message: str, base: str = "HEAD"
) -> Committed:
    """Put ``content`` at ``path`` on ``branch`` (created from ``base`` when missing)."""
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    ref = f"refs/heads/{branch}"
    g = repo.git
    try:
        g.check_ref_format(ref)
    except git.GitCommandError as exc:
        raise errors.SourceError(f"--branch {branch!r}: not a valid branch name") from exc
    try:
        old = g.rev_parse("--verify", "--quiet", ref + "^{commit}")
    except git.GitCommandError:
        old = ""
    try:
        parent = old or g.rev_parse("--verify", base + "^{commit}")
    except git.GitCommandError as exc:
        raise errors.SourceError(f"unknown revision {base!r}") from exc
    fd, staged = tempfile.mkstemp(prefix="cu-blob-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        blob = g.hash_object("-w", "--no-filters", "--", staged)
    finally:
        os.unlink(staged)
    fd, index = tempfile.mkstemp(prefix="cu-index-")
    os.close(fd)
    os.unlink(index)  # git creates it; an empty existing file is not a valid index
    env = {"GIT_INDEX_FILE": index}
    try:
        g.read_tree(parent + "^{tree}", env=env)
        g.update_index("--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = g.write_tree(env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)
    if tree == g.rev_parse(parent + "^{tree}"):
        if not old:
            g.update_ref(ref, parent, "0" * 40)
        return Committed(branch, parent, changed=False)
    new = g.commit_tree(tree, "-p", parent, "-m", message)
    try:
        g.update_ref("-m", f"cuctl: {message.splitlines()[0]}", ref, new, old or "0" * 40)
    except git.GitCommandError as exc:
        raise errors.SourceError(
            f"branch {branch} moved while writing (another writer?); nothing was changed: "
            f"{exc.stderr.strip()}"
        ) from exc
    return Committed(branch, new, changed=True)

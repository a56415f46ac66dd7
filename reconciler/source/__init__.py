"""The I/O edge for desired state: read a repository (a Git revision or a working tree).

Role: turn "a path and maybe a revision" into a :class:`reconciler.source.tree.SourceTree`,
the bytes of every candidate YAML file plus the revision they came from.
Inputs: a directory path, optionally a Git revision (SHA, branch, tag, ``HEAD~2``).
Outputs: a ``SourceTree``; reading problems with a file (size, symlink escape) are
diagnostics in it, a revision over the file-count or byte budget is a tree with no files and
one fatal diagnostic (checked from sizes, before anything is read), while an unreadable
source (not a repository, unknown revision) raises :class:`reconciler.errors.SourceError`.
Never: parse YAML or judge content (that is ``reconciler.validate``), check out, fetch,
write to the repository, or follow a symlink out of the repository.

Modules: :mod:`~reconciler.source.tree` (the value and the bootstrap rules),
:mod:`~reconciler.source.git` (a revision, via gitpython, from the object database),
:mod:`~reconciler.source.worktree` (files on disk, uncommitted edits included) and
:mod:`~reconciler.source.history` (document-level history, from an index under ``.git``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from reconciler.source import fleet, tree, worktree

if TYPE_CHECKING:
    from reconciler.source import git


def read(path: str, rev: str | None) -> tree.SourceTree:
    """Read ``path`` at ``rev``; ``rev=None`` reads the working tree as it is on disk."""
    if rev is None:
        return worktree.read_worktree(path)
    from reconciler.source import git  # gitpython: loaded only to read a revision

    return git.read_revision(path, rev)


def __getattr__(name: str) -> Any:
    """``source.git`` on first use: a pre-commit ``validate`` of the working tree skips it."""
    if name == "git":
        import importlib

        return importlib.import_module("reconciler.source.git")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["fleet", "git", "read", "tree", "worktree"]

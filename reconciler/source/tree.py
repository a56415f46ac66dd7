"""The source tree: the bytes of one repository revision, as the rest of the pipeline sees it.

A :class:`SourceTree` is the whole contract between the I/O edge (this package) and the pure
stages above it, like Flux's Artifact: a revision plus the files read at that revision.
Nothing above this package touches the file system or Git.

Which files are read
--------------------
The Git layout (include/exclude globs) lives in ``ClusterSettings.spec.layout``, which is
itself a file in the tree, so reading is bootstrapped in two steps:

1. this package reads every file matching :data:`BOOTSTRAP_INCLUDE` (``**/*.yaml``,
   ``**/*.yml``) outside :data:`SKIPPED_DIRECTORIES` (``.git/``, ``.venv/``, caches), each at most
   :data:`MAX_FILE_BYTES` and at most :data:`MAX_FILES` files;
2. ``reconciler.validate`` finds the ClusterSettings document among the files that the
   *default* layout selects, then loads as documents exactly the files that the settings'
   own ``include``/``exclude`` select, and reads the observed-device snapshot from
   ``layout.snapshot``.

So the tree holds every candidate file, including the snapshot, and each consumer selects
with :meth:`SourceTree.select`. Files larger than the hard cap, unreadable files and symlinks
leading outside the repository are not in ``files``; they are reported in ``diagnostics``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.model import diagnostics as diag
from reconciler.model import globs
from reconciler.model import state as state_model

BOOTSTRAP_INCLUDE: tuple[str, ...] = ("**/*.yaml", "**/*.yml")
SKIPPED_DIRECTORIES: frozenset[str] = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", ".pytest_cache"}
)
"""Directories never descended into: VCS metadata and tool caches, which hold YAML of their own."""
ALWAYS_EXCLUDED: tuple[str, ...] = tuple(f"**/{d}/**" for d in sorted(SKIPPED_DIRECTORIES))
MAX_FILE_BYTES = 64 * 2**20
"""Hard cap per file at the I/O edge (the snapshot may be large); documents get a lower one."""
MAX_FILES = 20_000
"""A repository with more candidate files than this is refused rather than read."""
MAX_SYMLINK_HOPS = 8

WORKTREE = state_model.Revision("worktree")


@dataclass(frozen=True, slots=True)
class SourceTree:
    """The candidate files of one revision, plus what went wrong while reading them."""

    revision: state_model.Revision
    root: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    diagnostics: tuple[diag.Diagnostic, ...] = ()

    def select(self, include: Iterable[str], exclude: Iterable[str]) -> dict[str, bytes]:
        """The files matching an include glob and no exclude glob, sorted by path."""
        inc, exc = tuple(include), tuple(exclude)
        return {p: self.files[p] for p in sorted(self.files) if globs.selected(p, inc, exc)}


def is_candidate(path: str) -> bool:
    """Whether the I/O edge reads ``path`` at all (before the layout is known)."""
    return globs.selected(path, BOOTSTRAP_INCLUDE, ALWAYS_EXCLUDED)


def resolve_link(link_path: str, target: str) -> str | None:
    """Resolve a symlink target lexically inside the tree; None when it leads outside.

    ``link_path`` and the result are repository-relative POSIX paths. Absolute targets and
    targets climbing above the root escape.
    """
    if target.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    if joined == ".." or joined.startswith("../") or joined.startswith("/"):
        return None
    return joined

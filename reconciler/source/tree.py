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
   :data:`MAX_FILE_BYTES`, at most :data:`MAX_FILES` files and at most :data:`MAX_TOTAL_BYTES`
   over every path (checked from sizes in the tree or on disk *before* anything is read);
2. ``reconciler.validate`` finds the ClusterSettings document among the files that the
   *default* layout selects, then loads as documents exactly the files that the settings'
   own ``include``/``exclude`` select, and reads the observed-device snapshot from
   ``layout.snapshot``.

So the tree holds every candidate file, including the snapshot, and each consumer selects
with :meth:`SourceTree.select`. Files larger than the hard cap, unreadable files and symlinks
leading outside the repository are not in ``files``; they are reported in ``diagnostics``.

One verdict for a working tree and a revision: a symlink leading outside the repository is
reported (``CU110``) wherever it is, a symlinked directory is never descended into, and a
submodule or nested repository is not read (``CU118``, a warning) in either mode, because a
revision's objects do not include another repository's files.

A revision over :data:`MAX_FILES` or :data:`MAX_TOTAL_BYTES` is refused whole: the tree has
no files and one *fatal* diagnostic (:data:`FATAL`), so the reconciler's memory is bounded
by these constants and never by what a commit holds, and the cause is the only error shown.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reconciler.model import codes, globs
from reconciler.model import diagnostics as diag
from reconciler.model import state as state_model

BOOTSTRAP_INCLUDE: tuple[str, ...] = ("**/*.yaml", "**/*.yml")
SKIPPED_DIRECTORIES: frozenset[str] = frozenset(
    {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", ".pytest_cache"}
)
"""Directories never descended into: VCS metadata and tool caches, which hold YAML of their own."""
ALWAYS_EXCLUDED: tuple[str, ...] = tuple(f"**/{d}/**" for d in sorted(SKIPPED_DIRECTORIES))
MAX_FILE_BYTES = 24 * 2**20
"""Hard cap per file at the I/O edge: the committed snapshot's limit (documents get 1 MiB),
so nothing is read that validation would refuse anyway."""
MAX_FILES = 20_000
"""A repository with more candidate files than this is refused rather than read."""
MAX_TOTAL_BYTES = 64 * 2**20
"""Bytes of every candidate file, counted once per path (16 paths to one blob count 16 times:
each path is parsed on its own). Checked from sizes before reading, so a revision costs at
most this much to hold; parsing is bounded by validation's node budget."""
FATAL = frozenset({codes.Code.TOO_MANY_FILES, codes.Code.REVISION_TOO_LARGE})
"""Diagnostics that refuse the whole revision: nothing else is read or reported."""
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
    """Whether the I/O edge reads ``path`` at all (before the layout is known): what
    :data:`BOOTSTRAP_INCLUDE` minus :data:`ALWAYS_EXCLUDED` select, decided without the
    glob engine (a suffix and the directory names), since it runs on every path of a tree
    that may hold 100,000 of them."""
    if not path.endswith((".yaml", ".yml")):
        return False
    return not any(part in SKIPPED_DIRECTORIES for part in path.split("/")[:-1])


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


def too_many_files(first_over: str, where: str) -> diag.Diagnostic:
    return diag.Diagnostic(
        first_over,
        1,
        1,
        codes.Code.TOO_MANY_FILES,
        f"more than {MAX_FILES} YAML files {where}; the revision is refused whole (nothing "
        "else is read). Narrow ClusterSettings.spec.layout.include, move files out, or "
        "validate a subdirectory",
    )


def over_budget(sizes: Mapping[str, int], where: str) -> diag.Diagnostic | None:
    """The fatal diagnostic when ``sizes`` (bytes per path) total over :data:`MAX_TOTAL_BYTES`."""
    total = sum(sizes.values())
    if total <= MAX_TOTAL_BYTES:
        return None
    largest = max(sizes, key=lambda p: (sizes[p], p))
    same = [p for p in sizes if sizes[p] == sizes[largest]]
    return diag.Diagnostic(
        largest,
        1,
        1,
        codes.Code.REVISION_TOO_LARGE,
        f"the YAML files {where} total {total} bytes over {len(sizes)} paths, over the "
        f"{MAX_TOTAL_BYTES}-byte budget (every path counted, {len(same)} of {sizes[largest]} "
        "bytes like this one); the revision is refused whole so memory stays bounded. Remove "
        "large or duplicated files (symlinks and copies count per path) or move them out "
        "of the repository",
    )


def nested_repository(rel: str) -> diag.Diagnostic:
    return diag.Diagnostic(
        rel,
        1,
        1,
        codes.Code.NESTED_REPOSITORY,
        "a submodule or nested repository is not read (a revision holds only this "
        "repository's own files, so the hook and the controller see the same thing); move "
        "its documents into the repository if they are desired state",
        diag.Severity.WARNING,
    )


def symlink_escape(rel: str, target: str) -> diag.Diagnostic:
    return diag.Diagnostic(
        rel,
        1,
        1,
        codes.Code.SYMLINK_ESCAPE,
        f"symlink to {target!r} leads outside the repository; it is not read. "
        "Replace it with a regular file or a link inside the repository",
    )


def file_too_large(rel: str, size: int) -> diag.Diagnostic:
    return diag.Diagnostic(
        rel,
        1,
        1,
        codes.Code.FILE_TOO_LARGE,
        f"file is {size} bytes, over the {MAX_FILE_BYTES}-byte limit for any file read; "
        "split it or move it out of the repository",
    )


def subpath(path: str) -> str:
    """A repository-relative directory from user input (``--path``), normalised; raises
    ValueError when it is absolute or climbs out (``..``): it must stay in the clone."""
    text = path.replace("\\", "/").strip()
    if text.startswith("/") or posixpath.isabs(text):
        raise ValueError(f"{path!r} is absolute; give a directory inside the repository")
    normal = posixpath.normpath(text or ".")
    if normal == ".." or normal.startswith("../"):
        raise ValueError(f"{path!r} leads outside the repository")
    return normal

"""Read a directory as it is on disk (uncommitted edits included): the pre-commit case.

Symlinks are followed only when they resolve inside the root; a link leading outside is
reported (``CU110``) and not read, so a repository cannot make the reconciler read
``/etc/passwd`` or another tenant's checkout. Symlinked directories are not descended into:
files inside the root are reachable by their real path anyway, and this rules out loops.
A directory holding ``.git`` (a submodule's checkout, a nested clone) is not read either
(``CU118``): a revision holds only this repository's own files, and both modes must agree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from reconciler import errors
from reconciler.model import codes
from reconciler.model import diagnostics as diag
from reconciler.source import tree


def read_worktree(path: str) -> tree.SourceTree:
    """Read the candidate files under ``path``; raises SourceError if it is not a directory.

    Two passes, so the limits hold before anything is read: list the candidates (refusing
    more than MAX_FILES), take their sizes (refusing more than MAX_TOTAL_BYTES over every
    path), then read.
    """
    root = Path(path)
    if not root.is_dir():
        raise errors.SourceError(f"{path}: not a directory")
    real_root = root.resolve()
    found: list[diag.Diagnostic] = []
    candidates: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        if rel_dir and os.path.lexists(os.path.join(dirpath, ".git")):
            found.append(tree.nested_repository(rel_dir.rstrip("/")))
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if d not in tree.SKIPPED_DIRECTORIES)
        for d in dirnames:
            full = Path(dirpath, d)
            if full.is_symlink() and not _inside(full.resolve(), real_root):
                found.append(tree.symlink_escape(rel_dir + d, os.readlink(full)))
        for name in sorted(filenames):
            rel = rel_dir + name
            full = Path(dirpath, name)
            if not tree.is_candidate(rel):
                if full.is_symlink() and not _inside(full.resolve(), real_root):
                    found.append(tree.symlink_escape(rel, os.readlink(full)))
                continue
            candidates.append((rel, full))
    if len(candidates) > tree.MAX_FILES:
        first_over = sorted(candidates)[tree.MAX_FILES][0]
        return tree.SourceTree(
            tree.WORKTREE, str(path), {}, (tree.too_many_files(first_over, f"under {path}"),)
        )
    targets: dict[str, Path] = {}
    sizes: dict[str, int] = {}
    for rel, full in candidates:
        if full.is_symlink():
            target = full.resolve()
            if not _inside(target, real_root):
                found.append(tree.symlink_escape(rel, os.readlink(full)))
                continue
            if not target.is_file():
                found.append(_unreadable(rel, "symlink target is missing or not a file"))
                continue
            full = target
        try:
            sizes[rel] = full.stat().st_size
        except OSError as exc:
            found.append(_unreadable(rel, exc.strerror or str(exc)))
            continue
        targets[rel] = full
    over = tree.over_budget(sizes, f"under {path}")
    if over is not None:
        return tree.SourceTree(tree.WORKTREE, str(path), {}, (over,))
    files: dict[str, bytes] = {}
    for rel, full in targets.items():
        content = _read(full, rel, found)
        if content is not None:
            files[rel] = content
    return tree.SourceTree(tree.WORKTREE, str(path), files, tuple(found))


def _inside(target: Path, root: Path) -> bool:
    return target == root or root in target.parents


def _read(full: Path, rel: str, found: list[diag.Diagnostic]) -> bytes | None:
    """Only regular files: opened non-blocking and checked on the open descriptor, so a
    FIFO (or a device) named *.yaml can neither hang validate nor be swapped in between."""
    try:
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                found.append(_unreadable(rel, "not a regular file (FIFO, socket or device)"))
                return None
            if info.st_size > tree.MAX_FILE_BYTES:
                found.append(tree.file_too_large(rel, info.st_size))
                return None
            return fh.read(tree.MAX_FILE_BYTES + 1)
    except OSError as exc:
        found.append(_unreadable(rel, exc.strerror or str(exc)))
        return None


def _unreadable(rel: str, why: str) -> diag.Diagnostic:
    return diag.Diagnostic(rel, 1, 1, codes.Code.UNREADABLE, f"cannot read file: {why}")

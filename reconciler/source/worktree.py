"""Read a directory as it is on disk (uncommitted edits included): the pre-commit case.

Symlinks are followed only when they resolve inside the root; a link leading outside is
reported (``CU110``) and not read, so a repository cannot make the reconciler read
``/etc/passwd`` or another tenant's checkout. Symlinked directories are not descended into:
files inside the root are reachable by their real path anyway, and this rules out loops.
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
    """Read the candidate files under ``path``; raises SourceError if it is not a directory."""
    root = Path(path)
    if not root.is_dir():
        raise errors.SourceError(f"{path}: not a directory")
    real_root = root.resolve()
    files: dict[str, bytes] = {}
    found: list[diag.Diagnostic] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if d not in tree.SKIPPED_DIRECTORIES)
        for d in dirnames:
            full = Path(dirpath, d)
            if full.is_symlink() and not _inside(full.resolve(), real_root):
                found.append(_escape(rel_dir + d, os.readlink(full)))
        for name in sorted(filenames):
            rel = rel_dir + name
            if not tree.is_candidate(rel):
                continue
            count += 1
            if count > tree.MAX_FILES:
                found.append(
                    diag.Diagnostic(
                        rel,
                        1,
                        1,
                        codes.Code.TOO_MANY_FILES,
                        f"more than {tree.MAX_FILES} YAML files under {path}; narrow "
                        "ClusterSettings.spec.layout.include or validate a subdirectory",
                    )
                )
                return tree.SourceTree(tree.WORKTREE, str(path), files, tuple(found))
            full = Path(dirpath, name)
            if full.is_symlink():
                target = full.resolve()
                if not _inside(target, real_root):
                    found.append(_escape(rel, os.readlink(full)))
                    continue
                if not target.is_file():
                    found.append(_unreadable(rel, "symlink target is missing or not a file"))
                    continue
                full = target
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
                found.append(_too_large(rel, info.st_size))
                return None
            return fh.read(tree.MAX_FILE_BYTES + 1)
    except OSError as exc:
        found.append(_unreadable(rel, exc.strerror or str(exc)))
        return None


def _escape(rel: str, target: str) -> diag.Diagnostic:
    return diag.Diagnostic(
        rel,
        1,
        1,
        codes.Code.SYMLINK_ESCAPE,
        f"symlink to {target!r} leads outside the repository; it is not read. "
        "Replace it with a regular file or a link inside the repository",
    )


def _unreadable(rel: str, why: str) -> diag.Diagnostic:
    return diag.Diagnostic(rel, 1, 1, codes.Code.UNREADABLE, f"cannot read file: {why}")


def _too_large(rel: str, size: int) -> diag.Diagnostic:
    return diag.Diagnostic(
        rel,
        1,
        1,
        codes.Code.FILE_TOO_LARGE,
        f"file is {size} bytes, over the {tree.MAX_FILE_BYTES}-byte limit; split it "
        "or exclude it in ClusterSettings.spec.layout.exclude",
    )

"""Read a repository at a Git revision, from the object database: no checkout, no worktree.

The same code checks a pull request's head, a branch, a tag or a past commit, in a normal or
a bare repository, and the result records the full commit SHA it came from. ``path`` may be a
subdirectory of the repository's worktree (``examples/gitrepo``): then only that
subdirectory of the revision is read, and paths are relative to it.

Git's own errors are translated once, here, into :class:`reconciler.errors.SourceError`.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any, NamedTuple

import git

from reconciler import errors
from reconciler.model import codes
from reconciler.model import diagnostics as diag
from reconciler.model import state as state_model
from reconciler.source import tree

_SYMLINK_MODE = 0o120000
_GITLINK_MODE = 0o160000
_FILE_MODES = (0o100644, 0o100755)


def read_revision(repo_path: str, rev: str) -> tree.SourceTree:
    """Read the candidate files of ``rev``; raises SourceError when that is impossible."""
    repo, prefix = _open(repo_path)
    try:
        commit = _resolve(repo, rev)
        root_tree = commit.tree
        if prefix:
            try:
                obj = root_tree / prefix
            except KeyError as exc:
                raise errors.SourceError(
                    f"{repo_path}: directory {prefix!r} does not exist at {rev}"
                ) from exc
            if not isinstance(obj, git.Tree):
                raise errors.SourceError(f"{repo_path}: {prefix!r} is not a directory at {rev}")
            root_tree = obj
        return _read_tree(repo, root_tree, state_model.Revision(commit.hexsha), repo_path)
    finally:
        repo.close()


def _open(repo_path: str) -> tuple[git.Repo, str]:
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    prefix = ""
    if repo.working_tree_dir is not None:
        rel = os.path.relpath(os.path.realpath(repo_path), os.path.realpath(repo.working_tree_dir))
        prefix = "" if rel == "." else rel.replace(os.sep, "/")
    return repo, prefix


def _resolve(repo: git.Repo, rev: str) -> git.Commit:
    if not rev or rev.startswith("-"):
        raise errors.SourceError(f"invalid revision {rev!r}")
    try:
        obj = repo.rev_parse(rev)
        while isinstance(obj, git.TagObject):
            obj = obj.object
        if isinstance(obj, git.Commit):
            obj.tree  # noqa: B018 - a full SHA resolves lazily; load it to know it exists
    except (git.BadName, git.BadObject, ValueError, IndexError) as exc:
        raise errors.SourceError(f"unknown revision {rev!r}") from exc
    if not isinstance(obj, git.Commit):
        raise errors.SourceError(f"revision {rev!r} is a {obj.type}, not a commit")
    return obj


class _Entry(NamedTuple):
    mode: int
    sha: str
    size: int


def _list(repo: git.Repo, root: git.Tree) -> tuple[dict[str, _Entry], list[str]]:
    """Every file, symlink and gitlink under ``root`` with its size, from one
    ``git ls-tree -r -l`` (Git's C code walks the tree: 100,000 entries take well under a
    second, and nothing is read). Skipped directories are dropped here."""
    proc = subprocess.run(
        ["git", f"--git-dir={repo.git_dir}", "ls-tree", "-r", "-l", "-z", root.hexsha],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise errors.SourceError(f"cannot list the tree {root.hexsha}: {detail}")
    entries: dict[str, _Entry] = {}
    nested: list[str] = []
    for record in proc.stdout.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, _kind, sha, size = meta.split()
        rel = raw_path.decode("utf-8", "surrogateescape")
        if any(part in tree.SKIPPED_DIRECTORIES for part in rel.split("/")[:-1]):
            continue
        if int(mode, 8) == _GITLINK_MODE:
            nested.append(rel)
            continue
        entries[rel] = _Entry(int(mode, 8), sha.decode(), int(size) if size != b"-" else 0)
    return entries, nested


def _read_tree(
    repo: git.Repo, root: git.Tree, revision: state_model.Revision, display: str
) -> tree.SourceTree:
    listed, nested = _list(repo, root)
    blobs = {p: e for p, e in listed.items() if e.mode in _FILE_MODES}
    links = {p: e for p, e in listed.items() if e.mode == _SYMLINK_MODE}
    found: list[diag.Diagnostic] = [tree.nested_repository(p) for p in sorted(nested)]
    wanted = sorted(p for p in (*blobs, *links) if tree.is_candidate(p))
    if len(wanted) > tree.MAX_FILES:
        too_many = tree.too_many_files(wanted[tree.MAX_FILES], "at this revision")
        return tree.SourceTree(revision, display, {}, (too_many,))
    odb = repo.odb
    for rel in sorted(links):
        if not tree.is_candidate(rel):
            target = _target(odb, links[rel])
            if tree.resolve_link(rel, target) is None:
                found.append(tree.symlink_escape(rel, target))  # a directory link, say
    resolved: dict[str, _Entry] = {}
    for rel in wanted:
        chosen = blobs.get(rel) or _follow(odb, rel, links, blobs, found)
        if chosen is None:
            continue
        if chosen.size > tree.MAX_FILE_BYTES:
            found.append(tree.file_too_large(rel, chosen.size))
            continue
        resolved[rel] = chosen
    over = tree.over_budget({p: e.size for p, e in resolved.items()}, "at this revision")
    if over is not None:
        return tree.SourceTree(revision, display, {}, (over,))
    files: dict[str, bytes] = {}
    read: dict[str, bytes] = {}  # one read per blob; the budget above counted every path
    for rel, entry in resolved.items():
        if entry.sha not in read:
            read[entry.sha] = odb.stream(bytes.fromhex(entry.sha)).read()
        files[rel] = read[entry.sha]
    return tree.SourceTree(revision, display, files, tuple(found))


def _target(odb: Any, link: _Entry) -> str:
    return str(odb.stream(bytes.fromhex(link.sha)).read(4096).decode("utf-8", "surrogateescape"))


def _follow(
    odb: Any,
    rel: str,
    links: dict[str, _Entry],
    blobs: dict[str, _Entry],
    found: list[diag.Diagnostic],
) -> _Entry | None:
    """Resolve a symlink (its content is the target path) to a file in the tree."""
    current = rel
    for _ in range(tree.MAX_SYMLINK_HOPS):
        target = _target(odb, links[current])
        resolved = tree.resolve_link(current, target)
        if resolved is None:
            found.append(tree.symlink_escape(rel, target))
            return None
        if resolved in blobs:
            return blobs[resolved]
        if resolved not in links:
            found.append(
                diag.Diagnostic(
                    rel,
                    1,
                    1,
                    codes.Code.UNREADABLE,
                    f"cannot read file: symlink target {target!r} is missing or not a file",
                )
            )
            return None
        current = resolved
    found.append(
        diag.Diagnostic(
            rel,
            1,
            1,
            codes.Code.UNREADABLE,
            f"cannot read file: more than {tree.MAX_SYMLINK_HOPS} chained symlinks",
        )
    )
    return None

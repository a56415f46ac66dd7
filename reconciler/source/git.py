"""Read a repository at a Git revision, from the object database: no checkout, no worktree.

The same code checks a pull request's head, a branch, a tag or a past commit, in a normal or
a bare repository, and the result records the full commit SHA it came from. ``path`` may be a
subdirectory of the repository's worktree (``examples/gitrepo``): then only that
subdirectory of the revision is read, and paths are relative to it.

Git's own errors are translated once, here, into :class:`reconciler.errors.SourceError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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


def _walk(root: git.Tree, nested: list[str]) -> Iterator[tuple[str, git.Blob]]:
    """Yield (path relative to ``root``, blob) for regular files and symlinks; submodules
    (gitlinks) go to ``nested``: their files are not in this repository's objects."""
    stack: list[tuple[str, git.Tree]] = [("", root)]
    while stack:
        base, current = stack.pop()
        for blob in current.blobs:
            yield base + blob.name, blob
        for sub in current.trees:
            if sub.name not in tree.SKIPPED_DIRECTORIES:
                stack.append((base + sub.name + "/", sub))
        # gitpython's Submodule objects need .gitmodules to know their name; the raw entry
        # (sha, mode, name) of a gitlink has all we need.
        entries: list[tuple[bytes, int, str]] = getattr(current, "_cache", [])
        nested.extend(base + name for _, mode, name in entries if mode == _GITLINK_MODE)


def _read_tree(
    repo: git.Repo, root: git.Tree, revision: state_model.Revision, display: str
) -> tree.SourceTree:
    blobs: dict[str, git.Blob] = {}
    links: dict[str, git.Blob] = {}
    nested: list[str] = []
    for rel, blob in _walk(root, nested):
        if blob.mode == _SYMLINK_MODE:
            links[rel] = blob
        elif blob.mode in _FILE_MODES:
            blobs[rel] = blob
    found: list[diag.Diagnostic] = [tree.nested_repository(p) for p in sorted(nested)]
    wanted = sorted(p for p in (*blobs, *links) if tree.is_candidate(p))
    if len(wanted) > tree.MAX_FILES:
        too_many = tree.too_many_files(wanted[tree.MAX_FILES], "at this revision")
        return tree.SourceTree(revision, display, {}, (too_many,))
    for rel in sorted(links):
        if not tree.is_candidate(rel):
            target = _target(links[rel])
            if tree.resolve_link(rel, target) is None:
                found.append(tree.symlink_escape(rel, target))  # a directory link, say
    odb = repo.odb
    resolved: dict[str, git.Blob] = {}
    sizes: dict[str, int] = {}
    for rel in wanted:
        chosen = blobs.get(rel) or _follow(rel, links, blobs, found)
        if chosen is None:
            continue
        size = odb.info(chosen.binsha).size
        if size > tree.MAX_FILE_BYTES:
            found.append(tree.file_too_large(rel, size))
            continue
        resolved[rel], sizes[rel] = chosen, size
    fatal = tree.over_budget(sizes, "at this revision")
    if fatal is not None:
        return tree.SourceTree(revision, display, {}, (fatal,))
    files: dict[str, bytes] = {}
    read: dict[bytes, bytes] = {}  # one read per blob; the budget above counted every path
    for rel, blob in resolved.items():
        if blob.binsha not in read:
            read[blob.binsha] = odb.stream(blob.binsha).read()
        files[rel] = read[blob.binsha]
    return tree.SourceTree(revision, display, files, tuple(found))


def _target(link: git.Blob) -> str:
    return str(link.data_stream.read(4096).decode("utf-8", "surrogateescape"))


def _follow(
    rel: str,
    links: dict[str, git.Blob],
    blobs: dict[str, git.Blob],
    found: list[diag.Diagnostic],
) -> git.Blob | None:
    """Resolve a symlink blob (its content is the target path) to a file blob in the tree."""
    current = rel
    for _ in range(tree.MAX_SYMLINK_HOPS):
        target = _target(links[current])
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

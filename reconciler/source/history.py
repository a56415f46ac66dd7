"""The audit trail of one desired-state document (or factor rows) through Git history.

``git log -- FILE`` loses a document when it moves to another file, and follows at most one
path. Documents have an identity of their own (kind and name, or a claim's namespace and name),
so this walks the commits instead: for each commit, only the YAML files it changed (renames
detected) are parsed, on both sides, and the document is looked up by identity. A move shows
as a change of path with no field changes; a comment-only edit is no change. Each entry lists
the field-level changes ``path: before → after``.

Reads the object database only (no checkout); YAML is parsed with the safe loader.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import git
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler import errors

Doc = Mapping[str, Any]
Matcher = Callable[[Doc], Any]
"""Returns the part of a document that is tracked (None: not this document)."""

_YAML_SUFFIXES = (".yaml", ".yml")
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "before": None if self.before is _MISSING else self.before,
            "after": None if self.after is _MISSING else self.after,
            "added": self.before is _MISSING,
            "removed": self.after is _MISSING,
        }

    def render(self) -> str:
        before = "(none)" if self.before is _MISSING else _show(self.before)
        after = "(none)" if self.after is _MISSING else _show(self.after)
        return f"{self.path}: {before} → {after}"


@dataclass(frozen=True, slots=True)
class Entry:
    revision: str
    author: str
    email: str
    date: str
    """Author date, ISO 8601 with offset."""
    subject: str
    change: str
    """added, modified, moved, removed."""
    path: str
    previous_path: str | None
    fields: tuple[FieldChange, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "author": self.author,
            "email": self.email,
            "date": self.date,
            "subject": self.subject,
            "change": self.change,
            "path": self.path,
            "previousPath": self.previous_path,
            "fields": [f.to_json() for f in self.fields],
        }


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key in value:
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{_list_key(item, i)}]", out)
    else:
        out[prefix] = value


def _list_key(item: Mapping[str, Any], index: int) -> str:
    """A readable, stable key for a list element: its identifying fields when it has them."""
    for keys in (
        ("table", "deviceModel", "workloadClass"),
        ("deviceModel", "workloadClass"),
        ("pool",),
        ("name",),
        ("vendor",),
    ):
        if all(k in item for k in keys):
            return ",".join(f"{k}={item[k]}" for k in keys)
    return str(index)


def field_changes(before: Any, after: Any) -> tuple[FieldChange, ...]:
    """Leaf-level differences between two parsed documents, sorted by path."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    if before is not None:
        _flatten(before, "", old)
    if after is not None:
        _flatten(after, "", new)
    out = []
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path, _MISSING), new.get(path, _MISSING)
        if a != b:
            out.append(FieldChange(path, a, b))
    return tuple(out)


def _documents(data: bytes) -> Iterator[Doc]:
    try:
        text = data.decode("utf-8")
        for doc in YAML(typ="safe", pure=True).load_all(io.StringIO(text)):
            if isinstance(doc, Mapping):
                yield doc
    except (UnicodeDecodeError, YAMLError):
        return  # an unreadable file holds no version of the document (validate reports it)


def _find(commit: git.Commit | None, path: str | None, match: Matcher) -> Any:
    if commit is None or path is None:
        return None
    try:
        blob = commit.tree / path
    except KeyError:
        return None
    found = None
    for doc in _documents(blob.data_stream.read()):
        part = match(doc)
        if part is not None:
            found = part if found is None else _merge(found, part)
    return found


def _merge(a: Any, b: Any) -> Any:
    """Two matches in one file (several factor tables): combine their rows."""
    if isinstance(a, list) and isinstance(b, list):
        return [*a, *b]
    return b


def _changed(
    repo: git.Repo, commit: git.Commit, parent: git.Commit | None
) -> list[tuple[str | None, str | None]]:
    """(old path, new path) of every YAML file the commit changed, renames paired."""
    if parent is None:
        return [
            (None, str(item.path))
            for item in commit.tree.traverse()
            if isinstance(item, git.Blob) and _is_yaml(str(item.path))
        ]
    out = []
    for diff in parent.diff(commit, find_renames=True):
        a, b = (
            diff.a_path if not diff.new_file else None,
            diff.b_path if not diff.deleted_file else None,
        )
        if (a and _is_yaml(a)) or (b and _is_yaml(b)):
            out.append((a, b))
    return out


def _all_changes(repo: git.Repo, head: str) -> dict[str, list[tuple[str | None, str | None]]]:
    """Every first-parent commit's changed YAML files, from one ``git log`` (renames paired)."""
    log = repo.git.log(
        "--first-parent",
        "--diff-merges=first-parent",
        "-M",
        "--name-status",
        "-z",
        "--format=%x01%H",
        head,
    )
    out: dict[str, list[tuple[str | None, str | None]]] = {}
    for chunk in log.split("\x01")[1:]:
        fields = chunk.split("\x00")
        sha, _, first = fields[0].partition("\n")
        items = [first, *fields[1:]] if first else fields[1:]
        items = [i.strip("\n") for i in items]
        pairs: list[tuple[str | None, str | None]] = []
        i = 0
        while i < len(items):
            status = items[i]
            if not status:
                i += 1
                continue
            pair: tuple[str | None, str | None]
            if status[0] in "RC":
                old, new = items[i + 1], items[i + 2]
                pair = (old, new) if status[0] == "R" else (None, new)  # a copy is an add
                i += 3
            else:
                path = items[i + 1]
                pair = (None if status[0] == "A" else path, None if status[0] == "D" else path)
                i += 2
            if any(p and _is_yaml(p) for p in pair):
                pairs.append(pair)
        out[sha.strip()] = pairs
    return out


def _is_yaml(path: str) -> bool:
    return path.endswith(_YAML_SUFFIXES)


def history(
    repo_path: str, match: Matcher, rev: str = "HEAD", limit: int = 200, subdir: str = ""
) -> list[Entry]:
    """Commits (newest first, first-parent) that changed the tracked document, with fields.

    ``subdir`` restricts the walk to files under a directory of the repository (a cluster's
    directory in a fleet repository).
    """
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    try:
        head = repo.commit(rev)
    except (git.BadName, ValueError) as exc:
        raise errors.SourceError(f"unknown revision {rev!r}") from exc
    prefix = subdir.strip("/") + "/" if subdir.strip("/") else ""
    out: list[Entry] = []
    changes = _all_changes(repo, head.hexsha)
    for commit in repo.iter_commits(head, first_parent=True, max_count=10_000):
        parent = commit.parents[0] if commit.parents else None
        before_path = after_path = None
        before = after = None
        pairs = changes.get(commit.hexsha) if parent is not None else None
        for old, new in pairs if pairs is not None else _changed(repo, commit, parent):
            if prefix and not any(p and p.startswith(prefix) for p in (old, new)):
                continue
            found_before = _find(parent, old, match)
            found_after = _find(commit, new, match)
            if found_before is not None:
                before, before_path = found_before, old
            if found_after is not None:
                after, after_path = found_after, new
        if before is None and after is None:
            continue
        if before is not None and after is None:
            # Deleted from a changed file: was it moved into an unchanged one? (impossible in
            # one commit without changing that file, so this is a removal)
            change = "removed"
        elif before is None:
            change = "added"
        elif before == after:
            if before_path == after_path:
                continue  # reformatted or comments only
            change = "moved"
        else:
            change = "modified" if before_path == after_path else "moved"
        out.append(
            Entry(
                revision=commit.hexsha,
                author=str(commit.author.name),
                email=str(commit.author.email),
                date=commit.authored_datetime.isoformat(),
                subject=str(commit.summary),
                change=change,
                path=str(after_path or before_path),
                previous_path=before_path if before_path != after_path else None,
                fields=field_changes(before, after),
            )
        )
        if len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- matchers


def document(kind: str, name: str) -> Matcher:
    """A document by kind and ``metadata.name``."""

    def match(doc: Doc) -> Any:
        meta = doc.get("metadata") or {}
        if doc.get("kind") == kind and isinstance(meta, Mapping) and meta.get("name") == name:
            return _plain(doc)
        return None

    return match


def claim(namespace: str, name: str) -> Matcher:
    """A CUClaim by its namespace (``spec.namespace``) and name; any namespace when empty."""

    def match(doc: Doc) -> Any:
        meta = doc.get("metadata") or {}
        spec = doc.get("spec") or {}
        if doc.get("kind") != "CUClaim" or not isinstance(meta, Mapping):
            return None
        if meta.get("name") != name:
            return None
        if (
            namespace
            and isinstance(spec, Mapping)
            and spec.get("namespace") not in (None, namespace)
        ):
            return None
        return _plain(doc)

    return match


def factors(model: str) -> Matcher:
    """The factor rows of one device model, across every FactorTable (file-level tracking)."""

    def match(doc: Doc) -> Any:
        if doc.get("kind") != "FactorTable":
            return None
        rows = [
            _plain(r)
            for r in ((doc.get("spec") or {}).get("factors") or ())
            if isinstance(r, Mapping) and r.get("deviceModel") == model
        ]
        if not rows:
            return None
        table = str((doc.get("metadata") or {}).get("name", ""))
        return [{"table": table, **r} for r in rows]

    return match


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

"""The audit trail of one desired-state document (or factor rows) through Git history.

``git log -- FILE`` loses a document when it moves to another file, and follows at most one
path. Documents have an identity of their own (kind and name, or a claim's namespace and name),
so this walks the commits instead: for each commit, only the YAML files it changed (renames
detected) are read, on both sides, and the document is looked up by identity. A move shows
as a change of path with no field changes; a comment-only edit is no change. Each entry lists
the field-level changes ``path: before → after``.

Fast on long histories: the walk answers from an index of document-level changes per commit
(see "the index" below), stored under the Git directory and built incrementally, so only
commits not seen before cost any parsing; a query on 2,000 indexed commits is one
``git rev-list`` and one SQLite read (BENCHMARKS.md, "history").

Reads the object database only (no checkout). YAML is parsed with
:func:`reconciler._yamlcore.plain_documents`: validation's bounds (size, nodes with aliases
expanded, nesting, tags), so a hostile old commit costs no more than a new one, and a
version that cannot be read is a :class:`Problem` of that commit, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from reconciler import _yamlcore, errors

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
    merged_in: str | None = None
    """The first-parent merge that brought the change in, when ``revision`` is the commit on
    the merged branch that wrote it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "mergedIn": self.merged_in,
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


# --------------------------------------------------------------------------- the index
#
# One record per commit, keyed by its SHA (commits are immutable, so a record never goes
# stale; a rewritten history simply has other SHAs): its author, date and subject as Git
# formats them, and the *document-level* changes against its first parent — every document
# identity (kind, name, claim namespace) whose versions in the files the commit changed
# differ between the two sides, with the path and a content hash on each side. Documents are
# stored once per content hash. Only blobs a commit changed are parsed, each blob once per
# process, under the same bounds as validation.


MAX_BLOB_BYTES = 1 * 2**20
"""A version larger than validation's document-file limit is not a desired-state file
(the committed snapshot, say): it is not read."""
_INDEX_VERSION = 2
_NO_SHA = "0" * 40


@dataclass(frozen=True, slots=True)
class Problem:
    """A file version the walk could not read: the document's state there is unknown."""

    revision: str
    path: str
    message: str


@dataclass(frozen=True, slots=True)
class Result:
    entries: list[Entry]
    problems: list[Problem]
    truncated: bool = False
    """The walk stopped at ``limit`` entries; older changes exist."""


class _Index:
    """The persistent index (SQLite, under the repository's Git directory) plus the Git
    plumbing that fills it: ``git log --raw`` for changed blobs, ``git cat-file --batch``."""

    def __init__(self, repo: git.Repo) -> None:
        self.repo = repo
        self.db = _open_db(repo)
        self.blob_docs: dict[str, tuple[list[tuple[tuple[str, str, str], str]], str | None]] = {}
        self.new_docs: dict[str, str] = {}
        self.new_blobs: list[str] = []
        self.doc_cache: dict[str, Any] = {}

    def close(self) -> None:
        self.db.close()

    # -- records -------------------------------------------------------------------------

    def records(self, shas: list[str]) -> dict[str, dict[str, Any]]:
        """The record of every commit in ``shas``, indexing the ones not indexed yet."""
        out = self._load(shas)
        missing = [s for s in shas if s not in out]
        if missing:
            built = self._build(missing)
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO commits VALUES (?, ?)",
                    [(sha, json.dumps(rec)) for sha, rec in built.items()],
                )
                self.db.executemany(
                    "INSERT OR IGNORE INTO docs VALUES (?, ?)", list(self.new_docs.items())
                )
                self.db.executemany(
                    "INSERT OR IGNORE INTO blobs VALUES (?, ?)",
                    [(sha, self._summary(sha)) for sha in self.new_blobs],
                )
            self.new_docs.clear()
            self.new_blobs.clear()
            out.update(built)
        return out

    def _summary(self, sha: str) -> str:
        docs, problem = self.blob_docs.get(sha, ([], None))
        return json.dumps([[[*identity, digest] for identity, digest in docs], problem])

    def _load(self, shas: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(shas), 500):
            chunk = shas[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for sha, text in self.db.execute(
                f"SELECT sha, record FROM commits WHERE sha IN ({marks})", chunk
            ):
                out[sha] = json.loads(text)
        return out

    def doc(self, digest: str) -> Any:
        if digest not in self.doc_cache:
            text = self.new_docs.get(digest)
            if text is None:
                row = self.db.execute("SELECT doc FROM docs WHERE hash = ?", (digest,)).fetchone()
                text = row[0] if row else "null"
            self.doc_cache[digest] = json.loads(text)
        return self.doc_cache[digest]

    def _build(self, shas: list[str]) -> dict[str, dict[str, Any]]:
        raw = _git(
            self.repo,
            "log",
            "--no-walk=unsorted",
            "--stdin",
            "--diff-merges=first-parent",
            "--root",
            "-M",
            "--raw",
            "--no-abbrev",
            "-z",
            "--format=%x01%H%x00%P%x00%an%x00%ae%x00%aI%x00%s%x00",
            stdin="\n".join(shas) + "\n",
        ).decode("utf-8", "surrogateescape")
        commits = _parse_log(raw)
        blobs = {sha for c in commits for ch in c["raw"] for sha in (ch[1], ch[3]) if sha}
        self._read_blobs(sorted(blobs - set(self.blob_docs)))
        out = {}
        for c in commits:
            changes, problems = self._changes(c["raw"])
            out[c["sha"]] = {
                "v": _INDEX_VERSION,
                "p": c["parents"],
                "a": c["author"],
                "e": c["email"],
                "d": c["date"],
                "s": c["subject"],
                "c": changes,
                "w": problems,
            }
        return out

    def _changes(
        self, raw: list[tuple[str | None, str | None, str | None, str | None]]
    ) -> tuple[list[list[str]], list[list[str]]]:
        sides: dict[str, dict[tuple[str, str, str], list[tuple[str, str]]]] = {"b": {}, "a": {}}
        problems = []
        for old_path, old_sha, new_path, new_sha in raw:
            for side, path, sha in (("b", old_path, old_sha), ("a", new_path, new_sha)):
                if path is None or sha is None:
                    continue
                docs, problem = self.blob_docs.get(sha, ([], None))
                if problem is not None and side == "a":
                    problems.append([path, problem])
                for identity, digest in docs:
                    sides[side].setdefault(identity, []).append((path, digest))
        changes: list[list[str]] = []
        for identity in sorted(sides["b"].keys() | sides["a"].keys()):
            before = sorted(sides["b"].get(identity, []))
            after = sorted(sides["a"].get(identity, []))
            if before == after:
                continue
            for side, versions in (("b", before), ("a", after)):
                changes.extend([*identity, side, path, digest] for path, digest in versions)
        return changes, problems

    def _read_blobs(self, shas: list[str]) -> None:
        """Parse every blob in ``shas`` (one ``cat-file`` process), keeping identities and
        content hashes; documents go to the store by hash."""
        if not shas:
            return
        for i in range(0, len(shas), 500):
            chunk = shas[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for sha, text in self.db.execute(
                f"SELECT sha, summary FROM blobs WHERE sha IN ({marks})", chunk
            ):
                docs, problem = json.loads(text)
                self.blob_docs[sha] = ([((k, n, ns), d) for k, n, ns, d in docs], problem)
        shas = [s for s in shas if s not in self.blob_docs]
        if not shas:
            return
        sizes = _sizes(self.repo, shas)
        wanted = [s for s in shas if 0 <= sizes.get(s, -1) <= MAX_BLOB_BYTES]
        for s in shas:
            if s not in wanted:
                self.blob_docs[s] = ([], None)  # not a desired-state file (or not a blob)
        for sha, data in _cat(self.repo, wanted):
            self.blob_docs[sha] = self._parse(data)
        self.new_blobs.extend(shas)

    def _parse(self, data: bytes) -> tuple[list[tuple[tuple[str, str, str], str]], str | None]:
        """A blob's documents, or why it could not be read. A blob that does not mention our
        API group holds no desired state (validation would refuse any document in it), so a
        failure there is not reported: a CI file outside the layout is not our business."""
        ours = b"cu-reconciler.io" in data
        try:
            text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        except UnicodeDecodeError:
            return [], "not UTF-8 text" if ours else None
        if b"kind" not in data:
            return [], None
        try:
            documents = _yamlcore.plain_documents(text)
        except _yamlcore.Refused as exc:
            return [], f"{exc.line}:{exc.column}: {exc}" if ours else None
        out = []
        for doc in documents:
            identity = _identity(doc)
            if identity is None:
                continue
            text_doc = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
            digest = hashlib.sha256(text_doc.encode()).hexdigest()[:32]
            self.new_docs.setdefault(digest, text_doc)
            out.append((identity, digest))
        return out, None


def _open_db(repo: git.Repo) -> sqlite3.Connection:
    """The index file under the Git directory (``cu-reconciler/history-v2.sqlite``), else
    under the user's cache directory, else in memory (a read-only repository)."""
    candidates = [Path(repo.common_dir) / "cu-reconciler"]
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    key = hashlib.sha256(os.path.realpath(repo.common_dir).encode()).hexdigest()[:16]
    candidates.append(Path(cache_home) / "cu-reconciler" / "history" / key)
    for directory in candidates:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(directory / f"history-v{_INDEX_VERSION}.sqlite", timeout=30)
            _schema(db)
            return db
        except (OSError, sqlite3.Error):
            continue
    db = sqlite3.connect(":memory:")
    _schema(db)
    return db


def _schema(db: sqlite3.Connection) -> None:
    with db:
        db.execute("CREATE TABLE IF NOT EXISTS commits (sha TEXT PRIMARY KEY, record TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS docs (hash TEXT PRIMARY KEY, doc TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS blobs (sha TEXT PRIMARY KEY, summary TEXT)")


def _git(repo: git.Repo, *args: str, stdin: str = "") -> bytes:
    proc = subprocess.run(
        ["git", f"--git-dir={repo.git_dir}", *args],
        input=stdin.encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise errors.SourceError(f"git {args[0]} failed: {detail}")
    return proc.stdout


def _parse_log(raw: str) -> list[dict[str, Any]]:
    """``git log -z --raw`` with our format → commits with (old path, old blob, new path,
    new blob) per changed YAML file (renames paired; a copy is an add).

    Read token by token (NUL-separated) and by position: the six header fields are taken by
    count, so an author or subject holding ``\\x01`` or a colon cannot forge a record."""
    tokens = raw.split("\x00")
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip("\n")
        if token.startswith("\x01") and i + 5 < len(tokens):
            sha, parents, author, email, date, subject = [token[1:], *tokens[i + 1 : i + 6]]
            out.append(
                {
                    "sha": sha.strip(),
                    "parents": parents.split(),
                    "author": author,
                    "email": email,
                    "date": date,
                    "subject": subject,
                    "raw": [],
                }
            )
            i += 6
            continue
        if not token.startswith(":") or not out:
            i += 1
            continue
        _, _, old_sha, new_sha, status = token[1:].split(" ")
        old = None if old_sha == _NO_SHA else old_sha
        new = None if new_sha == _NO_SHA else new_sha
        pair: tuple[str | None, str | None, str | None, str | None]
        if status[0] in "RC":
            a, b = tokens[i + 1], tokens[i + 2]
            i += 3
            pair = (a if status[0] == "R" else None, old if status[0] == "R" else None, b, new)
        else:
            path = tokens[i + 1]
            i += 2
            pair = (path if old else None, old, path if new else None, new)
        if any(p and _is_yaml(p) for p in (pair[0], pair[2])):
            out[-1]["raw"].append(pair)
    return out


def _sizes(repo: git.Repo, shas: list[str]) -> dict[str, int]:
    check = "--batch-check=%(objectname) %(objecttype) %(objectsize)"
    out = {}
    for line in _git(repo, "cat-file", check, stdin="\n".join(shas) + "\n").decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "blob":
            out[parts[0]] = int(parts[2])
    return out


def _cat(repo: git.Repo, shas: list[str]) -> Iterator[tuple[str, bytes]]:
    """Blob contents, one ``git cat-file --batch`` process for all of them."""
    if not shas:
        return
    with subprocess.Popen(
        ["git", f"--git-dir={repo.git_dir}", "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        writer = threading.Thread(target=_feed, args=(proc.stdin, shas), daemon=True)
        writer.start()
        for _ in shas:
            header = proc.stdout.readline().split()
            if len(header) != 3:
                continue
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)
            yield header[0].decode(), data
        writer.join()


def _feed(stdin: Any, shas: list[str]) -> None:
    try:
        stdin.write(("\n".join(shas) + "\n").encode())
    finally:
        stdin.close()


def _identity(doc: Any) -> tuple[str, str, str] | None:
    if not isinstance(doc, Mapping):
        return None
    meta = doc.get("metadata")
    kind = doc.get("kind")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if not isinstance(kind, str) or not isinstance(name, str):
        return None
    spec = doc.get("spec")
    ns = spec.get("namespace") if kind == "CUClaim" and isinstance(spec, Mapping) else None
    return kind, name, ns if isinstance(ns, str) else ""


def _is_yaml(path: str) -> bool:
    return path.endswith(_YAML_SUFFIXES)


# --------------------------------------------------------------------------- the walk


def _evaluate(
    index: _Index, record: dict[str, Any], match: Matcher, prefix: str
) -> tuple[Any, str | None, Any, str | None]:
    """(before, before path, after, after path) of the tracked part in one commit's changes."""
    before = after = None
    before_path = after_path = None
    kind = getattr(match, "kind", None)
    name = getattr(match, "name", None)
    for c_kind, c_name, _ns, side, path, digest in record["c"]:
        if (kind is not None and c_kind != kind) or (name is not None and c_name != name):
            continue
        if prefix and not path.startswith(prefix):
            continue
        part = match(index.doc(digest))
        if part is None:
            continue
        if side == "b":
            before = part if before is None else _merge(before, part)
            before_path = path
        else:
            after = part if after is None else _merge(after, part)
            after_path = path
    return before, before_path, after, after_path


def _merge(a: Any, b: Any) -> Any:
    """Two matches in one commit (several factor tables): combine their rows."""
    if isinstance(a, list) and isinstance(b, list):
        return [*a, *b]
    return b


def walk(
    repo_path: str, match: Matcher, rev: str = "HEAD", limit: int = 200, subdir: str = ""
) -> Result:
    """Commits (newest first, first-parent) that changed the tracked document, with fields,
    and the file versions that could not be read on the way.

    A change that arrived through a merge is credited to the commit on the merged branch
    that introduced it (its author, date and subject), with the merge in ``merged_in``.
    ``subdir`` restricts the walk to files under a directory of the repository (a cluster's
    directory in a fleet repository).
    """
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    if not rev or rev.startswith("-"):
        raise errors.SourceError(f"invalid revision {rev!r}")
    try:
        head = repo.git.rev_parse("--verify", "--end-of-options", f"{rev}^{{commit}}")
    except git.GitCommandError as exc:
        raise errors.SourceError(f"unknown revision {rev!r}") from exc
    prefix = subdir.strip("/") + "/" if subdir.strip("/") else ""
    index = _Index(repo)
    try:
        chain = repo.git.rev_list("--first-parent", head).split()
        records = index.records(chain)
        out: list[Entry] = []
        problems: list[Problem] = []
        for sha in chain:
            record = records[sha]
            problems.extend(Problem(sha, path, message) for path, message in record["w"])
            before, before_path, after, after_path = _evaluate(index, record, match, prefix)
            change = _classify(before, before_path, after, after_path)
            if change is None:
                continue
            credited, merged_in = sha, None
            if len(record["p"]) > 1:
                credited = _introduced(index, record, match, prefix, after) or sha
                merged_in = sha if credited != sha else None
            source = records.get(credited) or index.records([credited])[credited]
            out.append(
                Entry(
                    revision=credited,
                    author=source["a"],
                    email=source["e"],
                    date=source["d"],
                    subject=source["s"],
                    change=change,
                    path=str(after_path or before_path),
                    previous_path=before_path if before_path != after_path else None,
                    fields=field_changes(before, after),
                    merged_in=merged_in,
                )
            )
            if len(out) >= limit:
                return Result(out, problems, truncated=sha != chain[-1])
        return Result(out, problems)
    finally:
        index.close()
        repo.close()


def history(
    repo_path: str, match: Matcher, rev: str = "HEAD", limit: int = 200, subdir: str = ""
) -> list[Entry]:
    """The entries of :func:`walk`."""
    return walk(repo_path, match, rev, limit, subdir).entries


def _classify(before: Any, before_path: Any, after: Any, after_path: Any) -> str | None:
    if before is None and after is None:
        return None
    if after is None:
        return "removed"
    if before is None:
        return "added"
    if before == after:
        return None if before_path == after_path else "moved"  # None: reformatted only
    return "modified" if before_path == after_path else "moved"


def _introduced(
    index: _Index, merge: dict[str, Any], match: Matcher, prefix: str, value: Any
) -> str | None:
    """The newest commit on the merged branch(es) whose own change left the document as
    the merge did (``value``): who wrote the change, rather than who merged it."""
    first, *others = merge["p"]
    side = index.repo.git.rev_list("--topo-order", *others, f"^{first}").split()
    if not side:
        return None
    records = index.records(side)
    for sha in side:
        before, _, after, _ = _evaluate(index, records[sha], match, prefix)
        if before is None and after is None:
            continue
        if after == value and before != value:
            return str(sha)
    return None


# --------------------------------------------------------------------------- matchers


@dataclass(frozen=True, slots=True)
class Query:
    """A :data:`Matcher` that also says which kind (and name) it can match, so the walk
    looks only at those documents' changes."""

    kind: str
    name: str | None
    select: Matcher

    def __call__(self, doc: Doc) -> Any:
        return self.select(doc)


def document(kind: str, name: str) -> Matcher:
    """A document by kind and ``metadata.name``."""

    def match(doc: Doc) -> Any:
        meta = doc.get("metadata") or {}
        if doc.get("kind") == kind and isinstance(meta, Mapping) and meta.get("name") == name:
            return _plain(doc)
        return None

    return Query(kind, name, match)


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

    return Query("CUClaim", name, match)


def factors(model: str) -> Matcher:
    """The factor rows of one device model, across every FactorTable (file-level tracking)."""

    def match(doc: Doc) -> Any:
        if doc.get("kind") != "FactorTable":
            return None
        spec = doc.get("spec") or {}
        rows = [
            _plain(r)
            for r in ((spec.get("factors") if isinstance(spec, Mapping) else None) or ())
            if isinstance(r, Mapping) and r.get("deviceModel") == model
        ]
        if not rows:
            return None
        meta = doc.get("metadata") or {}
        table = str(meta.get("name", "") if isinstance(meta, Mapping) else "")
        return [{"table": table, **r} for r in rows]

    return Query("FactorTable", None, match)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value

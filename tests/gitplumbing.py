"""Build Git histories with ``git fast-import``: big trees and long histories in seconds, small
on disk (a 60 MB blob of one repeated line packs to a few hundred KB)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Commit:
    """One commit: ``files`` maps a path to bytes (a blob) or to an int (a mark of a blob
    written earlier with :meth:`Stream.blob`), ``None`` deletes the path."""

    message: str
    files: dict[str, bytes | int | None] = field(default_factory=dict)
    author: str = "Test <test@example.invalid>"
    date: str = "1700000000 +0000"
    merge: str | None = None
    """A ref or mark (``:N``) to merge as the second parent."""
    branch: str = "refs/heads/main"
    from_: str | None = None


class Stream:
    """Writes a fast-import stream; marks are numbered from 1."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.next_mark = 1

    def blob(self, data: bytes) -> int:
        mark = self.next_mark
        self.next_mark += 1
        self.parts.append(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)) + data + b"\n")
        return mark

    def commit(self, c: Commit) -> int:
        mark = self.next_mark
        self.next_mark += 1
        message = c.message.encode()
        who = f"{c.author} {c.date}".encode()
        lines = [
            b"commit " + c.branch.encode(),
            b"mark :%d" % mark,
            b"author " + who,
            b"committer " + who,
            b"data %d" % len(message),
            message,
        ]
        if c.from_ is not None:
            lines.append(b"from " + c.from_.encode())
        if c.merge is not None:
            lines.append(b"merge " + c.merge.encode())
        out = [b"\n".join(lines) + b"\n"]
        for path, content in c.files.items():
            if content is None:
                out.append(b"D " + path.encode() + b"\n")
            elif isinstance(content, int):
                out.append(b"M 100644 :%d " % content + path.encode() + b"\n")
            else:
                out.append(b"M 100644 inline " + path.encode() + b"\ndata %d\n" % len(content))
                out.append(content + b"\n")
        out.append(b"\n")
        self.parts.append(b"".join(out))
        return mark

    def chunks(self) -> Iterator[bytes]:
        yield from self.parts


def init(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    return root


def run(root: Path, stream: Stream | Iterable[bytes], checkout: bool = False) -> None:
    """Feed the stream to ``git fast-import`` in ``root``; optionally check out ``main``."""
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"],
        cwd=root,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    chunks = stream.chunks() if isinstance(stream, Stream) else stream
    for chunk in chunks:
        proc.stdin.write(chunk)
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    err = proc.stderr.read() if proc.stderr else b""
    assert proc.wait() == 0, err.decode()
    if checkout:
        subprocess.run(["git", "checkout", "-q", "-f", "main"], cwd=root, check=True)


def tree_files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``, by POSIX path relative to it."""
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gitrepo"
HOSTILE = (
    "16-paths-to-one-60MB-blob",
    "16-paths-to-one-20MB-blob",
    "24MB-snapshot-as-one-flow-list",
    "100k-tiny-files",
    "20k-files-of-flow-lists",
    "alias-bomb-in-many-documents",
    "deep-nesting-outside-the-layout",
    "both-budgets-at-once",
)
"""The hostile revisions of issue 20 (items 2 and 3), each on top of examples/gitrepo."""


def hostile_revision(root: Path, case: str) -> Path:
    """A repository at ``root`` whose HEAD is examples/gitrepo plus the hostile ``case``."""
    s = Stream()
    files: dict[str, bytes | int | None] = dict(tree_files(EXAMPLE))
    files.update(hostile_files(s, case))
    s.commit(Commit("hostile", files))
    init(root)
    run(root, s)
    return root


def hostile_commit(root: Path, case: str, parent: str, branch: str = "main") -> str:
    """A commit on ``branch`` of the (bare or not) repository at ``root``: ``parent``'s tree
    plus the hostile ``case``; ``branch`` is moved to it (forced); returns its SHA."""
    s = Stream()
    ref = f"refs/heads/{branch}"
    s.commit(Commit(f"hostile: {case}", hostile_files(s, case), from_=parent, branch=ref))
    return _moved(root, s, ref)


def restore_commit(root: Path, parent: str, tree_of: str, message: str) -> str:
    """A commit on ``main`` of the repository at ``root``, child of ``parent``, holding the
    tree of ``tree_of`` (e.g. the good commit that follows a hostile one); returns its SHA."""

    def git_(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, check=True)
        return out.stdout.decode().strip()

    who = ("-c", "user.name=Test", "-c", "user.email=test@example.invalid")
    sha = git_(*who, "commit-tree", f"{tree_of}^{{tree}}", "-p", parent, "-m", message)
    git_("update-ref", "refs/heads/main", sha)
    return sha


def _moved(root: Path, s: Stream, ref: str = "refs/heads/main") -> str:
    proc = subprocess.run(
        ["git", "fast-import", "--quiet", "--done", "--force"],
        cwd=root,
        input=b"".join(s.chunks()) + b"done\n",
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    sha = subprocess.run(["git", "rev-parse", ref], cwd=root, capture_output=True, check=True)
    return sha.stdout.decode().strip()


def hostile_files(s: Stream, case: str) -> dict[str, bytes | int | None]:
    """The files the hostile ``case`` adds (blobs written to ``s``)."""
    extra: dict[str, bytes | int | None] = {}
    if case == "16-paths-to-one-60MB-blob":
        blob = s.blob(b"a: [" + b"1," * (30 * 2**20) + b"1]\n")
        extra = {f"big/copy-{i}.yaml": blob for i in range(16)}
    elif case == "16-paths-to-one-20MB-blob":
        blob = s.blob(b"a: [" + b"1," * (10 * 2**20) + b"1]\n")
        extra = {f"big/copy-{i}.yaml": blob for i in range(16)}
    elif case == "24MB-snapshot-as-one-flow-list":
        extra = {
            "observed/snapshot.yaml": b"{kind: List, items: [" + b"{}," * 8_000_000 + b"{}]}\n"
        }
    elif case == "100k-tiny-files":
        blob = s.blob(b"a: 1\n")
        extra = {f"many/{i // 1000}/f{i}.yaml": blob for i in range(100_000)}
    elif case == "20k-files-of-flow-lists":
        blob = s.blob(b"a: [" + b"1," * 1500 + b"1]\n")
        extra = {f"many/{i // 1000}/f{i}.yaml": blob for i in range(19_000)}
    elif case == "alias-bomb-in-many-documents":
        extra = {"bombs.yaml": b"---\n".join([alias_bomb()] * 1000)}
    elif case == "deep-nesting-outside-the-layout":
        deep = b"kind: ClusterSettings\nx: " + b"[" * 3000 + b"]" * 3000 + b"\n"
        extra = {".pre-commit-config.yaml": deep}
    elif case == "both-budgets-at-once":
        # The worst the budgets allow: ~62 MiB held (files the layout excludes are still
        # read), plus block mappings (the costliest nodes) composing up to the node budget.
        held = s.blob(b"# " + b"x" * (1000 * 1024) + b"\n")
        extra = {f"observed/held-{i}.yaml": held for i in range(55)}
        doc = b"kind: X\nitems:\n" + b"- a: 1\n" * 40_000
        block = s.blob(b"---\n".join([doc] * 3))
        extra.update({f"blocks/b{i}.yaml": block for i in range(6)})
    else:
        raise ValueError(case)
    return extra


def alias_bomb(width: int = 7, depth: int = 9) -> bytes:
    """A "billion laughs" document: ``depth`` levels of ``width`` aliases (7x9: 40 million)."""
    text = b"a: &a [" + b", ".join([b"x"] * width) + b"]\n"
    for level in range(1, depth):
        name, prev = chr(ord("a") + level), chr(ord("a") + level - 1)
        text += f"{name}: &{name} [".encode() + b", ".join([b"*" + prev.encode()] * width) + b"]\n"
    return text

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

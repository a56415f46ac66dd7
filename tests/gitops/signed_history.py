"""Long Git histories, fast, with Git plumbing (for the signing tests and the bench).

- :func:`empty_commits`: N unsigned commits on top of a branch with ``git fast-import`` (10,000
  in well under a second, as an attacker would push them).
- :func:`signed_commits`: N commits signed with a real SSH key (made by ``ssh-keygen``), in
  the exact object format ``git commit -S`` writes (a ``gpgsig`` header with an SSHSIG
  signature over the object without it). Git 2.39's fast-import cannot carry signatures, so
  the objects are written as loose objects, then packed; ``git verify-commit`` accepts them
  (the tests check one with Git itself).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Key:
    path: Path
    """The private key file (for ``git -c user.signingkey=PATH commit -S``)."""
    line: str
    """Its allowed-signers line for ``spec.signing.sshAllowedSigners``."""
    private: Any
    """The same key loaded with ``cryptography`` (for :func:`signed_commits`)."""


def ssh_key(directory: Path, name: str) -> Key:
    from cryptography.hazmat.primitives import serialization

    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    public = (directory / f"{name}.pub").read_text().split()
    private = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    return Key(path, f"{name}@example.invalid {public[0]} {public[1]}", private)


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def sshsig(key: Key, payload: bytes) -> bytes:
    """An armoured SSH signature of ``payload`` in namespace ``git`` (OpenSSH PROTOCOL.sshsig)."""
    from cryptography.hazmat.primitives import serialization

    public = key.private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(public.split()[1])
    digest = hashlib.sha512(payload).digest()
    signed = b"SSHSIG" + _string(b"git") + _string(b"") + _string(b"sha512") + _string(digest)
    signature = _string(b"ssh-ed25519") + _string(key.private.sign(signed))
    body = (
        b"SSHSIG"
        + struct.pack(">I", 1)
        + _string(blob)
        + _string(b"git")
        + _string(b"")
        + _string(b"sha512")
        + _string(signature)
    )
    text = base64.b64encode(body)
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return b"\n".join([b"-----BEGIN SSH SIGNATURE-----", *lines, b"-----END SSH SIGNATURE-----"])


def _write_object(git_dir: Path, kind: bytes, content: bytes) -> str:
    data = kind + b" " + str(len(content)).encode() + b"\0" + content
    sha = hashlib.sha1(data).hexdigest()
    path = git_dir / "objects" / sha[:2] / sha[2:]
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(zlib.compress(data, 1))
    return sha


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    out = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, check=True)
    return out.stdout.decode().strip()


def signed_commits(
    repo: Path, n: int, key: Key | None, *, branch: str = "main", message: str = "change"
) -> str:
    """N commits on ``branch`` (same tree as its head), each signed by ``key`` (None:
    unsigned); moves the branch and returns the new head."""
    git_dir = Path(_git(repo, "rev-parse", "--absolute-git-dir"))
    parent = _git(repo, "rev-parse", f"refs/heads/{branch}")
    tree = _git(repo, "rev-parse", f"{parent}^{{tree}}")
    for i in range(n):
        when = f"{1_800_000_000 + i} +0000"
        header = (
            f"tree {tree}\nparent {parent}\n"
            f"author Bench <bench@example.invalid> {when}\n"
            f"committer Bench <bench@example.invalid> {when}\n"
        ).encode()
        body = f"\n{message} {i}\n".encode()
        if key is None:
            content = header + body
        else:
            armored = sshsig(key, header + body).split(b"\n")
            gpgsig = b"gpgsig " + armored[0] + b"".join(b"\n " + x for x in armored[1:]) + b"\n"
            content = header + gpgsig + body
        parent = _write_object(git_dir, b"commit", content)
    _git(repo, "update-ref", f"refs/heads/{branch}", parent)
    _git(repo, "repack", "-a", "-d", "-q")  # as a pushed repository is: packed
    if _git(repo, "symbolic-ref", "-q", "HEAD") == f"refs/heads/{branch}":
        _git(repo, "reset", "-q", "--hard", parent)
    return parent


def empty_commits(repo: Path, n: int, *, branch: str = "main", message: str = "empty") -> str:
    """N unsigned commits on top of ``branch`` with ``git fast-import``; the new head."""
    parent = _git(repo, "rev-parse", f"refs/heads/{branch}")
    chunks: list[bytes] = []
    for i in range(n):
        text = f"{message} {i}\n".encode()
        chunks.append(
            f"commit refs/heads/{branch}\n"
            f"committer Mallory <mallory@example.invalid> {1_800_000_000 + i} +0000\n"
            f"data {len(text)}\n".encode()
            + text
            + (f"from {parent}\n".encode() if i == 0 else b"")
            + b"\n"
        )
    env = {**os.environ}
    subprocess.run(
        ["git", "fast-import", "--quiet", "--force"],
        cwd=repo,
        input=b"".join(chunks),
        env=env,
        check=True,
    )
    head = _git(repo, "rev-parse", f"refs/heads/{branch}")
    if _git(repo, "symbolic-ref", "-q", "HEAD") == f"refs/heads/{branch}":
        _git(repo, "reset", "-q", "--hard", head)
    return head

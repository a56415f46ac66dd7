"""Commit signatures: every commit that reaches the cluster is signed by a trusted key.

Trusted keys are listed in ``ClusterSettings.spec.signing`` (SSH allowed signers, or OpenPGP
public keys). Taking the keys from the very commit being checked would let anyone with push
access add their own key and sign with it, so trust is a chain. **The commit rule**: a commit
must be signed by a key trusted by *every* parent of it that has signing settings (all parents,
so a merge cannot pick the side whose keys suit it); a commit none of whose parents has
settings but which introduces them is trusted by its own list (trust on first use, like an SSH
known host); a commit none of whose parents and not itself has settings needs nothing.

Which commits the rule is applied to (:func:`verify`, the one rule ``render``, ``plan``,
``apply`` and ``run`` use):

* **With an anchor** (the last verified revision ``L`` and the keys in force there, kept in
  the cluster by the writer: :mod:`reconciler.apply.record`): every commit reachable from the
  head and not from ``L`` (``git rev-list L..HEAD``, merged side branches included, no count
  cap). A head whose history does not contain ``L`` (a force-push, rewritten history, or ``L``
  no longer fetched) is refused, unless its first-parent history holds an **acceptance**: a
  commit signed by a key trusted at ``L`` whose message has the trailer
  ``Cu-Accept-History: <full SHA of L>``. The acceptance stands in for ``L``: the commits
  after it are checked by the commit rule. Naming ``L`` means an old acceptance cannot be
  replayed after a later rewrite, and a roll-back to an older signed commit needs one too.
  When nothing was trusted at ``L`` (no ``signing``) a rewrite needs no acceptance and the
  rule without an anchor applies.
* **Without an anchor** (``render`` in a GitOps engine's plugin, ``plan``, a fresh cluster):
  the whole first-parent history of the head is walked. Every commit whose settings differ
  from its first parent's (introduced, edited, *removed*) must pass the commit rule, back to
  the first introduction; and so must the last such commit ``S`` and every commit after it
  (``git rev-list S^..HEAD``). An unsigned commit that removes ``signing`` is itself a change
  checked against the keys before it, so it cannot become the "last change" that frees the
  commits after it; a broken-then-restored ``ClusterSettings`` is a removal then a
  re-introduction, and the removal is refused. What no rule without an anchor can tell apart:
  a history rewritten from its root that never had ``signing`` looks like a repository that
  never used signing; the cluster-kept anchor closes that for ``apply`` and ``run``.

Speed: the commits' settings come from one ``git log --name-only`` (a tree is read only where
a YAML file holding ClusterSettings changed); commit objects from Git's object database; SSH
signatures (ed25519, ECDSA, RSA) over keys listed without options are verified in-process
with ``cryptography`` (about 0.1 ms each: BENCHMARKS.md). Anything else (GPG, options such as
``valid-after``, security keys, a bad signature to explain) goes to ``git verify-commit``
with a private allowed-signers file or keyring; nothing global is touched. Verified
(commit, keys) pairs are cached for the process: commits are immutable.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import git
from pydantic import ValidationError

from reconciler import _yamlcore, errors
from reconciler.model import documents as docs

ACCEPT_TRAILER = "Cu-Accept-History"
"""The trailer of a commit that accepts a rewritten history (its value: the replaced SHA)."""

_BLOB_HAS_SETTINGS: dict[str, bool] = {}


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last verified revision and the signing settings in force there (None: none)."""

    revision: str
    signing: docs.CommitSigning | None


@dataclass(frozen=True, slots=True)
class Verified:
    revision: str
    signer: str
    """Who signed the head (principal or key; "" when the head needed no signature)."""
    commits: int
    """How many commits the commit rule was applied to."""
    signing: docs.CommitSigning | None
    """The settings at the head: the keys in force once it is applied."""


@dataclass(frozen=True, slots=True)
class _Commit:
    sha: str
    parents: tuple[str, ...]


def signing_at(commit: git.Commit) -> docs.CommitSigning | None:
    """The ``signing`` settings of the ClusterSettings in this commit (None: not required)."""
    for item in commit.tree.traverse():
        if not isinstance(item, git.Blob) or not str(item.path).endswith((".yaml", ".yml")):
            continue
        if _BLOB_HAS_SETTINGS.get(item.hexsha) is False:
            continue  # blobs are immutable: a blob without settings never has them
        data = item.data_stream.read()
        _BLOB_HAS_SETTINGS[item.hexsha] = b"ClusterSettings" in data
        if not _BLOB_HAS_SETTINGS[item.hexsha]:
            continue
        try:
            # The loader's bounds (depth checked before parsing, nodes, aliases): a hostile
            # file outside the layout can cost no more here than in validate (issue 20.3).
            documents = _yamlcore.plain_documents(data.decode("utf-8"))
        except (UnicodeDecodeError, _yamlcore.Refused):
            continue
        for doc in documents:
            if isinstance(doc, dict) and doc.get("kind") == "ClusterSettings":
                spec = doc.get("spec") or {}
                raw = spec.get("signing") if isinstance(spec, dict) else None
                if raw is None:
                    return None
                try:
                    return docs.CommitSigning.model_validate(raw)
                except ValidationError:
                    return None  # validate reports it; an unusable list trusts nobody
    return None


def verify(repo_path: str, rev: str, anchor: Anchor | None = None) -> Verified | None:
    """Apply the module's rule to ``rev``; None when nothing requires signatures.

    Raises :class:`reconciler.errors.SignatureError` naming the first commit (oldest first)
    that breaks the rule, or the rewrite that no acceptance covers.
    """
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
        head = repo.commit(rev).hexsha
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    except (git.BadName, ValueError) as exc:
        raise errors.SourceError(f"unknown revision {rev!r}") from exc
    try:
        return _verify(_Walk(repo, head), anchor)
    finally:
        repo.close()  # its persistent cat-file processes


def _verify(walk: _Walk, anchor: Anchor | None) -> Verified | None:
    head = walk.head
    if anchor is not None and anchor.revision == head:
        own = walk.settings_of(head)
        return Verified(head, "", 0, own) if own is not None or anchor.signing else None
    if anchor is not None:
        contained = walk.contains(anchor.revision)
        if contained or anchor.signing is not None:
            return walk.since_anchor(anchor, contained=contained)
    return walk.without_anchor()


def verify_worktree(path: str, signing: bool, anchor: Anchor | None = None) -> Verified | None:
    """The rule for files on disk (``cuctl render .`` in a GitOps engine's checkout): the
    checkout's HEAD is verified, and the files must be HEAD's, since a signature covers a
    commit, not a directory. ``signing``: the files on disk require signatures."""
    try:
        repo = git.Repo(path, search_parent_directories=True)
        repo.head.commit  # noqa: B018 (an empty repository has none)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError) as exc:
        if signing:
            raise errors.SignatureError(
                f"{path}: ClusterSettings requires signed commits, but the files are not a "
                "Git commit: use a checkout of a signed commit, or --rev"
            ) from exc
        return None
    try:
        verified = verify(path, "HEAD", anchor)
        if verified is None and not signing:
            return None
        dirty = repo.git.status("--porcelain", "--untracked-files=all", "--", os.path.abspath(path))
        head = repo.head.commit.hexsha
    finally:
        repo.close()
    if dirty.strip():
        first = dirty.splitlines()[0].strip()
        raise errors.SignatureError(
            f"{path}: the files differ from the signed commit HEAD {head[:12]} "
            f"(uncommitted changes: {first}): ClusterSettings requires signed commits; commit "
            "them signed, or use --rev"
        )
    return verified


class _Walk:
    """The commits and settings of one verification."""

    def __init__(self, repo: git.Repo, head: str) -> None:
        self.repo = repo
        self.head = head
        self.settings: dict[str, docs.CommitSigning | None] = {}
        self.raw: dict[str, bytes] = {}

    # -- which commits ---------------------------------------------------------------------

    def contains(self, revision: str) -> bool:
        """Whether ``revision`` is in the head's history (False when unknown here)."""
        proc = subprocess.run(
            ["git", "merge-base", "--is-ancestor", revision, self.head],
            cwd=self.repo.git_dir,
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def _log(self, *args: str) -> list[_Commit]:
        """Commits of ``git log ARGS``, parents before children, each with its settings."""
        out = self.repo.git.log(
            "--topo-order",
            "--reverse",
            "--diff-merges=first-parent",
            "--no-renames",
            "--format=%x01%H %P",
            "--name-only",
            *args,
        )
        commits: list[_Commit] = []
        changed: dict[str, list[str]] = {}
        for line in out.splitlines():
            if line.startswith("\x01"):
                sha, *parents = line[1:].split()
                commits.append(_Commit(sha, tuple(parents)))
                changed[sha] = []
            elif line.strip() and commits:
                changed[commits[-1].sha].append(line.strip())
        for c in commits:
            if c.sha in self.settings:
                continue
            first = c.parents[0] if c.parents else None
            paths = [p for p in changed[c.sha] if p.endswith((".yaml", ".yml"))]
            if first is None or any(
                _holds_settings(self.repo, sha, p) for p in paths for sha in (c.sha, first)
            ):
                self.settings[c.sha] = _cached_signing_at(self.repo, c.sha)
            else:
                self.settings[c.sha] = self.settings_of(first)
        return commits

    def settings_of(self, sha: str) -> docs.CommitSigning | None:
        if sha not in self.settings:
            self.settings[sha] = _cached_signing_at(self.repo, sha)
        return self.settings[sha]

    # -- the two cases ---------------------------------------------------------------------

    def since_anchor(self, anchor: Anchor, *, contained: bool) -> Verified | None:
        """Every commit after the anchor (or after the acceptance of a rewrite)."""
        base = anchor.revision
        if not contained:
            assert anchor.signing is not None
            base = self._acceptance(anchor, anchor.signing)
        commits = self._log(self.head, f"^{base}")
        where = f"after the last verified revision {anchor.revision[:12]}"
        return self._check_all(commits, where, required=anchor.signing is not None)

    def without_anchor(self) -> Verified | None:
        chain = self._log("--first-parent", self.head)
        changes = [
            c
            for c in chain
            if self.settings[c.sha] != (self.settings_of(c.parents[0]) if c.parents else None)
        ]
        if not changes:
            return None  # signing was never set in this history
        for c in changes:  # oldest first: a bad key change is reported first
            self._check(c, None, "a change of spec.signing")
        last = changes[-1]
        commits = self._log(self.head, *(f"^{p}" for p in last.parents[:1]))
        where = f"since the last change of spec.signing ({last.sha[:12]})"
        return self._check_all(commits, where, required=True, counted=len(changes))

    def _check_all(
        self, commits: Sequence[_Commit], where: str, *, required: bool, counted: int = 0
    ) -> Verified | None:
        todo = [(c, self._trusted(c)) for c in commits]
        missing = [
            c.sha
            for c, trusted in todo
            if any((c.sha, _key(k)) not in _VERIFIED for _, k in trusted)
        ]
        self.raw = _prefetch(self.repo, missing)  # only what the cache does not know
        signer = ""
        for c, trusted in todo:
            who = self._check(c, trusted, where)
            if c.sha == self.head:
                signer = who
        own = self.settings_of(self.head)
        if not required and not signer and own is None:
            return None
        return Verified(self.head, signer, len(commits) + counted, own)

    def _trusted(self, c: _Commit) -> list[tuple[str, docs.CommitSigning]]:
        """The key lists ``c`` must satisfy (the commit rule), each with where it is from."""
        trusted = [(p, s) for p in c.parents if (s := self.settings_of(p)) is not None]
        if not trusted:
            own = self.settings_of(c.sha)
            if own is not None:
                trusted = [(c.sha, own)]
        return trusted

    def _check(
        self,
        c: _Commit,
        trusted: list[tuple[str, docs.CommitSigning]] | None,
        where: str,
    ) -> str:
        """The commit rule; the signer ("" when the commit needs no signature)."""
        signer = ""
        for parent, keys in self._trusted(c) if trusted is None else trusted:
            at = (
                f"at {parent[:12]} (where signing starts)"
                if parent == c.sha
                else f"at its parent {parent[:12]}"
            )
            signer = _verify_cached(self.repo, c.sha, keys, f"{at}; {where}", self.raw.get(c.sha))
        return signer

    def _acceptance(self, anchor: Anchor, keys: docs.CommitSigning) -> str:
        """The newest first-parent commit accepting a rewrite of ``anchor``, verified."""
        line = f"{ACCEPT_TRAILER}: {anchor.revision}"
        found: list[str] = str(
            self.repo.git.log(
                "--first-parent", "--format=%H", "-F", "-i", f"--grep={line}", self.head
            )
        ).split()
        problems: list[str] = []
        for sha in found:
            message = self.repo.commit(sha).message
            if not any(x.strip().lower() == line.lower() for x in str(message).splitlines()):
                continue
            try:
                _verify_cached(self.repo, sha, keys, f"recorded at {anchor.revision[:12]}")
            except errors.SignatureError as exc:
                problems.append(str(exc))
                continue
            return sha
        hint = f"; {problems[0]}" if problems else ""
        raise errors.SignatureError(
            f"head {self.head[:12]} does not contain the last verified revision "
            f"{anchor.revision[:12]} (a force-push or rewritten history): refused until a "
            f"commit signed by a key trusted at {anchor.revision[:12]} accepts the new history "
            f"(git commit -S --allow-empty --trailer '{line}'){hint}"
        )


# -- settings and objects, cached for the process (commits and blobs are immutable) ----------

_SETTINGS: dict[str, docs.CommitSigning | None] = {}
"""commit → its signing settings."""
_VERIFIED: dict[tuple[str, str], str] = {}
"""(commit, keys) → signer: a verified pair stays verified."""


def _cached_signing_at(repo: git.Repo, sha: str) -> docs.CommitSigning | None:
    if sha not in _SETTINGS:
        _SETTINGS[sha] = signing_at(repo.commit(sha))
    return _SETTINGS[sha]


def _holds_settings(repo: git.Repo, sha: str, path: str) -> bool:
    try:
        blob = repo.commit(sha).tree / path
    except KeyError:
        return False
    if blob.hexsha not in _BLOB_HAS_SETTINGS:
        _BLOB_HAS_SETTINGS[blob.hexsha] = b"ClusterSettings" in blob.data_stream.read()
    return _BLOB_HAS_SETTINGS[blob.hexsha]


def _prefetch(repo: git.Repo, shas: list[str]) -> dict[str, bytes]:
    """Raw commit objects in one ``git cat-file --batch`` (one process, not one per commit)."""
    out: dict[str, bytes] = {}
    if not shas:
        return out
    proc = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=repo.git_dir,
        input=("\n".join(shas) + "\n").encode(),
        capture_output=True,
        check=True,
    )
    data, pos = proc.stdout, 0
    for sha in shas:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        if len(header) != 3:  # "<sha> missing": read it again, alone, when needed
            pos = end + 1
            continue
        size = int(header[2])
        out[sha] = data[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
    return out


_KEYS: dict[int, tuple[docs.CommitSigning, str]] = {}


def _key(keys: docs.CommitSigning) -> str:
    """A key list's identity for the cache (its JSON, computed once per object)."""
    found = _KEYS.get(id(keys))
    if found is None or found[0] is not keys:
        found = (keys, keys.model_dump_json())
        _KEYS[id(keys)] = found
    return found[1]


def _verify_cached(
    repo: git.Repo,
    sha: str,
    keys: docs.CommitSigning,
    trusted_by: str,
    raw: bytes | None = None,
) -> str:
    key = (sha, _key(keys))
    if key not in _VERIFIED:
        _VERIFIED[key] = _verify_commit(repo, sha, keys, trusted_by, raw)
    return _VERIFIED[key]


def _verify_commit(
    repo: git.Repo, sha: str, keys: docs.CommitSigning, trusted_by: str, raw: bytes | None
) -> str:
    """The signer, or raise SignatureError saying why the commit is not trusted."""
    if raw is None:
        raw = bytes(repo.odb.stream(bytes.fromhex(sha)).read())
    split = _split_signed(raw)
    if split is None or not split[0]:
        commit = repo.commit(sha)
        if not commit.gpgsig:
            who = f"{sha[:12]} by {commit.author.name} <{commit.author.email}>"
            raise errors.SignatureError(
                f"commit {who} is not signed; ClusterSettings {trusted_by} requires commits "
                "signed by one of spec.signing's keys (git commit -S)"
            )
    else:
        signer = _ssh_verify(split[0], split[1], keys)
        if signer:
            return signer
    return _git_verify(repo, sha, keys, trusted_by)


def _split_signed(raw: bytes) -> tuple[bytes, bytes] | None:
    """(signature, signed payload) of a commit object: Git's payload is the object without
    its ``gpgsig`` header. None when it has another signature header (``gpgsig-sha256``):
    that is left to Git."""
    header, sep, message = raw.partition(b"\n\n")
    payload: list[bytes] = []
    signature: list[bytes] = []
    inside = False
    for line in header.split(b"\n"):
        if line.startswith(b"gpgsig "):
            if signature:
                return None
            inside = True
            signature.append(line[len(b"gpgsig ") :])
        elif inside and line.startswith(b" "):
            signature.append(line[1:])
        else:
            inside = False
            if line.startswith(b"gpgsig-"):
                return None
            payload.append(line)
    armored = b"\n".join(signature) + b"\n" if signature else b""
    return armored, b"\n".join(payload) + sep + message


# -- in-process SSH signature verification (the SSHSIG format, OpenSSH PROTOCOL.sshsig) --------


def _ssh_keys(keys: docs.CommitSigning) -> dict[bytes, str]:
    """Public key blob → principal, for allowed-signers lines without options (lines with
    options, e.g. ``valid-after`` or ``cert-authority``, are left to Git)."""
    out: dict[bytes, str] = {}
    for line in keys.ssh_allowed_signers:
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        kind, blob = fields[1], fields[2]
        if not kind.startswith(("ssh-", "ecdsa-")):
            continue  # options (or a security key): Git decides
        try:
            decoded = base64.b64decode(blob, validate=True)
        except ValueError:
            continue
        if _string(decoded, 0)[0] == kind.encode():
            out.setdefault(decoded, fields[0])
    return out


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from(">I", data, pos)
    end = pos + 4 + length
    if end > len(data):
        raise ValueError("truncated")
    return data[pos + 4 : end], end


def _ssh_verify(armored: bytes, payload: bytes, keys: docs.CommitSigning) -> str:
    """The principal when ``armored`` is a good SSH signature of ``payload`` in namespace
    ``git`` by one of ``keys``; "" when it is not (or cannot be decided here)."""
    trusted = _ssh_keys(keys)
    if not trusted:
        return ""
    try:
        from cryptography.exceptions import InvalidSignature
    except ImportError:  # the core install: Git verifies instead
        return ""
    text = armored.decode("ascii", "replace").strip().splitlines()
    if not text or text[0] != "-----BEGIN SSH SIGNATURE-----":
        return ""
    try:
        blob = base64.b64decode("".join(text[1:-1]))
        if blob[:6] != b"SSHSIG" or struct.unpack_from(">I", blob, 6)[0] != 1:
            return ""
        public, pos = _string(blob, 10)
        namespace, pos = _string(blob, pos)
        reserved, pos = _string(blob, pos)
        hash_name, pos = _string(blob, pos)
        sig, pos = _string(blob, pos)
    except (ValueError, struct.error):
        return ""
    principal = trusted.get(public)
    if principal is None or namespace != b"git" or hash_name not in (b"sha256", b"sha512"):
        return ""
    digest = hashlib.new(hash_name.decode(), payload).digest()
    signed = b"SSHSIG" + b"".join(
        struct.pack(">I", len(x)) + x for x in (namespace, reserved, hash_name, digest)
    )
    try:
        if _check_ssh(public, sig, signed):
            return principal
    except (InvalidSignature, ValueError, struct.error, TypeError):
        return ""
    return ""


_PUBLIC: dict[bytes, Any] = {}
"""SSH public key blob → the loaded key (parsed once per process)."""


def _check_ssh(public: bytes, sig: bytes, signed: bytes) -> bool:
    """Raise InvalidSignature (or return False for an unknown key type)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

    kind, _ = _string(public, 0)
    key = serialization.load_ssh_public_key(kind + b" " + base64.b64encode(public))
    algorithm, pos = _string(sig, 0)
    value, _ = _string(sig, pos)
    if isinstance(key, ed25519.Ed25519PublicKey) and algorithm == b"ssh-ed25519":
        key.verify(value, signed)
        return True
    if isinstance(key, rsa.RSAPublicKey) and algorithm in (b"rsa-sha2-256", b"rsa-sha2-512"):
        chosen: hashes.HashAlgorithm = (
            hashes.SHA256() if algorithm == b"rsa-sha2-256" else hashes.SHA512()
        )
        key.verify(value, signed, padding.PKCS1v15(), chosen)
        return True
    if isinstance(key, ec.EllipticCurvePublicKey) and algorithm == kind:
        r, at = _string(value, 0)
        s, _ = _string(value, at)
        size = key.curve.key_size
        curve_hash: hashes.HashAlgorithm = (
            hashes.SHA256() if size <= 256 else hashes.SHA384() if size <= 384 else hashes.SHA512()
        )
        der = utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
        key.verify(der, signed, ec.ECDSA(curve_hash))
        return True
    return False


# -- Git's own verification (GPG, options, and the reason a signature is refused) ------------


@contextmanager
def _verifier_env(signing: docs.CommitSigning) -> Iterator[tuple[list[str], dict[str, str]]]:
    """Git ``-c`` options and environment that trust exactly ``signing``'s keys."""
    tmp = tempfile.mkdtemp(prefix="cu-verify-")
    try:
        signers = os.path.join(tmp, "allowed_signers")
        with open(signers, "w", encoding="utf-8") as handle:
            for line in signing.ssh_allowed_signers:
                handle.write(line.strip() + "\n")
        home = os.path.join(tmp, "gnupg")
        os.mkdir(home, 0o700)
        env = {**os.environ, "GNUPGHOME": home}
        for key in signing.gpg_public_keys:
            subprocess.run(
                ["gpg", "--batch", "--quiet", "--import"],
                input=key.encode("utf-8"),
                env=env,
                capture_output=True,
                check=False,
                timeout=30,
            )
        yield ["-c", f"gpg.ssh.allowedSignersFile={signers}"], env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _git_verify(repo: git.Repo, sha: str, signing: docs.CommitSigning, trusted_by: str) -> str:
    commit = repo.commit(sha)
    who = f"{sha[:12]} by {commit.author.name} <{commit.author.email}>"
    with _verifier_env(signing) as (options, env):
        proc = subprocess.run(
            ["git", *options, "verify-commit", "--raw", sha],
            cwd=repo.git_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    report = (proc.stderr + proc.stdout).strip()
    if proc.returncode != 0:
        detail = report.splitlines()[-1] if report else "verification failed"
        raise errors.SignatureError(
            f"commit {who} is signed by a key that ClusterSettings {trusted_by} does not "
            f"trust ({detail}); add the key to spec.signing in a commit signed by a trusted key"
        )
    return _signer(report)


def _signer(report: str) -> str:
    for line in report.splitlines():
        if 'Good "git" signature for ' in line:
            return line.split('Good "git" signature for ', 1)[1].split(" with ", 1)[0]
        if "GOODSIG" in line:
            return line.split("GOODSIG", 1)[1].strip()
    return "trusted key"

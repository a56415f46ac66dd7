"""Commit signatures: apply only revisions signed by a key the repository trusts.

Trusted keys are listed in ``ClusterSettings.spec.signing`` (SSH allowed signers, or OpenPGP
public keys). Taking the keys from the very revision being checked would let anyone with push
access add their own key and sign with it, so trust is a chain: every commit on the first-parent
path from the candidate back to the commit that introduced ``signing`` must be signed by a key
that its *parent* trusts (the introducing commit by a key it lists itself: trust on first use,
like an SSH known host). A key change therefore needs a signature by a key trusted before it.
Verification is Git's own (``git verify-commit``: ``ssh-keygen -Y verify`` or ``gpg``), with the
keys written to a private temporary allowed-signers file or keyring; nothing global is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import git
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler import errors
from reconciler.model import documents as docs

_BLOB_HAS_SETTINGS: dict[str, bool] = {}

MAX_CHAIN = 1000
"""First-parent commits walked back from the candidate (each verified once per process)."""


@dataclass(frozen=True, slots=True)
class Verified:
    revision: str
    signer: str
    """What Git reported as the signer (principal or key)."""
    chain: int
    """How many commits were walked."""


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
            documents = list(YAML(typ="safe", pure=True).load_all(data.decode("utf-8")))
        except (UnicodeDecodeError, YAMLError):
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


def _check(repo: git.Repo, commit: git.Commit, signing: docs.CommitSigning, trusted_by: str) -> str:
    """The signer, or raise SignatureError saying why the commit is not trusted."""
    who = f"{commit.hexsha[:12]} by {commit.author.name} <{commit.author.email}>"
    if not commit.gpgsig:
        raise errors.SignatureError(
            f"revision {who} is not signed; ClusterSettings {trusted_by} requires commits "
            "signed by one of spec.signing's keys (git commit -S)"
        )
    with _verifier_env(signing) as (options, env):
        proc = subprocess.run(
            ["git", *options, "verify-commit", "--raw", commit.hexsha],
            cwd=repo.working_dir,
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
            f"revision {who} is signed by a key that ClusterSettings {trusted_by} does not "
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


def verify(repo_path: str, rev: str) -> Verified | None:
    """Check ``rev`` and its chain of trust; None when no commit in reach requires signatures.

    Walks the first-parent history from ``rev`` (at most :data:`MAX_CHAIN` commits): a commit
    whose parent requires signatures must be signed by a key the parent trusts; a commit that
    introduces ``signing`` (its parent has none) by a key it lists itself. Walking past the
    candidate's own settings is what stops a commit that merely deletes ``signing``.
    """
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
        candidate = repo.commit(rev)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    except (git.BadName, ValueError) as exc:
        raise errors.SourceError(f"unknown revision {rev!r}") from exc

    def settings(commit: git.Commit) -> docs.CommitSigning | None:
        if commit.hexsha not in _SETTINGS:
            _SETTINGS[commit.hexsha] = signing_at(commit)
        return _SETTINGS[commit.hexsha]

    signer: str | None = None
    checked = 0
    commit: git.Commit | None = candidate
    while commit is not None and checked < MAX_CHAIN:
        parent = commit.parents[0] if commit.parents else None
        trusted = settings(parent) if parent is not None else None
        got: str | None
        if trusted is not None:
            assert parent is not None
            got = _check_cached(repo, commit, trusted, f"at its parent {parent.hexsha[:12]}")
        else:
            own = settings(commit)
            got = (
                _check_cached(repo, commit, own, f"at {commit.hexsha[:12]} (where signing starts)")
                if own is not None
                else None
            )
        if signer is None and commit is candidate:
            signer = got
        checked += 1
        commit = parent
    if signer is None:
        return None
    return Verified(candidate.hexsha, signer, checked)


_SETTINGS: dict[str, docs.CommitSigning | None] = {}
"""commit → its signing settings (immutable, so cached for the process)."""
_VERIFIED: dict[tuple[str, str], str] = {}
"""(commit, keys) → signer: commits are immutable, so a verified pair stays verified."""


def _check_cached(
    repo: git.Repo, commit: git.Commit, signing: docs.CommitSigning, trusted_by: str
) -> str:
    key = (commit.hexsha, signing.model_dump_json())
    if key not in _VERIFIED:
        _VERIFIED[key] = _check(repo, commit, signing, trusted_by)
    return _VERIFIED[key]

"""Commit signatures: apply only revisions signed by a key the repository trusts.

Trusted keys are listed in ``ClusterSettings.spec.signing`` (SSH allowed signers, or OpenPGP
public keys). Taking the keys from the very revision being checked would let anyone with push
access add their own key and sign with it, so trust is a chain: the candidate must be signed by
a key its *parent* trusts, and every commit that changed the signing settings (added or removed
a key, or the whole section) by a key trusted before that change; the commit introducing them
is trusted by its own list (trust on first use, like an SSH known host).
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

MAX_CHAIN = 10_000
"""First-parent commits looked at behind the candidate; beyond it, the oldest commit's
settings are the trust anchor."""


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
    """Check ``rev`` and the chain of trust behind it; None when nothing requires signatures.

    Within the first-parent history of ``rev`` (at most :data:`MAX_CHAIN` commits):
    - ``rev`` must be signed by a key its parent's settings trust (or, if ``rev`` introduces
      ``signing``, by one it lists itself);
    - every commit that *changed* the signing settings (introduced, edited or removed them)
      must be signed by a key trusted just before the change; the commit introducing them is
      trusted by its own list (trust on first use).
    Commits that leave the settings alone need no signature of their own: a trusted signature
    on ``rev`` vouches for its whole tree, as Flux's ``verify`` of HEAD does. Only the
    settings-changing commits are verified, so the walk costs one ``git log`` plus a few blob
    reads, not a verification per commit.
    """
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
        candidate = repo.commit(rev)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise errors.SourceError(f"{repo_path}: not a Git repository") from exc
    except (git.BadName, ValueError) as exc:
        raise errors.SourceError(f"unknown revision {rev!r}") from exc
    commits = list(repo.iter_commits(candidate, first_parent=True, max_count=MAX_CHAIN))
    settings = _settings_along(repo, candidate.hexsha, commits)
    for commit in reversed(commits):  # oldest first: a bad key change is reported first
        parent = commit.parents[0] if commit.parents else None
        before = settings.get(parent.hexsha) if parent is not None else None
        after = settings[commit.hexsha]
        in_window = parent is None or parent.hexsha in settings
        if not in_window or before == after:
            continue
        if before is not None:
            assert parent is not None
            _check_cached(repo, commit, before, f"at its parent {parent.hexsha[:12]}")
        elif after is not None:
            _check_cached(repo, commit, after, f"at {commit.hexsha[:12]} (where signing starts)")
    parent = candidate.parents[0] if candidate.parents else None
    trusted = settings.get(parent.hexsha) if parent is not None else None
    if trusted is not None:
        assert parent is not None
        signer = _check_cached(repo, candidate, trusted, f"at its parent {parent.hexsha[:12]}")
    elif settings[candidate.hexsha] is not None:
        own = settings[candidate.hexsha]
        assert own is not None
        where = f"at {candidate.hexsha[:12]} (where signing starts)"
        signer = _check_cached(repo, candidate, own, where)
    else:
        return None
    return Verified(candidate.hexsha, signer, len(commits))


def _settings_along(
    repo: git.Repo, head: str, commits: list[git.Commit]
) -> dict[str, docs.CommitSigning | None]:
    """Signing settings of every commit in ``commits`` (newest first), reading a tree only
    where a commit changed a YAML file that holds (or held) ClusterSettings."""
    changed: dict[str, list[str]] = {}
    current = ""
    log = repo.git.log(
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
        "--format=%x01%H",
        "--name-only",
        f"--max-count={len(commits)}",
        head,
    )
    for line in log.splitlines():
        if line.startswith("\x01"):
            current = line[1:]
            changed[current] = []
        elif line.strip() and current:
            changed[current].append(line.strip())
    out: dict[str, docs.CommitSigning | None] = {}
    oldest = commits[-1]
    out[oldest.hexsha] = _cached_signing_at(oldest)
    for commit in reversed(commits[:-1]):
        parent = commit.parents[0]
        paths = [p for p in changed.get(commit.hexsha, ()) if p.endswith((".yaml", ".yml"))]
        if any(_holds_settings(c, p) for p in paths for c in (commit, parent)):
            out[commit.hexsha] = _cached_signing_at(commit)
        else:
            out[commit.hexsha] = out[parent.hexsha]
    return out


def _holds_settings(commit: git.Commit, path: str) -> bool:
    try:
        blob = commit.tree / path
    except KeyError:
        return False
    if blob.hexsha not in _BLOB_HAS_SETTINGS:
        _BLOB_HAS_SETTINGS[blob.hexsha] = b"ClusterSettings" in blob.data_stream.read()
    return _BLOB_HAS_SETTINGS[blob.hexsha]


def _cached_signing_at(commit: git.Commit) -> docs.CommitSigning | None:
    if commit.hexsha not in _SETTINGS:
        _SETTINGS[commit.hexsha] = signing_at(commit)
    return _SETTINGS[commit.hexsha]


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

"""The controller's clone of the desired-state repository, kept in a cache directory.

A non-bare clone without a checkout: revisions are read from the object database by
:mod:`reconciler.source.git` (never a worktree that a half-finished checkout could leave
inconsistent). :meth:`Mirror.fetch` force-updates the remote-tracking ref of one branch and
returns its SHA. Git errors become :class:`reconciler.errors.SourceError`, with any URL
credentials masked. The clone's remote is the public URL: credentials reach git only through
the environment of its processes (:mod:`reconciler.controller.credentials`), never a file.
Every git process is bounded in time (:data:`GIT_TIMEOUT`) and never prompts, so an
unreachable or silent remote cannot hold the loop (or a SIGTERM) for minutes.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import git

from reconciler import errors
from reconciler.controller import credentials as creds
from reconciler.source import tree as source_tree

_DRIFT_LINE = re.compile(r"^- ([^/\s]+)/\S+ (?:up|down|\S+) ")
GIT_TIMEOUT = 120.0
"""Seconds a clone or fetch may take before it is killed and counted as a failure."""


@dataclass
class Mirror:
    url: str
    branch: str
    cache: Path
    subpath: str = "."
    credentials: creds.Credentials | None = None
    """Sent to git through its environment only (the URL itself carries none)."""
    _repo: git.Repo | None = field(default=None, init=False)
    _env: dict[str, str] = field(default_factory=dict, init=False)
    _ssh: creds.SshFiles | None = field(default=None, init=False)
    _evidence: dict[str, tuple[float | None, dict[str, int]]] = field(
        default_factory=dict, init=False
    )

    @property
    def root(self) -> Path:
        return self.cache / "repo"

    @property
    def source_path(self) -> str:
        """What :func:`reconciler.source.read` opens: the clone, or a directory inside it.
        A ``--path`` that is absolute or climbs out (``..``) is refused: nothing is created
        outside the clone."""
        try:
            path = (self.root / source_tree.subpath(self.subpath)).resolve()
        except ValueError as exc:
            raise errors.SourceError(f"--path {exc}") from exc
        path.mkdir(parents=True, exist_ok=True)  # no checkout: the directory must exist
        return str(path)

    @property
    def public_url(self) -> str:
        return creds.redact(self.url)

    def authenticate(self, credentials: creds.Credentials | None) -> None:
        """Use ``credentials`` from the next git command on (a rotated or newly referenced
        Secret); nothing is written but an ssh key's private files."""
        if credentials == self.credentials and (self._repo is None or self._env):
            return
        self.credentials = credentials
        if self._repo is not None:
            self._set_env(self._repo)

    def _set_env(self, repo: git.Repo) -> None:
        if self._ssh is not None:
            self._ssh.remove()
            self._ssh = None
        if self.credentials is not None and self.credentials.ssh:
            self._ssh = creds.SshFiles(self.credentials)
        env = creds.git_env(self.credentials, self._ssh)
        gone: dict[str, str | None] = {k: None for k in self._env if k not in env}
        repo.git.update_environment(**gone, **env)
        self._env = env

    def _open(self) -> git.Repo:
        if self._repo is not None:
            return self._repo
        try:
            if (self.root / ".git").exists():
                repo = git.Repo(self.root)
                self._set_env(repo)
                repo.remote("origin").set_url(self.url)
            else:
                self.cache.mkdir(parents=True, exist_ok=True)
                # Cloned by hand (init + remote + fetch) rather than clone_from: the same
                # bounded, prompt-free fetch as every later one, and nothing half-cloned
                # is mistaken for a clone (an interrupted fetch is simply fetched again).
                repo = git.Repo.init(self.root)
                self._set_env(repo)
                with repo.config_writer() as cfg:
                    cfg.set_value('remote "origin"', "url", self.url)
        except (git.GitCommandError, git.InvalidGitRepositoryError, ValueError, OSError) as exc:
            raise errors.SourceError(f"clone {self.public_url}: {_short(exc)}") from exc
        self._repo = repo
        return repo

    def fetch(self) -> str:
        """Fetch the branch; return the SHA it points at."""
        inside = (self.root / self.subpath).resolve()
        if not inside.is_relative_to(self.root.resolve()):
            raise errors.SourceError(
                f"path {self.subpath!r} leaves the repository: give a directory inside it"
            )
        repo = self._open()
        ref = f"refs/remotes/origin/{self.branch}"
        try:
            repo.git.fetch(
                "origin",
                f"+refs/heads/{self.branch}:{ref}",
                "--prune",
                "--no-tags",
                kill_after_timeout=GIT_TIMEOUT,
            )
            return str(repo.git.rev_parse(f"{ref}^{{commit}}"))
        except git.GitCommandError as exc:
            raise errors.SourceError(
                f"fetch {self.public_url} {self.branch}: {_short(exc)}"
            ) from exc

    def factor_evidence(self, sha: str, directory: str = "factors") -> tuple[float, dict[str, int]]:
        """Age in seconds of the last commit that touched the factor tables, and the drift
        alarms per device model its message lists (``cuctl factors fit --write`` writes them).
        Looked up once per revision (a ``git log``), so a cluster event does not repeat it."""
        found = self._evidence.get(sha) or self._evidence_of(sha, directory)
        if found is None:  # a Git error: not remembered, asked again next time
            return 0.0, {}
        if len(self._evidence) > 16:
            self._evidence.clear()
        self._evidence[sha] = found
        committed, alarms = found
        if committed is None:
            return 0.0, {}
        return max(0.0, time.time() - committed), dict(alarms)

    def _evidence_of(self, sha: str, directory: str) -> tuple[float | None, dict[str, int]] | None:
        repo = self._open()
        where = directory if self.subpath in ("", ".") else f"{self.subpath}/{directory}"
        try:
            commit = next(repo.iter_commits(sha, paths=where, max_count=1), None)
        except (git.GitCommandError, ValueError):
            return None
        if commit is None:
            return None, {}
        alarms: dict[str, int] = {}
        message = commit.message if isinstance(commit.message, str) else commit.message.decode()
        in_alarms = False
        for line in message.splitlines():
            if line.startswith("Drift alarms:"):
                in_alarms = True
                continue
            if in_alarms:
                m = _DRIFT_LINE.match(line)
                if not m:
                    break
                alarms[m.group(1)] = alarms.get(m.group(1), 0) + 1
        return float(commit.committed_date), alarms

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.remove()
            self._ssh = None
        if self._repo is not None:
            self._repo.close()
            self._repo = None
            self._env = {}


def _short(exc: Exception) -> str:
    """git's own verdict (its ``fatal:``/``error:`` line) rather than the command line."""
    text = creds.redact(str(getattr(exc, "stderr", "") or exc).strip())
    lines = [line.strip().removeprefix("stderr: '").rstrip("'") for line in text.splitlines()]
    verdict = [line for line in lines if line.startswith(("fatal:", "error:"))]
    if verdict:
        return verdict[0]
    return lines[-1] if lines and lines[-1] else type(exc).__name__

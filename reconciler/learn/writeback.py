"""Write a proposed factor table back to Git: one commit, optionally on a branch, pushed.

I/O lives here and only here: rewriting the bot-owned table in place (ruamel round-trip
keeps the comments around it) or creating it with a header that says who writes it,
committing with a message that lists old → new factors and the evidence, and pushing a
branch for a pull request. ``git log -- factors/learned.yaml`` is then the audit trail of
every factor the learner ever published. Nothing is ever written silently: the caller asks
for ``write`` explicitly. Which table to write is the caller's decision (``cuctl factors
fit`` finds it through the validated desired state); spec tables curated by people are
never passed here by the CLI, because a rewrite loses the comments inside ``spec``.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import git
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from reconciler.errors import SourceError
from reconciler.learn import adapter, update
from reconciler.model import documents as docs

DEFAULT_PATH = Path("factors/default.yaml")
"""Where the spec-seeded table conventionally lives (read by :func:`find_table` first)."""
LEARNED_NAME = "learned"
"""``metadata.name`` of the bot-owned table; it sorts after ``default``, and learned rows win
the merge over spec rows anyway (:func:`reconciler.model.factors.merge_factors`)."""
LEARNED_PATH = Path("factors/learned.yaml")
"""Where the bot-owned table is created on the first write."""


def learned_header(rel_path: str) -> str:
    """The comment block a new bot-owned table starts with: who writes it, where the trail is."""
    return (
        "# Learned conversion factors: written by `cuctl factors fit --write`; do not edit by"
        " hand.\n"
        "# Only rows with `source: learned` live here, each with its samples, confidence"
        " interval\n"
        "# and the digest of the records it was learned from. A learned row overrides the spec"
        " row\n"
        "# of any other FactorTable for the same device model and workload class; spec rows\n"
        "# (curated by people, sources in comments) stay in their own table.\n"
        f"# Audit trail: `git log {rel_path}`; each commit message lists old → new with the"
        " evidence.\n"
    )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    sha: str
    when: datetime
    summary: str
    table: docs.FactorTable


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def find_table(root: Path, name: str | None = None) -> Path | None:
    """The YAML file holding the FactorTable (``name`` if given), default path first."""
    candidates = [
        root / DEFAULT_PATH,
        *sorted(
            p
            for p in root.rglob("*.y*ml")
            if ".git" not in p.parts and p.suffix in {".yaml", ".yml"}
        ),
    ]
    for path in candidates:
        if path.is_file() and any(_is_table(d, name) for d in _documents(path)):
            return path
    return None


def _documents(path: Path) -> list[Any]:
    try:
        return [d for d in YAML(typ="safe").load_all(path.read_text(encoding="utf-8")) if d]
    except Exception:  # not ours to validate: other stages report broken YAML
        return []


def _is_table(doc: Any, name: str | None) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "FactorTable"
        and (name is None or (doc.get("metadata") or {}).get("name") == name)
    )


def read_table(path: Path, name: str | None = None) -> docs.FactorTable:
    for doc in _documents(path):
        if _is_table(doc, name):
            return docs.FactorTable.model_validate(doc)
    raise SourceError(f"{path}: no FactorTable document{f' named {name}' if name else ''}")


def render_table(
    table: docs.FactorTable, original: str | None = None, header: str | None = None
) -> str:
    """The YAML text of ``table``; if ``original`` holds it, only its ``spec`` is replaced,
    so comments above and around the document survive. ``header`` starts a new file."""
    body = table.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"] = {k: v for k, v in body["metadata"].items() if v != {}}  # no `labels: {}`
    # Defaults that a table before atSLO factors never wrote stay unwritten (no diff noise).
    if body["spec"].get("schemaVersion") == 1:
        del body["spec"]["schemaVersion"]
    for row in body["spec"].get("factors", []):
        if row.get("basis") == docs.FactorBasis.RAW.value:
            del row["basis"]
    y = _yaml()
    if original is None:
        buf = io.StringIO()
        y.dump(_commented(body), buf)
        return (header or "") + buf.getvalue()
    docs_in = list(y.load_all(original))
    replaced = False
    for doc in docs_in:
        if _is_table(doc, table.metadata.name) and not replaced:
            doc["spec"] = _commented(body["spec"])
            replaced = True
    if not replaced:
        docs_in.append(_commented(body))
    buf = io.StringIO()
    y.dump_all(docs_in, buf)
    return buf.getvalue()


def _commented(value: Any) -> Any:
    if isinstance(value, dict):
        m = CommentedMap()
        for k, v in value.items():
            m[k] = _commented(v)
        return m
    if isinstance(value, list):
        seq = CommentedSeq(_commented(v) for v in value)
        if value and all(isinstance(v, int | float) for v in value):
            seq.fa.set_flow_style()  # intervals read best as [low, high]
        return seq
    return value


def commit_message(
    outcome: adapter.Outcome, policy: docs.FactorPolicy, at_slo_rows: int = 0
) -> str:
    """Subject plus body: every old → new factor with its evidence, what was held and why,
    drift alarms, slow nodes, the records and the policy applied. Pure. ``at_slo_rows``: the
    atSLO rows written with it (their section, :func:`reconciler.learn.slo.render`, follows)."""
    prop = outcome.proposal
    changed = prop.changed
    held = [c for c in prop.changes if c.decision is update.Decision.HELD]
    name = (prop.target if prop.target is not None else prop.table).metadata.name
    slo = f" (+{at_slo_rows} at the SLO)" if at_slo_rows else ""
    lines = [
        f"factors({name}): {len(changed)} changed{slo}, {len(held)} held, "
        f"learned from {outcome.reject_report.accepted} records",
        "",
    ]
    if changed:
        lines.append("Changed (old → new):")
        lines += [f"- {c.render()}" for c in changed]
        lines.append("")
    if held:
        lines.append("Held (published value kept):")
        lines += [f"- {c.render()}" for c in held]
        lines.append("")
    unchanged = [c for c in prop.changes if c.decision is update.Decision.UNCHANGED]
    if unchanged:
        lines.append(f"Unchanged (published value inside the interval): {len(unchanged)}")
        lines += [f"- {c.render()}" for c in unchanged]
        lines.append("")
    cov = outcome.coverage
    tested = [c for c in cov if c.tested]
    blind = [c for c in cov if c.blind]
    lines.append(
        f"Drift checks: {len(tested)} of {len(cov)} series tested; "
        f"{len(cov) - len(tested)} with not enough data; {len(blind)} cannot see a "
        f"{cov[0].target if cov else 0.03:.0%} step with 90% power"
    )
    lines += [f"- {c.render()}" for c in cov]
    lines.append(f"Drift alarms: {len(outcome.alarms) or 'none'}")
    ref = outcome.reference_model
    widened = max(
        (p.estimate.reference_sd for p in outcome.posteriors.values() if p.estimate is not None),
        default=0.0,
    )
    for a in outcome.alarms:
        then = (
            f"the reference: not split, every {a.workload_class.value} factor held"
            if a.device_model == ref
            else "factor refitted on records after the change"
        )
        lines.append(
            f"- {a.device_model}/{a.workload_class.value} {a.direction.value} "
            f"{a.relative_change:+.1%} from {_hour(a.change_hour)} (alarm {_hour(a.alarm_hour)});"
            f" {then}"
        )
    lines.append(f"Slow nodes (left out of the fit): {len(outcome.slow_nodes) or 'none'}")
    for s in outcome.slow_nodes:
        guard = (
            f"; the reference's own node: intervals widened by up to {math.expm1(widened):.1%}"
            " (half the distance to the fit that keeps it)"
            if s.device_model == ref
            else ""
        )
        lines.append(f"- {s.node} ({s.device_model}): {s.relative:+.1%}, robust z {s.z:.1f}{guard}")
    rep = outcome.reject_report
    rejected = ", ".join(f"{r.value} {n}" for r, n in rep.by_reason.items() if n) or "none"
    lines += [
        "",
        f"Records: {outcome.records_revision or 'unknown digest'}; {rep.total} read, "
        f"{rep.accepted} used, {outcome.fit.screened} screened as outliers; rejected: {rejected}",
        f"Policy: minSamples={policy.min_samples} minNodes={policy.min_nodes} "
        f"confidence={policy.confidence} maxRelativeChange={policy.max_relative_change} "
        f"maxIntervalWidth={policy.max_interval_width}",
        f"Learned at: {outcome.now.astimezone(UTC).isoformat()}",
    ]
    return "\n".join(lines) + "\n"


def _hour(h: int) -> str:
    return datetime.fromtimestamp(h * 3600, tz=UTC).strftime("%Y-%m-%dT%H:00Z")


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What :func:`publish` did. ``created`` is False when the branch already held exactly
    this content (nothing committed: re-running on the same evidence moves nothing)."""

    sha: str
    branch: str
    path: str
    base: str
    created: bool
    pushed: bool


def _repo(root: Path) -> tuple[git.Repo, str]:
    """The repository holding ``root`` and ``root``'s path inside it (``""`` at the top)."""
    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise SourceError(f"{root}: not a Git repository") from exc
    prefix = ""
    if repo.working_tree_dir is not None:
        rel = os.path.relpath(os.path.realpath(root), os.path.realpath(repo.working_tree_dir))
        prefix = "" if rel == "." else rel.replace(os.sep, "/")
    return repo, prefix


def _checked_out(repo: git.Repo) -> set[str]:
    """Branches checked out in any worktree of ``repo``: moving one would desync its files."""
    out: set[str] = set()
    try:
        listing = repo.git.worktree("list", "--porcelain")
    except git.GitCommandError:
        return out
    for line in listing.splitlines():
        if line.startswith("branch refs/heads/"):
            out.add(line.removeprefix("branch refs/heads/"))
    return out


def publish(
    root: Path,
    rel_path: str,
    text: str,
    message: str,
    *,
    base: str = "HEAD",
    branch: str,
    push: bool = False,
    remote: str = "origin",
    author: tuple[str, str] = ("cu-reconciler factor learner", "factors@cu-reconciler.io"),
) -> PublishResult:
    """Commit ``text`` as ``rel_path`` on top of ``base`` and point ``branch`` at it.

    Plumbing only: the tree is ``base``'s tree with that one blob replaced (built in a
    private index file), so the user's index, working tree and checked-out branch are
    never read or touched, and unrelated staged files can never leak into the bot commit.
    The branch is a bot branch for review: it is (re)created with ``base`` as the parent,
    like a rebased dependency-update branch. If it already holds exactly this tree on top
    of ``base``, nothing is committed (and a push only makes sure the remote has it).
    ``rel_path`` is relative to ``root``, which may be a subdirectory of the repository.

    ``push`` is a compare-and-swap on the remote branch (:func:`_push`): it replaces only
    the value this clone last saw there, and only if every commit it would drop was
    written by the learner. Otherwise :class:`PushRejected` is raised, the remote is left
    as it was, and the local branch is not moved either.
    """
    if not branch or branch.startswith("-"):
        raise SourceError(f"invalid branch name {branch!r}")
    repo, prefix = _repo(root)
    try:
        if not _valid_ref(repo, branch):
            raise SourceError(f"invalid branch name {branch!r}")
        if branch in _checked_out(repo):
            raise SourceError(
                f"branch {branch} is checked out in a worktree; the learner commits to a "
                "branch nobody has checked out (pass another --branch)"
            )
        try:
            base_commit = repo.commit(base)
        except (git.BadName, ValueError) as exc:
            raise SourceError(f"unknown revision {base!r}") from exc
        path = f"{prefix}/{rel_path}" if prefix else rel_path
        blob = repo.git.hash_object("-w", "--stdin", "--path", path, istream=_stdin(text))
        with tempfile.TemporaryDirectory(prefix="cu-factors-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            repo.git.read_tree(base_commit.hexsha, env=env)
            repo.git.update_index("--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = repo.git.write_tree(env=env)
        ref = f"refs/heads/{branch}"
        old = _rev(repo, ref)
        if old is not None:
            tip = repo.commit(old)
            if tip.tree.hexsha == tree and [p.hexsha for p in tip.parents] == [base_commit.hexsha]:
                pushed = (
                    _push(repo, remote, branch, old, base_commit.hexsha, author) if push else False
                )
                return PublishResult(old, branch, path, base_commit.hexsha, False, pushed)
        if tree == base_commit.tree.hexsha:  # the base already says this: no empty commit
            return PublishResult(base_commit.hexsha, branch, path, base_commit.hexsha, False, False)
        name, email = author
        env = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        sha = repo.git.commit_tree(tree, "-p", base_commit.hexsha, istream=_stdin(message), env=env)
        # The remote first: a refused push leaves the local branch where it was, too.
        pushed = _push(repo, remote, branch, sha, base_commit.hexsha, author) if push else False
        # Compare-and-swap: a concurrent writer of the same branch makes this fail loudly.
        repo.git.update_ref(ref, sha, old or "0" * 40, "-m", "cuctl factors fit")
        return PublishResult(sha, branch, path, base_commit.hexsha, True, pushed)
    except git.GitCommandError as exc:
        raise SourceError(f"{root}: cannot commit {rel_path}: {_stderr(exc)}") from exc
    finally:
        repo.close()


def _stdin(text: str) -> Any:
    """A file object for ``istream`` (gitpython passes it to the subprocess as stdin)."""
    fh = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the subprocess hand-off's GC
    fh.write(text.encode("utf-8"))
    fh.seek(0)
    return fh


def _stderr(exc: git.GitCommandError) -> str:
    err = exc.stderr
    text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
    return text.strip() or str(exc)


def _valid_ref(repo: git.Repo, branch: str) -> bool:
    try:
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        return False
    return True


def _rev(repo: git.Repo, ref: str) -> str | None:
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", ref))
    except git.GitCommandError:
        return None


class PushRejected(SourceError):
    """The remote branch is not what this push would safely replace: it moved since it was
    fetched (someone pushed), or it holds commits the learner did not write. Nothing was
    pushed; ``cuctl factors fit`` exits 2."""


def _tracking_ref(remote: str, branch: str) -> str:
    return f"refs/remotes/{remote}/{branch}"


def _foreign(repo: git.Repo, tip: str, base: str, author: tuple[str, str]) -> list[str]:
    """Commits reachable from ``tip`` but not from ``base`` that the learner did not write
    (``sha author: subject``): a push that replaces ``tip`` would make them unreachable."""
    out = str(repo.git.log("--format=%H%x00%ae%x00%ce%x00%an%x00%s", tip, "--not", base))
    found: list[str] = []
    for line in out.splitlines():
        sha, author_email, committer_email, who, subject = line.split("\x00", 4)
        if author_email != author[1] or committer_email != author[1]:
            found.append(f"{sha[:12]} {who} <{author_email}>: {subject}")
    return found


def _push(
    repo: git.Repo, remote: str, branch: str, sha: str, base: str, author: tuple[str, str]
) -> bool:
    """Push ``sha`` to ``remote``'s ``branch`` as a compare-and-swap; :class:`PushRejected`
    if that would overwrite anything the learner did not write.

    The expected value is the remote-tracking ref ``refs/remotes/<remote>/<branch>``: what
    this clone last fetched or pushed, the value the commit was built against (absent:
    the branch must not exist on the remote). Never a value read from the remote just
    before pushing, which would make the lease a force push in effect (issue 19 item 4).
    A fast-forward is pushed plainly; otherwise ``--force-with-lease=<ref>:<expected>``,
    and only when every commit it drops was written by the learner: the bot branch is
    rebuilt on its base on purpose, a reviewer's commit on it is not ours to drop.
    """
    try:
        remote_obj = repo.remote(remote)
    except ValueError as exc:
        raise SourceError(f"no remote {remote!r} to push to") from exc
    target = f"refs/heads/{branch}"
    tracking = _tracking_ref(remote_obj.name, branch)
    expected = _rev(repo, tracking)
    if expected == sha:  # nothing to push; say so only if the remote still holds it
        listing = str(repo.git.ls_remote(remote_obj.name, target)).split()
        if (listing[0] if listing else None) == sha:
            return True
        raise PushRejected(
            f"{remote}/{branch} changed since it was fetched (expected {sha[:12]}): someone "
            "else pushed to it. Nothing pushed: fetch the branch, review what is on it, and "
            "run again"
        )
    if expected is not None:
        foreign = _foreign(repo, expected, base, author)
        if foreign:
            raise PushRejected(
                f"{remote}/{branch} holds {len(foreign)} commit(s) the learner did not write "
                f"({'; '.join(foreign[:5])}); replacing the branch would drop them. Merge or "
                "close that review (or delete the branch) and run again; nothing pushed"
            )
    fast_forward = expected is not None and repo.is_ancestor(
        repo.commit(expected), repo.commit(sha)
    )
    lease = [] if fast_forward else [f"--force-with-lease={target}:{expected or ''}"]
    try:
        repo.git.push("--porcelain", remote_obj.name, *lease, f"{sha}:{target}")
    except git.GitCommandError as exc:
        detail = _stderr(exc) + "\n" + str(exc.stdout or "")
        if any(w in detail for w in ("stale info", "non-fast-forward", "fetch first", "rejected")):
            raise PushRejected(
                f"{remote}/{branch} changed since it was fetched (expected "
                f"{expected[:12] if expected else 'no branch'}): someone else pushed to it. "
                "Nothing pushed: fetch the branch, review what is on it, and run again"
            ) from exc
        raise SourceError(f"push of {branch} to {remote} failed: {_stderr(exc)}") from exc
    repo.git.update_ref(tracking, sha)  # what the remote now holds, for the next lease
    return True


def read_text(root: Path, rel_path: str, rev: str = "HEAD") -> str | None:
    """The text of ``rel_path`` (relative to ``root``) at ``rev``, None if absent there."""
    repo, prefix = _repo(root)
    try:
        path = f"{prefix}/{rel_path}" if prefix else rel_path
        try:
            blob = repo.commit(rev).tree / path
        except KeyError:
            return None
        return str(blob.data_stream.read().decode("utf-8"))
    finally:
        repo.close()


def history(root: Path, table_path: Path, limit: int = 50) -> list[HistoryEntry]:
    """The table at every commit that touched it, oldest first: the factor history.

    Read-only, so the repository may be a parent of ``root`` (a desired-state directory
    inside a larger repository); writing requires ``root`` to be the repository itself.
    """
    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return []
    rel = str(table_path.resolve().relative_to(Path(repo.working_tree_dir or root).resolve()))
    out: list[HistoryEntry] = []
    try:
        commits = list(repo.iter_commits(paths=rel, max_count=limit))
    except (git.GitCommandError, ValueError):
        return []
    for c in reversed(commits):
        try:
            text = (c.tree / rel).data_stream.read().decode("utf-8")
        except KeyError:
            continue
        for doc in _loads(text):
            if _is_table(doc, None):
                out.append(
                    HistoryEntry(
                        c.hexsha,
                        c.committed_datetime,
                        str(c.summary),
                        docs.FactorTable.model_validate(doc),
                    )
                )
                break
    return out


def _loads(text: str) -> Iterator[Any]:
    yield from (d for d in YAML(typ="safe").load_all(text) if d)


__all__ = [
    "DEFAULT_PATH",
    "LEARNED_NAME",
    "LEARNED_PATH",
    "HistoryEntry",
    "PublishResult",
    "PushRejected",
    "commit_message",
    "find_table",
    "history",
    "learned_header",
    "publish",
    "read_table",
    "read_text",
    "render_table",
]

"""``cuctl history``: who changed what, when — from Git, and for live objects.

``cuctl history [PATH] (--pool NAME | --tenant NAME | --claim NS/NAME | --factors MODEL)
[-o text|json]`` lists the commits (newest first) that changed one desired-state document,
with author, date and each field's change ``before → after``, following moves between files
(reconciler/source/history.py).

``cuctl history [PATH] --object KIND/[NAMESPACE/]NAME --kubeconfig FILE`` answers it for a live
object: the commit that produced it and who wrote it. Objects written by ``cuctl apply`` or
the controller carry that commit in ``cu-reconciler.io/revision`` (rewritten only when their
content changes); objects a GitOps engine applied carry ``cu-reconciler.io/content-hash``
instead, and the commit is found by rendering the history (newest first) until the oldest
commit of the newest run that renders this content. Commits that do not validate are passed
over (the controller never applies them), and commits with the tree of one already rendered
cost nothing. It stops after ``--max-commits`` commits and says so.

Everything printed is escaped (control characters and terminal escape sequences in author
names, subjects, paths and values appear as ``\x1b``), in text and in JSON.

Exit codes: 0 found; 1 nothing found (no commit changed the document, or the whole history
was rendered and none produced the object); 2 error; 3 ``--object`` stopped at
``--max-commits`` before it could name the producing commit (the message says whether the
content was seen and how far it looked: raise ``--max-commits``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import git
import typer

from reconciler import errors
from reconciler.cli import _app
from reconciler.model import diagnostics as diag
from reconciler.model import kinds
from reconciler.source import history as hist


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


EXIT_STOPPED = 3
"""``--object`` walked ``--max-commits`` commits without reaching the producing one."""
_OBJECT_KINDS = {k: v for k, v in kinds.KINDS.items() if k not in ("Node", "Namespace")}
"""Every kind cu-reconciler writes (model/kinds.py): the objects ``--object`` can trace."""
MAX_PROBLEMS_SHOWN = 10


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cuctl history: {message}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _safe(text: object) -> str:
    """One line of text that cannot drive the terminal: control characters, C1 escapes and
    bidirectional overrides from a commit (author, subject, path, value) shown escaped."""
    return diag.printable(str(text))


def _json(payload: object) -> str:
    """JSON whose strings carry no raw control or format characters (JSON escapes only
    C0; a C1 CSI or a bidi override would reach a terminal that ``cat``s the output)."""
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    return "".join(ch if ch.isprintable() or ch == "\n" else _u_escape(ch) for ch in text)


def _u_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _entries_text(entries: list[hist.Entry]) -> str:
    lines = []
    for e in entries:
        where = e.path if not e.previous_path else f"{e.previous_path} → {e.path}"
        lines.append(f"{e.revision[:12]}  {_safe(e.date)}  {_safe(e.author)} <{_safe(e.email)}>")
        if e.merged_in:
            lines.append(f"    (merged in {e.merged_in[:12]})")
        lines.append(f"    {_safe(e.subject)}")
        lines.append(f"    {e.change}: {_safe(where)}")
        lines.extend(f"      {_safe(f.render())}" for f in e.fields)
        lines.append("")
    return "\n".join(lines)


def _report_problems(problems: list[hist.Problem]) -> None:
    for p in problems[:MAX_PROBLEMS_SHOWN]:
        typer.echo(
            f"cuctl history: warning: {p.revision[:12]} {_safe(p.path)}: not read "
            f"({_safe(p.message)}); what it held at that commit is unknown",
            err=True,
        )
    if len(problems) > MAX_PROBLEMS_SHOWN:
        typer.echo(
            f"cuctl history: warning: … and {len(problems) - MAX_PROBLEMS_SHOWN} more file "
            "version(s) not read (-o json lists them all)",
            err=True,
        )


@_app.app.command("history")
def history_command(
    path: str = typer.Argument(".", help="Repository directory."),
    pool: str | None = typer.Option(None, "--pool", help="A CUPool by name."),
    tenant: str | None = typer.Option(None, "--tenant", help="A Tenant by name."),
    claim: str | None = typer.Option(None, "--claim", help="A CUClaim as NAMESPACE/NAME."),
    factors: str | None = typer.Option(None, "--factors", help="Factor rows of a device model."),
    obj: str | None = typer.Option(
        None, "--object", help="A live object as KIND/[NAMESPACE/]NAME (needs --kubeconfig)."
    ),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Cluster of --object."),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context."),
    rev: str = typer.Option("HEAD", "--rev", help="Walk history from this revision."),
    max_commits: int = typer.Option(
        1000,
        "--max-commits",
        min=1,
        help="--object: commits to walk before stopping (exit 3 when that is not enough).",
    ),
    output: Output = typer.Option(Output.TEXT, "-o", "--output", help="text or json."),
) -> None:
    """Show the commits that changed a pool, tenant, claim or factor rows (or a live object)."""
    chosen = [x for x in (pool, tenant, claim, factors, obj) if x is not None]
    if len(chosen) != 1:
        raise _fail("give exactly one of --pool, --tenant, --claim, --factors, --object")
    if obj is not None:
        if kubeconfig is None:
            raise _fail("--object needs --kubeconfig FILE")
        _object(path, obj, kubeconfig, context, rev, max_commits, output)
        return
    if pool is not None:
        match, what = hist.document("CUPool", pool), f"CUPool {pool}"
    elif tenant is not None:
        match, what = hist.document("Tenant", tenant), f"Tenant {tenant}"
    elif claim is not None:
        ns, _, name = claim.rpartition("/")
        if not name:
            raise _fail(f"--claim {claim!r}: expected NAMESPACE/NAME")
        match, what = hist.claim(ns, name), f"CUClaim {claim}"
    else:
        assert factors is not None
        match, what = hist.factors(factors), f"factors of {factors}"
    try:
        result = hist.walk(path, match, rev)
    except errors.SourceError as exc:
        raise _fail(_safe(exc)) from exc
    entries = result.entries
    if output is Output.JSON:
        payload = {
            "subject": what,
            "entries": [e.to_json() for e in entries],
            "unread": [
                {"revision": p.revision, "path": p.path, "message": p.message}
                for p in result.problems
            ],
        }
        sys.stdout.write(_json(payload) + "\n")
    elif entries:
        sys.stdout.write(_entries_text(entries))
    _report_problems(result.problems)
    if result.truncated:
        typer.echo(
            f"cuctl history: showing the newest {len(entries)} changes; older ones exist "
            "(walk from an older --rev to see them)",
            err=True,
        )
    if not entries:
        typer.echo(f"cuctl history: no commit changed {_safe(what)}", err=True)
        raise typer.Exit(_app.EXIT_FINDINGS)


def _object_path(spec: str) -> tuple[str, str, str]:
    parts = spec.split("/")
    if len(parts) == 2:
        kind, ns, name = parts[0], "", parts[1]
    elif len(parts) == 3:
        kind, ns, name = parts
    else:
        raise _fail(f"--object {spec!r}: expected KIND/NAME or KIND/NAMESPACE/NAME")
    entry = _OBJECT_KINDS.get(kind)
    if entry is None:
        known = ", ".join(sorted(_OBJECT_KINDS))
        raise _fail(f"--object {spec!r}: unknown kind {kind!r} (one of {known})")
    if entry.namespaced and not ns:
        raise _fail(f"--object {spec!r}: a {kind} is namespaced: KIND/NAMESPACE/NAME")
    if not entry.namespaced and ns:
        raise _fail(f"--object {spec!r}: a {kind} is cluster-scoped: KIND/NAME")
    return kind, ns, entry.object_path(name, ns)


def _rendered_hashes(path: str, commit: str) -> dict[tuple[str, str, str], str] | None:
    """Content hash of every object the commit renders against its committed snapshot;
    None when it renders nothing (invalid, no snapshot): the controller never applies it."""
    from reconciler import observe, source, validate
    from reconciler import plan as planning
    from reconciler.observe import snapshot, sources
    from reconciler.plan import gitops

    try:
        tree = source.read(path, commit)
        result = validate.validate_tree(tree)
        if result.state is None:
            return None
        layout = result.state.settings.spec.layout
        data = tree.files.get(layout.snapshot) if layout.snapshot else None
        if data is None:
            return None
        src = sources.InMemory(snapshot.parse(data.decode("utf-8"), str(layout.snapshot)))
        target = planning.plan(result.state, observe.observe(src, result.state))
    except (errors.CUError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    out = {}
    for o in target.objects:
        meta = o.get("metadata") or {}
        key = (str(o["kind"]), str(meta.get("namespace", "")), str(meta.get("name", "")))
        out[key] = gitops.content_hash(o)
    return out


def _object(
    path: str,
    spec: str,
    kubeconfig: Path,
    context: str | None,
    rev: str,
    max_commits: int,
    output: Output,
) -> None:
    # --object needs the cluster client and the planner; the document walk needs neither.
    from reconciler.model import ownership
    from reconciler.observe import cluster
    from reconciler.plan import gitops

    kind, ns, api_path = _object_path(spec)
    name = api_path.rsplit("/", 1)[1]
    try:
        api = cluster.connect(str(kubeconfig), context)
        live: dict[str, Any] = cluster.get_json(api, api_path, {})
    except errors.ObserveError as exc:
        raise _fail(_safe(exc)) from exc
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if not ownership.is_owned(live):
        raise _fail(f"{spec} is not managed by cu-reconciler (no {ownership.MANAGED_BY_KEY} label)")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise _fail(f"{path}: not a Git repository") from exc
    revision = annotations.get(ownership.REVISION_ANNOTATION)
    how = "from its cu-reconciler.io/revision annotation"
    report = live.get("report")
    if kind == gitops.STATUS_KIND and isinstance(report, dict) and report.get("revision"):
        # Its content is the revision's admission result: it names the revision itself.
        revision = str(report["revision"])
        how = "from its report.revision"
    if revision is None:
        wanted = annotations.get(gitops.CONTENT_HASH_ANNOTATION)
        if wanted is None:
            raise _fail(f"{spec} carries neither a revision nor a content hash annotation")
        search = _search(path, repo, rev, (kind, ns, name), str(wanted), max_commits)
        if search.stopped is not None:
            typer.echo(f"cuctl history: {spec}: {search.stopped}", err=True)
            raise typer.Exit(EXIT_STOPPED)
        if search.found is None:
            typer.echo(
                f"cuctl history: no commit in the whole history of {_safe(rev)} "
                f"({search.walked} commits) renders {spec} with content hash {_safe(wanted)}",
                err=True,
            )
            raise typer.Exit(_app.EXIT_FINDINGS)
        revision = search.found
        how = (
            f"the oldest commit of the newest run rendering its content hash {_safe(wanted)}, "
            f"{search.walked} commits walked"
        )
    info = _commit_info(repo, str(revision))
    if info is None:
        raise _fail(f"{spec} names revision {_safe(revision)}, which {path} does not have")
    found = {"object": spec, "how": how, **info}
    if output is Output.JSON:
        sys.stdout.write(_json(found) + "\n")
        return
    sys.stdout.write(
        f"{spec}\n  produced by {info['revision'][:12]} ({how})\n"
        f"  {_safe(info['date'])}  {_safe(info['author'])} <{_safe(info['email'])}>\n"
        f"  {_safe(info['subject'])}\n"
    )


def _commit_info(repo: git.Repo, revision: str) -> dict[str, str] | None:
    """Who and when, as Git itself formats it (an odd date or time zone in an old commit
    is Git's to print, not ours to parse)."""
    if not revision or revision.startswith("-"):
        return None
    proc = subprocess.run(
        [
            "git",
            f"--git-dir={repo.git_dir}",
            "log",
            "-1",
            "--format=%H%x00%an%x00%ae%x00%aI%x00%cn%x00%s",
            "--end-of-options",
            revision,
            "--",
        ],
        capture_output=True,
        check=False,
    )
    fields = proc.stdout.decode("utf-8", "replace").rstrip("\n").split("\x00")
    if proc.returncode != 0 or len(fields) != 6:
        return None
    keys = ("revision", "author", "email", "date", "committer", "subject")
    return dict(zip(keys, fields, strict=True))


class _Search:
    """Where the walk for a content hash ended."""

    def __init__(self) -> None:
        self.found: str | None = None
        self.walked = 0
        self.stopped: str | None = None


def _search(
    path: str,
    repo: git.Repo,
    rev: str,
    key: tuple[str, str, str],
    wanted: str,
    max_commits: int,
) -> _Search:
    """Newest first along the first-parent chain: the run of commits rendering ``wanted``
    ends at the first commit (older) that renders something else; its oldest member produced
    the object. Invalid commits are passed over; a commit whose tree was rendered already
    (a merge of nothing, a change outside the directory) reuses that render."""
    out = _Search()
    try:
        chain = repo.git.rev_list("--first-parent", "--end-of-options", rev).split()
    except git.GitCommandError as exc:
        raise _fail(f"unknown revision {rev!r}") from exc
    rendered: dict[str, dict[tuple[str, str, str], str] | None] = {}
    sub = Path(path).resolve()
    top = Path(repo.working_tree_dir).resolve() if repo.working_tree_dir else sub
    prefix = sub.relative_to(top).as_posix() if sub != top and top in sub.parents else ""
    for sha in chain:
        if out.walked >= max_commits:
            seen = (
                f"every commit since {out.found[:12]} still renders this content, so the "
                "producing commit is that one or older"
                if out.found
                else "none of them renders this content"
            )
            out.stopped = (
                f"stopped after --max-commits {max_commits} commits: {seen}; raise "
                "--max-commits to look further"
            )
            return out
        out.walked += 1
        try:
            tree_key = repo.git.rev_parse(f"{sha}^{{tree}}" if not prefix else f"{sha}:{prefix}")
        except git.GitCommandError:
            tree_key = f"{sha}:absent"  # the directory does not exist there
        if tree_key not in rendered:
            rendered[tree_key] = _rendered_hashes(path, sha)
        hashes = rendered[tree_key]
        if hashes is None:
            continue  # not applied by the controller: neither ends nor extends the run
        if hashes.get(key) == wanted:
            out.found = sha
        elif out.found is not None:
            return out
    return out

"""``cuctl history``: who changed what, when — from Git, and for live objects.

``cuctl history [PATH] (--pool NAME | --tenant NAME | --claim NS/NAME | --factors MODEL)
[-o text|json]`` lists the commits (newest first) that changed one desired-state document,
with author, date and each field's change ``before → after``, following moves between files
(reconciler/source/history.py).

``cuctl history [PATH] --object KIND/[NAMESPACE/]NAME --kubeconfig FILE`` answers it for a live
object: the commit that produced it and who wrote it. Objects written by ``cuctl apply`` or
the controller carry that commit in ``cu-reconciler.io/revision`` (rewritten only when their
content changes); objects a GitOps engine applied carry ``cu-reconciler.io/content-hash``
instead, and the commit is found by rendering the history (newest first, at most
``--max-commits``) until the oldest commit of the newest run that renders this content.
Exit 0 found, 1 nothing found, 2 error.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import git
import typer

from reconciler import errors, observe, source, validate
from reconciler import plan as planning
from reconciler.cli import _app
from reconciler.model import ownership
from reconciler.observe import cluster, snapshot, sources
from reconciler.plan import gitops
from reconciler.source import history as hist


class Output(StrEnum):
    TEXT = "text"
    JSON = "json"


_PATHS = {
    "ResourceSlice": "/apis/resource.k8s.io/v1/resourceslices",
    "DeviceClass": "/apis/resource.k8s.io/v1/deviceclasses",
    "DeviceTaintRule": "/apis/resource.k8s.io/v1/devicetaintrules",
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    ),
}
_NAMESPACED = {
    "ResourceClaim": "resourceclaims",
    "ResourceClaimTemplate": "resourceclaimtemplates",
}


def _fail(message: str) -> typer.Exit:
    typer.echo(f"cuctl history: {message}", err=True)
    return typer.Exit(_app.EXIT_ERROR)


def _entries_text(entries: list[hist.Entry]) -> str:
    lines = []
    for e in entries:
        where = e.path if not e.previous_path else f"{e.previous_path} → {e.path}"
        lines.append(f"{e.revision[:12]}  {e.date}  {e.author} <{e.email}>")
        lines.append(f"    {e.subject}")
        lines.append(f"    {e.change}: {where}")
        lines.extend(f"      {f.render()}" for f in e.fields)
        lines.append("")
    return "\n".join(lines)


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
    max_commits: int = typer.Option(50, "--max-commits", help="--object: commits to render."),
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
        entries = hist.history(path, match, rev)
    except errors.SourceError as exc:
        raise _fail(str(exc)) from exc
    if output is Output.JSON:
        payload = {"subject": what, "entries": [e.to_json() for e in entries]}
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    elif entries:
        sys.stdout.write(_entries_text(entries))
    if not entries:
        typer.echo(f"cuctl history: no commit changed {what}", err=True)
        raise typer.Exit(_app.EXIT_FINDINGS)


def _object_path(spec: str) -> tuple[str, str, str]:
    parts = spec.split("/")
    if len(parts) == 2:
        kind, ns, name = parts[0], "", parts[1]
    elif len(parts) == 3:
        kind, ns, name = parts
    else:
        raise _fail(f"--object {spec!r}: expected KIND/NAME or KIND/NAMESPACE/NAME")
    if kind in _NAMESPACED:
        if not ns:
            raise _fail(f"--object {spec!r}: a {kind} is namespaced: KIND/NAMESPACE/NAME")
        return kind, ns, f"/apis/resource.k8s.io/v1/namespaces/{ns}/{_NAMESPACED[kind]}/{name}"
    if kind not in _PATHS:
        known = ", ".join(sorted({*_PATHS, *_NAMESPACED}))
        raise _fail(f"--object {spec!r}: unknown kind {kind!r} (one of {known})")
    return kind, ns, f"{_PATHS[kind]}/{name}"


def _rendered_hashes(path: str, commit: str) -> dict[tuple[str, str, str], str]:
    """Content hash of every object the commit renders against its committed snapshot."""
    tree = source.read(path, commit)
    result = validate.validate_tree(tree)
    if result.state is None:
        return {}
    layout = result.state.settings.spec.layout
    data = tree.files.get(layout.snapshot) if layout.snapshot else None
    if data is None:
        return {}
    src = sources.InMemory(snapshot.parse(data.decode("utf-8"), str(layout.snapshot)))
    try:
        target = planning.plan(result.state, observe.observe(src, result.state))
    except (errors.CUError, ValueError):
        return {}
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
    kind, ns, api_path = _object_path(spec)
    name = api_path.rsplit("/", 1)[1]
    try:
        api = cluster.connect(str(kubeconfig), context)
        live: dict[str, Any] = cluster.get_json(api, api_path, {})
    except errors.ObserveError as exc:
        raise _fail(str(exc)) from exc
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if not ownership.is_owned(live):
        raise _fail(f"{spec} is not managed by cu-reconciler (no {ownership.MANAGED_BY_KEY} label)")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise _fail(f"{path}: not a Git repository") from exc
    revision = annotations.get(ownership.REVISION_ANNOTATION)
    how = "from its cu-reconciler.io/revision annotation"
    if revision is None:
        wanted = annotations.get(gitops.CONTENT_HASH_ANNOTATION)
        if wanted is None:
            raise _fail(f"{spec} carries neither a revision nor a content hash annotation")
        revision = _search(path, repo, rev, (kind, ns, name), wanted, max_commits)
        how = f"the oldest commit of the newest run rendering its content hash {wanted}"
        if revision is None:
            typer.echo(
                f"cuctl history: no commit among the last {max_commits} renders {spec} with "
                f"content hash {wanted}",
                err=True,
            )
            raise typer.Exit(_app.EXIT_FINDINGS)
    try:
        commit = repo.commit(revision)
    except (git.BadName, ValueError) as exc:
        raise _fail(f"{spec} names revision {revision}, which {path} does not have") from exc
    found = {
        "object": spec,
        "revision": commit.hexsha,
        "how": how,
        "author": str(commit.author.name),
        "email": str(commit.author.email),
        "date": commit.authored_datetime.isoformat(),
        "committer": str(commit.committer.name),
        "subject": str(commit.summary),
    }
    if output is Output.JSON:
        sys.stdout.write(json.dumps(found, indent=2, ensure_ascii=False) + "\n")
        return
    sys.stdout.write(
        f"{spec}\n  produced by {commit.hexsha[:12]} ({how})\n"
        f"  {found['date']}  {found['author']} <{found['email']}>\n  {found['subject']}\n"
    )


def _search(
    path: str,
    repo: git.Repo,
    rev: str,
    key: tuple[str, str, str],
    wanted: str,
    max_commits: int,
) -> str | None:
    found: str | None = None
    for commit in repo.iter_commits(rev, first_parent=True, max_count=max_commits):
        try:
            hashes = _rendered_hashes(path, commit.hexsha)
        except errors.CUError:
            hashes = {}
        if hashes.get(key) == wanted:
            found = commit.hexsha
        elif found is not None:
            break
    return found

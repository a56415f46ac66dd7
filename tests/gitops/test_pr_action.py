"""The pull-request preview action (.github/actions/cu-plan): its scripts on real Git repos.

No hosted CI is reachable here, so the scripts the composite action runs are run as it runs
them: on a clone with the PR branch checked out and only ``origin/main`` as the base, with
GitHub's comments API served by a local HTTP server that stores comments (the one stand-in:
GitHub itself). Proves: annotations carry escaped file names and exact lines; the comment is
created once and then updated in place; an invalid commit fails the job; the plan shows the
change. The action and the example workflow validate against the published JSON schemas that
check-jsonschema vendors (offline), and a broken copy does not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import git
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / ".github" / "actions" / "cu-plan"
WORKFLOW = ROOT / "examples" / "gitrepo" / ".github" / "workflows" / "cu-plan.yml"
CHECK = Path(sys.executable).parent / "check-jsonschema"


BOT = "github-actions[bot]"
MARKER = "<!-- cu-reconciler:plan-preview -->"


class _Comments(BaseHTTPRequestHandler):
    """GitHub's issue-comments API: comments keep their author; ``refuse`` maps a method to the
    status GitHub answers it with (a fork pull request's token cannot write: 403)."""

    store: ClassVar[dict[int, tuple[str, str]]] = {}
    log: ClassVar[list[tuple[str, str]]] = []
    refuse: ClassVar[dict[str, int]] = {}

    def _reply(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refused(self, method: str) -> bool:
        self.log.append((method, self.path))
        if method in self.refuse:
            self._reply(self.refuse[method], {"message": "Resource not accessible by integration"})
            return True
        return False

    def _body(self) -> str:
        body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        return str(body["body"])

    def do_GET(self) -> None:
        if self._refused("GET"):
            return
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        page = int(query.get("page", ["1"])[0])
        items = [
            {"id": k, "body": body, "user": {"login": login}}
            for k, (login, body) in sorted(self.store.items())
        ]
        self._reply(200, items[(page - 1) * 100 : page * 100])

    def do_POST(self) -> None:
        if self._refused("POST"):
            return
        assert self.headers["Authorization"] == "Bearer t0ken"
        new = max(self.store, default=100) + 1
        self.store[new] = (BOT, self._body())
        self._reply(201, {"id": new})

    def do_PATCH(self) -> None:
        if self._refused("PATCH"):
            return
        cid = int(self.path.rsplit("/", 1)[1])
        assert self.store[cid][0] == BOT, "edited a comment somebody else wrote"
        self.store[cid] = (BOT, self._body())
        self._reply(200, {"id": cid})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def github() -> Iterator[str]:
    _Comments.store = {
        42: ("alice", "an unrelated comment"),
        43: ("mallory", MARKER + " a comment planted to be overwritten"),
    }
    _Comments.log = []
    _Comments.refuse = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Comments)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture
def pr_clone(example_repo: git.Repo, tmp_path: Path) -> git.Repo:
    """A bare ``origin`` with ``main``, and a clone on the PR branch (as actions/checkout)."""
    origin = tmp_path / "origin.git"
    git.Repo.clone_from(example_repo.working_dir, origin, bare=True)
    clone = git.Repo.clone_from(str(origin), tmp_path / "work", branch="main")
    with clone.config_writer() as cfg:
        cfg.set_value("user", "name", "Alice")
        cfg.set_value("user", "email", "alice@example.invalid")
    clone.git.checkout("-b", "raise-priority")
    return clone


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    comment: str


def _run(clone: git.Repo, api: str, tmp: Path, **extra: str) -> Run:
    out = tmp / "github_output"
    out.write_text("")
    summary = tmp / "step_summary"
    summary.write_text("")
    work = tmp / "scratch"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "CU_PATH": ".",
        "CU_BASE_REF": "main",
        "CU_PR_NUMBER": "7",
        "CU_WORK": str(work),
        "GITHUB_REPOSITORY": "platform/cu-desired-state",
        "GITHUB_API_URL": api,
        "GITHUB_TOKEN": "t0ken",
        "GITHUB_OUTPUT": str(out),
        "GITHUB_STEP_SUMMARY": str(summary),
        **extra,
    }
    proc = subprocess.run(
        [str(ACTION / "scripts" / "preview.sh")],
        cwd=clone.working_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    comment = (work / "comment.md").read_text() if (work / "comment.md").exists() else ""
    return Run(proc.returncode, proc.stdout, proc.stderr, outputs, summary.read_text(), comment)


def _commands(run: Run) -> list[str]:
    """Every line GitHub's runner would execute as a workflow command: it reads stdout and
    stderr line by line (CR, LF and CRLF end a line) and takes a line that starts, after
    leading whitespace, with ``::`` (or holds the legacy ``##[``)."""
    lines = re.split(r"\r\n|\r|\n", run.stdout + "\n" + run.stderr)
    return [line.lstrip() for line in lines if line.lstrip().startswith("::") or "##[" in line]


def _rows(text: str, heading: str) -> list[str]:
    """The body rows of the first table under ``heading``."""
    lines = text[text.index(heading) :].splitlines()[1:]
    rows = [
        line
        for line in lines[: next((i for i, x in enumerate(lines) if x.startswith("#")), len(lines))]
        if line.startswith("|")
    ]
    return rows[2:]


def _parse(line: str) -> tuple[str, dict[str, str], str]:
    """A workflow command as the runner reads it (``ActionCommand.TryParseV2``): the name ends
    at the first space, properties split at ``,`` and then at the first ``=``, and values are
    unescaped (``%0D``, ``%0A``, ``%3A``, ``%2C``, ``%25``)."""
    head, _, message = line[2:].partition("::")
    name, _, props = head.partition(" ")

    def unescape(v: str) -> str:
        for code, ch in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
            v = v.replace(code, ch)
        return v

    pairs = (p.split("=", 1) for p in props.split(",") if p)
    return name, {k: unescape(v) for k, v in pairs}, unescape(message)


def _ours() -> dict[int, str]:
    return {k: body for k, (login, body) in _Comments.store.items() if login == BOT}


def test_preview_annotates_then_updates_one_comment(
    pr_clone: git.Repo, github: str, tmp_path: Path
) -> None:
    root = Path(pr_clone.working_dir)
    tenant = root / "tenants" / "research-batch.yaml"
    tenant.write_text(tenant.read_text().replace("priority: 300", "priority: 800"))
    backfill = root / "claims" / "ads-embedding" / "backfill.yaml"
    backfill.write_text(backfill.read_text().replace("minMemory: 32Gi", "minMemory: 48Gi"))
    odd = root / "claims" / "research-batch" / "a,b:c.yaml"
    odd.write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUClaim\nmetadata:\n  name: odd\n"
        "spec:\n  tenant: research-batch\n  pool: batch\n  cu: -5\n"
    )
    pr_clone.git.add(A=True)
    pr_clone.index.commit("Raise research priority (and a bad claim)")

    run = _run(pr_clone, github, tmp_path)
    assert run.code == 1, run.stderr
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert errors, run.stdout
    assert all("file=claims/research-batch/a%2Cb%3Ac.yaml," in e for e in errors), errors
    assert all(",line=" in e and ",col=" in e for e in errors)
    assert run.outputs == {"valid": "false", "changes": "false", "comment": "created"}
    assert "Validation failed" in run.summary, "the job summary is written"
    posts = [m for m, _ in _Comments.log if m == "POST"]
    assert len(posts) == 1, "mallory's comment with our marker is not ours: a new one"
    (first_id,) = _ours()
    assert "Validation failed" in _Comments.store[first_id][1]

    odd.unlink()
    pr_clone.git.add(A=True)
    pr_clone.index.commit("Drop the bad claim")
    run = _run(pr_clone, github, tmp_path)
    assert run.code == 0, run.stderr
    assert not [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert run.outputs == {"valid": "true", "changes": "true", "comment": "updated"}
    assert [m for m, _ in _Comments.log].count("POST") == 1, "updated in place, not re-posted"
    assert ("PATCH", f"/repos/platform/cu-desired-state/issues/comments/{first_id}") in (
        _Comments.log
    )
    body = _Comments.store[first_id][1]
    assert "Validation passed" in body and "ads-backfill" in body
    assert _Comments.store[42] == ("alice", "an unrelated comment")
    assert _Comments.store[43][1].endswith("a comment planted to be overwritten")
    assert body.count(MARKER) == 1 and body.startswith(MARKER)


def test_a_one_line_change_gets_a_short_comment_and_the_summary_gets_everything(
    pr_clone: git.Repo, github: str, tmp_path: Path
) -> None:
    root = Path(pr_clone.working_dir)
    tenant = root / "tenants" / "research-batch.yaml"
    tenant.write_text(tenant.read_text().replace("priority: 300", "priority: 800"))
    pr_clone.git.add(A=True)
    pr_clone.index.commit("Raise research priority")
    run = _run(
        pr_clone,
        github,
        tmp_path,
        GITHUB_SERVER_URL="https://github.example",
        GITHUB_RUN_ID="991",
    )
    assert run.code == 0, run.stderr
    assert run.outputs["comment"] == "created"
    (body,) = _ours().values()
    assert "priority" in body and "300" in body and "800" in body, body
    assert "[job summary](https://github.example/platform/cu-desired-state/actions/runs/991)" in (
        body
    )
    for section in ("#### CU capacity per pool", "#### CU per tenant", "CU arithmetic"):
        assert section in run.summary, section
    assert len(_rows(run.summary, "#### CU per tenant")) == 7, "every tenant in the summary"
    assert not _rows(body, "#### CU per tenant"), "no tenant row changes: none in the comment"
    assert "_No change here (7 unchanged row(s)" in body
    assert len(body) < 3_000, f"{len(body)} characters for a one-line change"
    assert len(run.summary) > 2 * len(body)


def test_a_fork_pull_request_gets_a_warning_the_summary_and_the_outputs(
    pr_clone: git.Repo, github: str, tmp_path: Path
) -> None:
    """A fork's token is read-only: GitHub answers the POST with 403."""
    root = Path(pr_clone.working_dir)
    tenant = root / "tenants" / "research-batch.yaml"
    tenant.write_text(tenant.read_text().replace("priority: 300", "priority: 800"))
    pr_clone.git.add(A=True)
    pr_clone.index.commit("Raise research priority")
    _Comments.refuse = {"POST": 403}
    run = _run(pr_clone, github, tmp_path)
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    warnings = [c for c in _commands(run) if c.startswith("::warning")]
    assert len(warnings) == 1 and "was not posted (POST 403" in warnings[0], run.stdout
    assert run.outputs == {"valid": "true", "changes": "true", "comment": "failed"}
    assert "#### CU per tenant" in run.summary
    assert not _ours()


def _post(api: str, tmp: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    text = tmp / "comment.md"
    text.write_text(MARKER + "\nnew\n")
    out = tmp / "github_output"
    out.write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GITHUB_REPOSITORY": "platform/cu-desired-state",
        "GITHUB_API_URL": api,
        "GITHUB_TOKEN": "t0ken",
        "CU_PR_NUMBER": "7",
    }
    script = [sys.executable, str(ACTION / "scripts" / "comment.py"), "post"]
    proc = subprocess.run(
        [*script, "--body", str(text), "--output", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, out.read_text()


@pytest.mark.parametrize(
    ("refuse", "status"),
    [
        pytest.param({"GET": 404}, "GET 404", id="no-access"),
        pytest.param({"PATCH": 403}, "PATCH 403", id="read-only-update"),
        pytest.param({"GET": 500}, "GET 500", id="github-error"),
        pytest.param({}, "GET failed", id="unreachable"),
    ],
)
def test_every_refusal_is_one_warning_and_comment_failed(
    github: str, tmp_path: Path, refuse: dict[str, int], status: str
) -> None:
    _Comments.refuse = refuse
    _Comments.store[60] = (BOT, MARKER + "\nold")
    api = github if refuse else "http://127.0.0.1:9"  # nothing listens on the discard port
    proc, outputs = _post(api, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    (warning,) = proc.stdout.splitlines()
    assert warning.startswith("::warning title=cu-reconciler preview::"), warning
    assert f"was not posted ({status}" in warning, warning
    assert outputs == "comment=failed\n"


HOSTILE_NAME = (
    "x\n::add-mask::secret\r::stop-commands::tok\n##[error]v1\n  ::error title=forged::f.yaml"
)
HOSTILE_VALUE = (
    "@octocat [click](https://evil.example) ![i](https://evil.example/p.png) <img src=x> "
    "| forged | row | `tick` <!-- cu-reconciler:plan-preview -->"
)


def test_a_hostile_pull_request_forges_no_command_and_no_markup(
    pr_clone: git.Repo, github: str, tmp_path: Path
) -> None:
    """File names forging workflow commands and values forging markup: the runner sees only our
    annotations, and the comment renders them as literal text."""
    root = Path(pr_clone.working_dir)
    (root / "claims" / "research-batch" / f"{HOSTILE_NAME}.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUClaim\nmetadata:\n"
        f"  name: {json.dumps(HOSTILE_VALUE)}\n"
        "spec:\n  tenant: research-batch\n  pool: batch\n  cu: 1\n"
    )
    # At the top level, cuctl's messages start with the file name: a forged command line.
    (root / "::add-mask::secret.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUClaim\nmetadata:\n  name: top\n"
        f"spec:\n  tenant: {json.dumps(HOSTILE_VALUE)}\n  pool: batch\n  cu: 1\n"
    )
    pr_clone.git.add(A=True)
    pr_clone.git.commit("-q", "-m", "Hostile")  # GitPython's index refuses a name like ``::x``
    run = _run(pr_clone, github, tmp_path)
    assert run.code == 1, run.stderr
    commands = _commands(run)
    assert commands, "the bad claim is annotated"
    hostile_path = f"claims/research-batch/{HOSTILE_NAME}.yaml"
    for line in commands:
        name, props, _ = _parse(line)
        assert name in {"error", "warning", "notice"}, line
        if name == "error":
            assert props["title"].startswith("cuctl validate CU"), line
            assert props["file"] in {hostile_path, "::add-mask::secret.yaml"}, line
    assert "\n| ::add-mask::secret.yaml:" in run.stderr, "cuctl's own line, relayed inert"
    assert any("%0A%3A%3Aadd-mask%3A%3Asecret%0D" in c for c in commands), commands
    (body,) = _ours().values()
    html = MarkdownIt("commonmark").enable("table").render(body)
    assert "<img" not in html and "<a " not in html, html
    assert "evil.example" in html, "the text is shown, not dropped"
    for at in [m.start() for m in re.finditer("@octocat", html)]:
        assert html.rfind("<code>", 0, at) > html.rfind("</code>", 0, at), "a mention outside code"
    assert body.count(MARKER) == 1
    rows = [r for r in html.split("<tr>") if "forged" in r]
    assert len(rows) == 1 and rows[0].count("<td>") == 4, rows


def test_post_edits_only_comments_our_identity_wrote(github: str, tmp_path: Path) -> None:
    """Neither mallory's comment with our marker nor another user's is ours for the workflow
    token (``github-actions[bot]``, the default CU_COMMENT_AUTHOR)."""
    _Comments.store[50] = ("ci-user", MARKER + "\nold")
    proc, outputs = _post(github, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert outputs == "comment=created\n"
    assert _Comments.store[50] == ("ci-user", MARKER + "\nold"), "not our identity: untouched"
    assert _Comments.store[43][1].endswith("overwritten")
    assert [m for m, _ in _Comments.log] == ["GET", "POST"]


def test_action_and_workflow_match_the_published_schemas(tmp_path: Path) -> None:
    for schema, path in (
        ("vendor.github-actions", ACTION / "action.yml"),
        ("vendor.github-workflows", WORKFLOW),
    ):
        proc = subprocess.run(
            [str(CHECK), "--builtin-schema", schema, str(path)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "action.yml"
    broken.write_text(
        (ACTION / "action.yml").read_text().replace("using: composite", "using: nope")
    )
    proc = subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.github-actions", str(broken)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0, "the schema check can fail"

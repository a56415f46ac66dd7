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
import shutil
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import git
import pytest

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / ".github" / "actions" / "cu-plan"
WORKFLOW = ROOT / "examples" / "gitrepo" / ".github" / "workflows" / "cu-plan.yml"
CHECK = Path(sys.executable).parent / "check-jsonschema"


class _Comments(BaseHTTPRequestHandler):
    store: ClassVar[dict[int, str]] = {}
    log: ClassVar[list[tuple[str, str]]] = []

    def _reply(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        return body

    def do_GET(self) -> None:
        self.log.append(("GET", self.path))
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        page = int(query.get("page", ["1"])[0])
        items = [{"id": k, "body": v} for k, v in sorted(self.store.items())]
        self._reply(200, items[(page - 1) * 100 : page * 100])

    def do_POST(self) -> None:
        self.log.append(("POST", self.path))
        assert self.headers["Authorization"] == "Bearer t0ken"
        new = max(self.store, default=100) + 1
        self.store[new] = self._body()["body"]
        self._reply(201, {"id": new})

    def do_PATCH(self) -> None:
        self.log.append(("PATCH", self.path))
        cid = int(self.path.rsplit("/", 1)[1])
        self.store[cid] = self._body()["body"]
        self._reply(200, {"id": cid})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def github() -> Iterator[str]:
    _Comments.store = {42: "an unrelated comment"}
    _Comments.log = []
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


def _run(clone: git.Repo, api: str, tmp: Path) -> tuple[int, str, str, str]:
    out = tmp / "github_output"
    out.write_text("")
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
    }
    proc = subprocess.run(
        [str(ACTION / "scripts" / "preview.sh")],
        cwd=clone.working_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout, proc.stderr, out.read_text()


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

    code, stdout, stderr, outputs = _run(pr_clone, github, tmp_path)
    assert code == 1, stderr
    errors = [line for line in stdout.splitlines() if line.startswith("::error ")]
    assert errors, stdout
    assert all("file=claims/research-batch/a%2Cb%3Ac.yaml," in e for e in errors), errors
    assert all(",line=" in e and ",col=" in e for e in errors)
    assert "valid=false" in outputs
    posts = [m for m, _ in _Comments.log if m == "POST"]
    assert len(posts) == 1
    first_id = max(_Comments.store)
    assert "Validation failed" in _Comments.store[first_id]

    odd.unlink()
    pr_clone.git.add(A=True)
    pr_clone.index.commit("Drop the bad claim")
    code, stdout, stderr, outputs = _run(pr_clone, github, tmp_path)
    assert code == 0, stderr
    assert not [line for line in stdout.splitlines() if line.startswith("::error")]
    assert "valid=true" in outputs and "changes=true" in outputs
    assert [m for m, _ in _Comments.log].count("POST") == 1, "updated in place, not re-posted"
    assert ("PATCH", f"/repos/platform/cu-desired-state/issues/comments/{first_id}") in (
        _Comments.log
    )
    body = _Comments.store[first_id]
    assert "Validation passed" in body and "ads-backfill" in body
    assert _Comments.store[42] == "an unrelated comment"
    assert body.count("<!-- cu-reconciler:plan-preview -->") == 1


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

"""Previews without blind spots (issue 21, item 5), end to end on the example repository.

- ``plan --base`` plans each side with its own revision's snapshot: a pull request that
  only refreshes the snapshot shows the capacity it changes and the objects it deletes;
- a plan against the live side (here a snapshot holding our objects, read exactly as a
  cluster is) lists edits of priority, ``preemptible``, ``mayBorrow`` and quotas, exit 1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    for name in ("validate", "plan"):
        __import__(f"reconciler.cli.{name}")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    return repo


def _without_h100(snapshot: Path) -> None:
    yaml = YAML(typ="safe")
    doc = yaml.load(snapshot.read_text())
    doc["items"] = [
        item
        for item in doc["items"]
        if "h100" not in str(item.get("metadata", {}).get("name", ""))
        and "h100" not in str((item.get("spec") or {}).get("nodeName", ""))
    ]
    with snapshot.open("w") as f:
        yaml.dump(doc, f)


def test_plan_base_plans_each_side_with_its_own_snapshot(runner: CliRunner, tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    _without_h100(repo / "observed" / "snapshot.yaml")
    _git(repo, "checkout", "-q", "-b", "snapshot")
    _git(repo, "commit", "-q", "-am", "snapshot: the H100 nodes are gone")
    code, out, err = invoke(
        runner, "plan", str(repo), "--rev", "snapshot", "--base", "main", "-o", "json"
    )
    assert code == 1, err
    doc = json.loads(out)
    lost = [p for p in doc["pools"] if p["beforeCU"] != p["afterCU"]]
    assert lost, "the capacity the snapshot removes is shown"
    assert all(float(p["afterCU"]) < float(p["beforeCU"]) for p in lost)
    deletes = [(c["kind"], c["name"]) for c in doc["changes"] if c["action"] == "delete"]
    assert any(kind == "ResourceSlice" for kind, _ in deletes), deletes
    # Both sides on the pull request's snapshot (the old behaviour): no slice is deleted.
    code, out, err = invoke(
        runner,
        "plan",
        str(repo),
        "--rev",
        "snapshot",
        "--base",
        "main",
        "--observed",
        str(repo / "observed" / "snapshot.yaml"),
        "-o",
        "json",
    )
    same = json.loads(out)
    assert not [c for c in same["changes"] if c["action"] == "delete"]


def _live_snapshot(runner: CliRunner, repo: Path, tmp_path: Path) -> Path:
    """The committed snapshot plus the objects ``cuctl apply`` would have written: what a
    plan against the cluster reads as the live side."""
    code, out, err = invoke(runner, "render", str(repo), "--plain")
    assert code == 0, err
    yaml = YAML(typ="safe")
    rendered: list[Any] = [o for o in yaml.load_all(out) if o]
    doc = yaml.load((repo / "observed" / "snapshot.yaml").read_text())
    names = {
        (i["kind"], i["metadata"].get("namespace"), i["metadata"]["name"]) for i in doc["items"]
    }
    doc["items"] += [
        o
        for o in rendered
        if (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) not in names
    ]
    path = tmp_path / "live.yaml"
    with path.open("w") as f:
        yaml.dump(doc, f)
    return path


@pytest.mark.parametrize(
    ("old", "new", "path", "before", "after"),
    [
        pytest.param(
            "priority: 300", "priority: 950", "spec.priority", "300", "950", id="priority"
        ),
        pytest.param(
            "mayBorrow: true", "mayBorrow: false", "spec.mayBorrow", "true", "false", id="borrow"
        ),
    ],
)
def test_a_live_plan_lists_tenant_edits_and_exits_1(
    runner: CliRunner, tmp_path: Path, old: str, new: str, path: str, before: str, after: str
) -> None:
    repo = _repo(tmp_path)
    live = _live_snapshot(runner, repo, tmp_path)
    code, out, err = invoke(runner, "plan", str(repo), "--observed", str(live), "--no-diffs")
    assert "Desired-state changes:" not in out, out
    tenant = repo / "tenants" / "research-batch.yaml"
    assert old in tenant.read_text()
    tenant.write_text(tenant.read_text().replace(old, new))
    code, out, err = invoke(runner, "plan", str(repo), "--observed", str(live), "--no-diffs")
    assert code == 1, out + err
    assert f"  ~ Tenant/research-batch {path}: {before} → {after}" in out.splitlines(), out
    code, out, err = invoke(runner, "plan", str(repo), "--observed", str(live), "-o", "json")
    doc = json.loads(out)
    assert {
        "kind": "Tenant",
        "name": "research-batch",
        "path": path,
        "before": before,
        "after": after,
    } in doc["desiredChanges"]

"""Many clusters in one repository (examples/fleet): per-cluster validate and plan --base."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from reconciler import cli

for _name in ("validate", "plan"):
    __import__(f"reconciler.cli.{_name}")

FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleet"


@pytest.fixture
def fleet_repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "fleet"
    shutil.copytree(FLEET, root)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "test")
        cfg.set_value("user", "email", "test@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("fleet")
    repo.git.checkout("-b", "change")
    return repo


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _edit(repo: git.Repo, rel: str, old: str, new: str) -> None:
    path = Path(repo.working_dir, rel)
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    repo.git.add(A=True)
    repo.index.commit(f"edit {rel}")


def test_both_clusters_validate_and_render_separately(fleet_repo: git.Repo) -> None:
    root = str(fleet_repo.working_dir)
    code, _, err = _run("validate", root)
    assert code == 0, err
    assert "valid cluster cloud-west" in err and "valid cluster dc-east" in err
    code, _, err = _run("render", root)
    assert code == 2 and "--cluster NAME" in err
    sizes = {}
    for name in ("dc-east", "cloud-west"):
        code, out, err = _run("render", root, "--cluster", name)
        assert code == 0, err
        sizes[name] = out.count("\nkind: ResourceClaimTemplate") + out.count(
            "\nkind: ResourceClaim\n"
        )
    assert sizes["dc-east"] > sizes["cloud-west"], "cloud-west runs no research sweeps"


def test_plan_base_reports_only_affected_clusters(fleet_repo: git.Repo) -> None:
    root = str(fleet_repo.working_dir)
    _edit(fleet_repo, "clusters/dc-east/claims/chat-assistant/decode.yaml", "cu: 150", "cu: 125")
    code, out, err = _run("plan", root, "--rev", "change", "--base", "main", "-o", "json")
    assert code == 1, err
    payload = json.loads(out)
    assert list(payload["clusters"]) == ["dc-east"] and payload["unchanged"] == ["cloud-west"]

    _edit(fleet_repo, "tenants/chat-assistant.yaml", "priority: 900", "priority: 950")
    code, out, err = _run("plan", root, "--rev", "change", "--base", "main", "-o", "markdown")
    assert code == 1, err
    assert "## Cluster `cloud-west`" in out and "## Cluster `dc-east`" in out


def test_findings_name_the_clusters_they_affect(fleet_repo: git.Repo) -> None:
    root = str(fleet_repo.working_dir)
    _edit(fleet_repo, "clusters/cloud-west/pools/batch.yaml", "kind: CUPool", "kind: CUPoool")
    code, out, err = _run("validate", root, "-o", "json")
    assert code == 1
    assert "INVALID cluster cloud-west" in err and "valid cluster dc-east" in err
    findings = json.loads(out)
    assert findings and all(f["clusters"] == ["cloud-west"] for f in findings)
    assert any(f["file"] == "clusters/cloud-west/pools/batch.yaml" for f in findings)
    _edit(fleet_repo, "policy.yaml", "kind: Policy", "kind: Polisy")
    code, out, _ = _run("validate", root, "-o", "json")
    shared = [f for f in json.loads(out) if f["file"] == "policy.yaml"]
    assert shared and shared[0]["clusters"] == ["cloud-west", "dc-east"]
    assert len({(f["line"], f["code"]) for f in shared}) == len(shared), "listed once"

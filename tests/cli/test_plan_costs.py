"""A pull request that changes what a tenant pays says so in its preview (``plan --base``),
and a what-if shows the bill it would make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from reconciler import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    __import__("reconciler.cli.plan")
    return CliRunner()


@pytest.fixture
def repo(example_repo: git.Repo) -> git.Repo:
    """The example repository (tests/conftest.py) with a branch that raises a guarantee."""
    repo = example_repo
    root = Path(repo.working_dir)
    repo.git.checkout("-b", "more-search")
    tenant = root / "tenants" / "search-ranking.yaml"
    tenant.write_text(tenant.read_text().replace("guaranteed: 2400", "guaranteed: 2600"))
    repo.git.add(A=True)
    repo.index.commit("search-ranking: +200 CU guaranteed")
    return repo


def test_a_pull_request_that_changes_a_bill_says_so(runner: CliRunner, repo: git.Repo) -> None:
    root = repo.working_dir
    result = runner.invoke(
        cli.app, ["plan", root, "--rev", "more-search", "--base", "main", "-o", "json"]
    )
    assert result.exit_code == 1, result.stderr
    pays = json.loads(result.stdout)["costs"]["paysChanges"]
    assert [p["tenant"] for p in pays] == ["search-ranking"]
    before, after = pays[0]["guaranteedPerMonth"]
    rate = next(
        p["costPerCUHour"]
        for p in json.loads(result.stdout)["costs"]["pools"]
        if p["pool"] == "inference-prod"
    )
    assert after - before == pytest.approx(200 * rate * 730, rel=1e-3)
    result = runner.invoke(
        cli.app, ["plan", root, "--rev", "more-search", "--base", "main", "-o", "markdown"]
    )
    assert "#### Costs (USD; a month is 730 h)" in result.stdout
    assert "- search-ranking: " in result.stdout and "<summary>Costs per pool" in result.stdout


def test_a_what_if_shows_the_bill_it_would_make(runner: CliRunner, repo: git.Repo) -> None:
    result = runner.invoke(
        cli.app,
        [
            "plan",
            repo.working_dir,
            "--what-if",
            "add 8 x H100-SXM5-80GB to pool batch",
            "--no-diffs",
        ],
    )
    assert result.exit_code == 1, result.stderr
    assert "Costs (USD; a month is 730 h):" in result.stdout
    assert "What tenants pay changes" in result.stdout


def test_device_costs_is_at_most_one_per_repository(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    shutil.copy(root / "costs.yaml", root / "costs-again.yaml")
    __import__("reconciler.cli.validate")
    result = CliRunner().invoke(cli.app, ["validate", str(root)])
    assert result.exit_code == 1
    assert "costs-again.yaml:" in result.stdout and "CU304" in result.stdout
    assert "DeviceCosts is also defined at costs.yaml" in result.stdout

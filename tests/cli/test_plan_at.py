"""``cuctl plan --at`` and ``cuctl render`` with guarantee windows: the instant picks the
window in force, the preview shows the schedule and the next edge, and a pull request is
previewed with both sides at the same instant (docs/peaks-and-troughs.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from reconciler import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
PEAKS = EXAMPLE.parent / "peaks-and-troughs" / "tenants"
DAY = "2026-12-07T10:00:00+08:00"
NIGHT = "2026-12-07T03:00:00+08:00"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    __import__("reconciler.cli.plan")
    return CliRunner()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example on ``main``, and a branch ``peaks`` that adopts the windowed tenants."""
    root = tmp_path_factory.mktemp("peaks") / "repo"
    shutil.copytree(EXAMPLE, root)
    r = git.Repo.init(root, initial_branch="main")
    with r.config_writer() as cfg:
        cfg.set_value("user", "name", "test")
        cfg.set_value("user", "email", "test@example.invalid")
    r.git.add(A=True)
    r.index.commit("example")
    r.git.checkout("-b", "peaks")
    for name in ("search-ranking", "research-batch"):
        shutil.copyfile(PEAKS / f"{name}.yaml", root / "tenants" / f"{name}.yaml")
    r.git.add(A=True)
    r.index.commit("search by day, research by night")
    return root


def _json(runner: CliRunner, *args: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    result = runner.invoke(cli.app, ["plan", *args, "-o", "json"])
    return result.exit_code, json.loads(result.stdout) if result.stdout else {}, result.stderr


def _guaranteed(doc: dict, tenant: str) -> float:  # type: ignore[type-arg]
    row = next(t for t in doc["tenants"] if (t["tenant"], t["pool"]) == (tenant, "inference-prod"))
    return float(row["after"]["guaranteedCU"])


def test_the_instant_picks_the_window_and_the_schedule_is_shown(
    runner: CliRunner, repo: Path
) -> None:
    code, day, err = _json(runner, str(repo), "--at", DAY)
    assert code in (0, 1), err
    code, night, err = _json(runner, str(repo), "--at", NIGHT)
    assert code in (0, 1), err
    assert _guaranteed(day, "search-ranking") == 2400 and _guaranteed(day, "research-batch") == 0
    assert _guaranteed(night, "search-ranking") == 1400
    assert _guaranteed(night, "research-batch") == 1000
    rows = {r["tenant"]: r for r in night["schedule"]["tenants"]}
    assert rows["research-batch"]["inForce"] == "night"
    assert rows["search-ranking"]["inForce"] is None
    assert night["schedule"]["at"] == "2026-12-06T19:00:00Z"
    assert night["schedule"]["nextEdge"] == "2026-12-07T00:00:00Z"  # 08:00 in Shanghai
    assert day["schedule"]["nextEdge"] == "2026-12-07T16:00:00Z"  # midnight in Shanghai
    # Costs follow the guarantee in force.
    pay = {t["tenant"]: t for t in night["costs"]["tenants"] if t["pool"] == "inference-prod"}
    assert pay["research-batch"]["guaranteedCU"] == 1000


def test_the_text_preview_marks_the_window_in_force(runner: CliRunner, repo: Path) -> None:
    result = runner.invoke(cli.app, ["plan", str(repo), "--at", NIGHT, "--no-diffs"])
    out = result.stdout
    assert "Guarantee windows at 2026-12-06T19:00:00Z (next edge 2026-12-07T00:00:00Z):" in out
    assert "   * night: Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-08:00 → 1000 CU" in out
    result = runner.invoke(cli.app, ["plan", str(repo), "--at", NIGHT, "-o", "markdown"])
    assert "#### Guarantee windows\n\n```text\nGuarantee windows at" in result.stdout


def test_a_pull_request_is_previewed_with_both_sides_at_the_same_instant(
    runner: CliRunner, repo: Path
) -> None:
    """By day the commit changes nothing search holds (2400 either way); by night it lowers
    search to 1400 and gives research 1000: the preview says so at each instant."""
    code, day, err = _json(runner, str(repo), "--rev", "peaks", "--base", "main", "--at", DAY)
    assert code == 1, err  # the desired state changed (the schedules)
    search = next(t for t in day["tenants"] if t["tenant"] == "search-ranking")
    assert float(search["before"]["guaranteedCU"]) == float(search["after"]["guaranteedCU"]) == 2400
    assert any("schedule" in c["path"] for c in day["desiredChanges"])
    code, night, err = _json(runner, str(repo), "--rev", "peaks", "--base", "main", "--at", NIGHT)
    search = next(t for t in night["tenants"] if t["tenant"] == "search-ranking")
    figures = (float(search["before"]["guaranteedCU"]), float(search["after"]["guaranteedCU"]))
    assert figures == (2400, 1400)
    changes = {c["tenant"]: c for c in night["costs"]["paysChanges"]}
    assert set(changes) == {"search-ranking", "research-batch"}


@pytest.mark.parametrize(
    ("at", "message"),
    [
        pytest.param("2026-12-07T10:00:00", "give an offset", id="no-offset"),
        pytest.param("tomorrow", "not an RFC 3339 time", id="not-a-time"),
    ],
)
def test_a_bad_instant_exits_2_and_says_why(
    runner: CliRunner, repo: Path, at: str, message: str
) -> None:
    result = runner.invoke(cli.app, ["plan", str(repo), "--at", at])
    assert result.exit_code == 2
    assert message in result.stderr


def test_render_names_the_next_edge(runner: CliRunner, repo: Path) -> None:
    r = git.Repo(repo)
    r.git.checkout("peaks")
    try:
        result = runner.invoke(cli.app, ["render", str(repo)])
    finally:
        r.git.checkout("main")
    assert result.exit_code == 0, result.stderr
    assert "guarantee windows in force at" in result.stderr
    assert ": render again then" in result.stderr

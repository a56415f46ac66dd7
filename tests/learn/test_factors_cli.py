"""``cuctl factors``: fit (dry run and --write on a branch), show, report, on a real repo."""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from reconciler.cli import _app
from reconciler.cli import factors as _factors  # noqa: F401  (registers the sub-app)
from reconciler.learn import adapter, synthetic, writeback

runner = CliRunner()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    r = git.Repo.init(root, initial_branch="main")
    (root / "factors").mkdir()
    (root / "factors" / "default.yaml").write_text(writeback.render_table(adapter.spec_table()))
    (root / "pools.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUPool\nmetadata: {name: prod}\n"
        "spec:\n  selector: {models: [H100-SXM5-80GB, L40S]}\n"
        "  workloadMix: {prefill: 0.4, decode: 0.6}\n"
    )
    r.index.add(["factors/default.yaml", "pools.yaml"])
    actor = git.Actor("t", "t@example.com")
    r.index.commit("seed", author=actor, committer=actor)
    return root


@pytest.fixture(scope="module")
def record_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sc = synthetic.Scenario(records=30_000, bad_rows=100)
    frame, _ = synthetic.generate(sc, seed=21)
    path = tmp_path_factory.mktemp("rec") / "records.csv"
    frame.to_csv(path, index=False)
    return path


NOW = ["--now", "2026-11-27T00:00:00Z"]


def test_fit_dry_run_changes_nothing(repo: Path, record_file: Path) -> None:
    res = runner.invoke(
        _app.app, ["factors", "fit", "--records", str(record_file), "--repo", str(repo), *NOW]
    )
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    assert "→" in res.stdout and "missing-field" in res.output
    assert git.Repo(repo).head.commit.message == "seed"


def test_fit_write_commits_on_a_branch(repo: Path, record_file: Path) -> None:
    res = runner.invoke(
        _app.app,
        [
            "factors",
            "fit",
            "--records",
            str(record_file),
            "--repo",
            str(repo),
            "--write",
            "--branch",
            "factors/x",
            *NOW,
        ],
    )
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    r = git.Repo(repo)
    assert r.active_branch.name == "factors/x"
    assert r.head.commit.message.startswith("factors(default):")
    assert r.commit("main").message == "seed"
    show = runner.invoke(_app.app, ["factors", "show", "--repo", str(repo)])
    assert show.exit_code == 0, show.output
    assert "learned" in show.stdout and "CU VALUE" in show.stdout


def test_report_writes_html(repo: Path, record_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(
        _app.app,
        [
            "factors",
            "report",
            "--records",
            str(record_file),
            "--repo",
            str(repo),
            "--out",
            str(out),
            *NOW,
        ],
    )
    assert res.exit_code == 0, res.output
    text = (out / "report.html").read_text()
    assert "data:image/png;base64," in text and "prod" in text


def test_unreadable_records_exit_2(repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "r.txt"
    bad.write_text("x")
    res = runner.invoke(_app.app, ["factors", "fit", "--records", str(bad), "--repo", str(repo)])
    assert res.exit_code == _app.EXIT_ERROR

"""``cuctl factors``: fit (dry run and --write on a branch), show, report, on a real repo."""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from reconciler.cli import _app
from reconciler.cli import factors as _factors  # noqa: F401  (registers the sub-app)
from reconciler.learn import writeback

runner = CliRunner()


@pytest.fixture()
def repo(example_repo: git.Repo) -> Path:
    """A real Git copy of the example repository: valid, spec table with per-row comments."""
    return Path(example_repo.working_dir)


@pytest.fixture(scope="module")
def record_file(synthetic_records: Path) -> Path:
    return synthetic_records


NOW = ["--now", "2026-11-27T00:00:00Z"]


def test_fit_dry_run_changes_nothing(repo: Path, record_file: Path) -> None:
    res = runner.invoke(
        _app.app, ["factors", "fit", "--records", str(record_file), "--repo", str(repo), *NOW]
    )
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    assert "→" in res.stdout and "missing-field" in res.output
    assert git.Repo(repo).head.commit.message == "example"


def test_fit_write_commits_learned_rows_on_a_branch(repo: Path, record_file: Path) -> None:
    spec_before = (repo / "factors" / "default.yaml").read_bytes()
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
    assert r.head.commit.message.startswith("factors(learned):")
    assert r.commit("main").message == "example"
    # one file in the commit: the bot-owned table; the curated spec table is untouched
    assert set(r.head.commit.stats.files) == {"factors/learned.yaml"}
    assert (repo / "factors" / "default.yaml").read_bytes() == spec_before
    text = (repo / "factors" / "learned.yaml").read_text()
    assert text.startswith("# Learned conversion factors: written by `cuctl factors fit")
    assert "git log factors/learned.yaml" in text
    table = writeback.read_table(repo / "factors" / "learned.yaml")
    assert table.metadata.name == writeback.LEARNED_NAME and table.spec.factors
    assert {f.source.value for f in table.spec.factors} == {"learned"}

    show = runner.invoke(_app.app, ["factors", "show", "--repo", str(repo)])
    assert show.exit_code == 0, show.output
    assert "CU VALUE" in show.stdout
    rows = {tuple(line.split()[:2]): line.split() for line in show.stdout.splitlines()}
    moved = table.spec.factors[0]
    row = rows[(moved.device_model, str(moved.workload_class))]
    assert row[3:5] == ["learned", "learned"] and row[-2] == "default"  # overrides the spec row
    assert rows[("A100-SXM4-80GB", "decode")][3:5] == ["spec", "default"]


def test_second_fit_rewrites_the_learned_table_in_place(repo: Path, record_file: Path) -> None:
    args = ["factors", "fit", "--records", str(record_file), "--repo", str(repo), "--write", *NOW]
    assert runner.invoke(_app.app, args).exit_code == _app.EXIT_FINDINGS
    first = writeback.read_table(repo / "factors" / "learned.yaml")
    res = runner.invoke(_app.app, args)  # clamped moves continue from the learned values
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    second = writeback.read_table(repo / "factors" / "learned.yaml")
    assert [(f.device_model, f.workload_class) for f in second.spec.factors][
        : len(first.spec.factors)
    ] == [(f.device_model, f.workload_class) for f in first.spec.factors]
    assert second != first
    log = git.Repo(repo).git.log("--format=%s", "--", "factors/learned.yaml").splitlines()
    assert len(log) == 2 and all(s.startswith("factors(learned):") for s in log)
    assert (repo / "factors" / "learned.yaml").read_text().startswith("# Learned conversion")


def test_a_curated_spec_table_is_never_the_target(repo: Path, record_file: Path) -> None:
    res = runner.invoke(
        _app.app,
        [
            "factors",
            "fit",
            "--records",
            str(record_file),
            "--repo",
            str(repo),
            "--table",
            "factors/default.yaml",
            "--write",
            *NOW,
        ],
    )
    assert res.exit_code == _app.EXIT_ERROR
    assert "curated by people" in res.stderr
    assert git.Repo(repo).head.commit.message == "example" and not git.Repo(repo).is_dirty()


def test_table_option_names_a_new_bot_owned_file(repo: Path, record_file: Path) -> None:
    res = runner.invoke(
        _app.app,
        [
            "factors",
            "fit",
            "--records",
            str(record_file),
            "--repo",
            str(repo),
            "--table",
            "factors/fleet-learned.yaml",
            "--write",
            *NOW,
        ],
    )
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    head = git.Repo(repo).head.commit
    assert head.message.startswith("factors(fleet-learned):")
    assert set(head.stats.files) == {"factors/fleet-learned.yaml"}


def test_invalid_repository_exits_2_with_diagnostics(repo: Path, record_file: Path) -> None:
    (repo / "pools" / "broken.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUPool\nmetadata: {name: Broken}\n"
    )
    for args in (
        ["fit", "--records", str(record_file), "--write", *NOW],
        ["show"],
        ["report", "--records", str(record_file), "--out", str(repo / "out"), *NOW],
    ):
        res = runner.invoke(_app.app, ["factors", *args, "--repo", str(repo)])
        assert res.exit_code == _app.EXIT_ERROR, args
        assert "pools/broken.yaml:3:" in res.stderr and ": CU207: " in res.stderr
        assert "invalid" in res.stderr
    assert git.Repo(repo).head.commit.message == "example"
    assert not (repo / "factors" / "learned.yaml").exists() and not (repo / "out").exists()


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

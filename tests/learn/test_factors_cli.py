"""``cuctl factors``: fit (dry run and --write on a branch), show, report, on a real repo."""

from __future__ import annotations

import re
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner, Result

from reconciler.cli import _app
from reconciler.cli import factors as _factors
from reconciler.learn import writeback
from reconciler.model import documents as docs

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
    # every series says whether drift was tested, in the message the commit would carry
    checks = res.stdout.split("Drift checks: ")[1].split("Drift alarms:")[0]
    lines = [line for line in checks.splitlines()[1:] if line.startswith("- ")]
    assert lines and all(
        ": tested (" in line or ": not enough data (have " in line for line in lines
    )
    assert checks.startswith(
        f"{sum(': tested (' in line for line in lines)} of {len(lines)} series"
    )
    assert git.Repo(repo).head.commit.message == "example"


def _fit(repo: Path, record_file: Path, *extra: str) -> Result:
    return runner.invoke(
        _app.app,
        ["factors", "fit", "--records", str(record_file), "--repo", str(repo), *NOW, *extra],
    )


def test_fit_write_commits_learned_rows_on_a_branch(repo: Path, record_file: Path) -> None:
    spec_before = (repo / "factors" / "default.yaml").read_bytes()
    res = _fit(repo, record_file, "--write", "--branch", "factors/x")
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    r = git.Repo(repo)
    assert r.active_branch.name == "main"  # the checkout is never switched
    assert not (repo / "factors" / "learned.yaml").exists()  # nor its files touched
    head = r.commit("factors/x")
    assert head.message.startswith("factors(learned):")
    assert [p.hexsha for p in head.parents] == [r.commit("main").hexsha]
    # one file in the commit: the bot-owned table; the curated spec table is untouched
    assert set(head.stats.files) == {"factors/learned.yaml"}
    assert (head.tree / "factors/default.yaml").data_stream.read() == spec_before
    text = (head.tree / "factors/learned.yaml").data_stream.read().decode()
    assert text.startswith("# Learned conversion factors: written by `cuctl factors fit")
    assert "git log factors/learned.yaml" in text
    r.git.checkout("factors/x")  # what a reviewer does
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


def test_shared_checkout_is_never_read_or_touched(
    repo: Path, record_file: Path, tmp_path: Path
) -> None:
    """The failure from issue 12: a dirty index, uncommitted policy edits, a bare remote."""
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    r = git.Repo(repo)
    r.create_remote("origin", str(remote))
    r.git.push("origin", "main:main")
    # someone's work in progress: a staged unrelated file and an uncommitted policy edit
    (repo / "notes.txt").write_text("unrelated, staged\n")
    r.index.add(["notes.txt"])
    policy = repo / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("maxRelativeChange: 0.10", "maxRelativeChange: 0.5")
    )
    before = (r.head.commit.hexsha, r.git.diff("--cached"), r.git.diff(), policy.read_bytes())

    res = _fit(repo, record_file, "--write", "--push")
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    bot = git.Repo(remote).commit(_factors.DEFAULT_BRANCH)
    assert "maxRelativeChange=0.1 " in bot.message  # the committed policy, not the edit
    assert "capped by maxRelativeChange 0.1)" in bot.message
    assert set(r.git.diff("--name-only", "main", bot.hexsha).split()) == {"factors/learned.yaml"}
    assert "notes.txt" not in [b.path for b in bot.tree.traverse()]  # type: ignore[union-attr]
    assert (r.head.commit.hexsha, r.git.diff("--cached"), r.git.diff(), policy.read_bytes()) == (
        before
    )
    assert r.active_branch.name == "main"

    # same records, same base: same content, no new commit, nothing moves on the remote
    again = _fit(repo, record_file, "--write", "--push")
    assert again.exit_code == _app.EXIT_FINDINGS, again.output
    assert "unchanged (already on the branch)" in again.stderr
    assert git.Repo(remote).commit(_factors.DEFAULT_BRANCH).hexsha == bot.hexsha
    assert r.git.rev_list("--count", f"main..{_factors.DEFAULT_BRANCH}") == "1"

    # the reviewer merges it; the same records again move nothing (the cap does not compound)
    r.git.update_ref("refs/heads/main", bot.hexsha)
    r.git.reset("--mixed", "-q")  # keep their edits; only the index follows main
    r.index.add(["notes.txt"])
    third = _fit(repo, record_file, "--write", "--push")
    assert third.exit_code == _app.EXIT_OK, third.output
    assert "already published from these records" in third.stdout
    assert "nothing to commit" in third.stderr
    assert git.Repo(remote).commit(_factors.DEFAULT_BRANCH).hexsha == bot.hexsha


def test_branch_checked_out_is_refused(repo: Path, record_file: Path) -> None:
    res = _fit(repo, record_file, "--write", "--branch", "main")
    assert res.exit_code == _app.EXIT_ERROR
    assert "checked out" in res.stderr
    assert git.Repo(repo).head.commit.message == "example"


def test_second_fit_on_new_evidence_moves_from_the_published_value(
    repo: Path, record_file: Path, tmp_path: Path
) -> None:
    """A new records window continues a clamped move once, from the merged value."""
    r = git.Repo(repo)
    assert _fit(repo, record_file, "--write").exit_code == _app.EXIT_FINDINGS
    first_sha = r.commit(_factors.DEFAULT_BRANCH).hexsha
    r.git.update_ref("refs/heads/main", first_sha)
    r.git.reset("--hard", "-q")
    first = writeback.read_table(repo / "factors" / "learned.yaml")
    newer = tmp_path / "newer.csv"
    lines = record_file.read_bytes().splitlines(keepends=True)
    newer.write_bytes(b"".join(lines[:-500]))  # another window: other records, another digest
    res = _fit(repo, newer, "--write")
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    head = r.commit(_factors.DEFAULT_BRANCH)
    assert [p.hexsha for p in head.parents] == [first_sha]
    text = (head.tree / "factors/learned.yaml").data_stream.read().decode()
    second = docs.FactorTable.model_validate(next(iter(writeback._loads(text))))
    keys = [(f.device_model, f.workload_class) for f in first.spec.factors]
    assert [(f.device_model, f.workload_class) for f in second.spec.factors][: len(keys)] == keys
    assert second != first
    log = r.git.log("--format=%s", _factors.DEFAULT_BRANCH, "--", "factors/learned.yaml")
    assert len(log.splitlines()) == 2


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
    head = git.Repo(repo).commit(_factors.DEFAULT_BRANCH)
    assert head.message.startswith("factors(fleet-learned):")
    assert set(head.stats.files) == {"factors/fleet-learned.yaml"}


def test_invalid_repository_exits_2_with_diagnostics(repo: Path, record_file: Path) -> None:
    (repo / "pools" / "broken.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUPool\nmetadata: {name: Broken}\n"
    )
    r = git.Repo(repo)
    r.index.add(["pools/broken.yaml"])
    r.index.commit("broken")  # fit reads the committed revision, show/report the worktree
    for args in (
        ["fit", "--records", str(record_file), "--write", *NOW],
        ["show"],
        ["report", "--records", str(record_file), "--out", str(repo / "out"), *NOW],
    ):
        res = runner.invoke(_app.app, ["factors", *args, "--repo", str(repo)])
        assert res.exit_code == _app.EXIT_ERROR, args
        assert "pools/broken.yaml:3:" in res.stderr and ": CU207: " in res.stderr
        assert "invalid" in res.stderr
    assert git.Repo(repo).head.commit.message == "broken"
    assert _factors.DEFAULT_BRANCH not in git.Repo(repo).heads
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
    assert "pool models from the devices in observed/snapshot.yaml" in res.stderr
    # each pool lists the models of the devices its selector takes, node labels included
    table = text.split("<table class='pool-models'>")[1].split("</table>")[0]
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in table.split("<tr>")[2:]]
    by_pool: dict[str, set[str]] = {}
    for pool, model, *_ in rows:
        by_pool.setdefault(pool, set()).add(model)
    assert by_pool["batch"] == {"A100-SXM4-80GB", "BR104", "BI-V150", "K100"}
    assert by_pool["dev"] == {"L40S", "BI-V100", "Z100"}
    assert {"H100-SXM5-80GB", "BR100", "Ascend-910B2"} <= by_pool["inference-prod"]
    # the value in force is the curated table's, not a spec prior computed elsewhere
    from reconciler.learn import adapter, fidelity

    curated = adapter.table_values(writeback.read_table(repo / "factors" / "default.yaml"))
    for pool, model, in_force, *_ in rows:
        if pool == "dev":  # no mix of its own: the policy's decode-heavy mix
            value = fidelity.device_values(curated, [model], {"prefill": 0.3, "decode": 0.7})
            assert in_force == f"{value[model]:.4g}", (model, in_force)
    # every series says whether drift was tested
    assert "<table class='coverage'>" in text and ("tested" in text)


def test_unreadable_records_exit_2(repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "r.txt"
    bad.write_text("x")
    res = runner.invoke(_app.app, ["factors", "fit", "--records", str(bad), "--repo", str(repo)])
    assert res.exit_code == _app.EXIT_ERROR


def test_dask_engine_prints_the_same_decisions(repo: Path, record_file: Path) -> None:
    local = _fit(repo, record_file, "--engine", "local")
    dask = _fit(repo, record_file, "--engine", "dask", "--workers", "2")
    assert local.exit_code == dask.exit_code == _app.EXIT_FINDINGS, dask.output
    assert local.stdout == dask.stdout  # same numbers, same decisions, same message

"""``cuctl factors fit --write`` leaves a repository that validates and plans the new CU.

End to end on a real Git copy of examples/gitrepo with synthetic records: the learner
commits factors/learned.yaml, then ``cuctl validate`` accepts the new revision and
``cuctl plan --rev NEW --base OLD`` (the pull request's preview) shows the capacity change
exactly for the models whose factors moved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import git
import pytest
from typer.testing import CliRunner

from reconciler import cli, source, validate
from reconciler.learn import writeback
from reconciler.model import documents as docs

NOW = "2026-11-27T00:00:00Z"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    for name in ("validate", "plan", "factors"):
        __import__(f"reconciler.cli.{name}")
    return CliRunner()


@pytest.fixture()
def repo(example_repo: git.Repo) -> Path:
    return Path(example_repo.working_dir)


@pytest.fixture(scope="module")
def records(synthetic_records: Path) -> Path:
    return synthetic_records


def _plan(runner: CliRunner, rev: str, base: str) -> tuple[int, dict[str, Any]]:
    res = runner.invoke(cli.app, ["plan", ".", "--rev", rev, "--base", base, "-o", "json"])
    assert res.exit_code in (0, 1), res.stderr
    return res.exit_code, json.loads(res.stdout)


def _factors_by_pool(doc: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {p["pool"]: {a["model"]: a["factor"] for a in p["arithmetic"]} for p in doc["pools"]}


def test_written_factors_validate_and_plan_the_new_capacity(
    runner: CliRunner, repo: Path, records: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    old = git.Repo(repo).head.commit.hexsha
    fit = runner.invoke(
        cli.app,
        ["factors", "fit", "--records", str(records), "--write", "--branch", "bot", "--now", NOW],
    )
    assert fit.exit_code == 1, fit.output  # factors moved and were committed
    # Committed on the bot branch with Git plumbing: the checkout stays where it was.
    assert git.Repo(repo).head.commit.hexsha == old
    new = git.Repo(repo).commit("bot").hexsha
    assert new != old and git.Repo(repo).commit("bot").parents[0].hexsha == old

    checked = runner.invoke(cli.app, ["validate", ".", "--rev", new])
    assert checked.exit_code == 0, checked.output

    # what moved, read back through the front door at the new revision
    state = validate.validate_tree(source.read(str(repo), new)).state
    assert state is not None
    learned = {t.metadata.name: t for t in state.factor_tables}[writeback.LEARNED_NAME]
    # The reference's atSLO row (1 by definition, the unit's throughput) moves no factor.
    reference = state.settings.spec.reference.device_model
    moved = {
        (f.device_model, f.workload_class)
        for f in learned.spec.factors
        if not (f.basis is docs.FactorBasis.AT_SLO and f.device_model == reference)
    }
    assert moved
    policy_mix = set(state.policy.spec.factors.workload_mix)
    mixes = {p.metadata.name: set(p.spec.workload_mix) or policy_mix for p in state.pools}

    code, after = _plan(runner, new, old)
    assert code == 1 and after["base"] == old
    in_sync, before = _plan(runner, old, old)
    assert in_sync == 0
    old_factors, new_factors = _factors_by_pool(before), _factors_by_pool(after)
    assert old_factors.keys() == new_factors.keys()
    changed_somewhere = False
    for pool in after["pools"]:
        name = pool["pool"]
        expected = {m for m, c in moved if c in mixes[name]} & set(new_factors[name])
        got = {m for m, v in new_factors[name].items() if v != pytest.approx(old_factors[name][m])}
        assert got == expected, name
        if expected:
            changed_somewhere = True
            assert pool["beforeCU"] != pool["afterCU"], name
        else:
            assert pool["beforeCU"] == pool["afterCU"], name
    assert changed_somewhere

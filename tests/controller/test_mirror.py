"""The controller's clone: follows a branch of a real bare remote; factor-table evidence."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from reconciler import errors, source
from reconciler.controller import mirror


def test_the_mirror_follows_the_branch_and_reads_the_commit(
    example_repo: git.Repo, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    example_repo.create_remote("origin", str(remote))
    example_repo.git.push("origin", "main")
    m = mirror.Mirror(str(remote), "main", tmp_path / "cache")
    first = m.fetch()
    assert first == example_repo.head.commit.hexsha
    tree = source.read(m.source_path, first)
    assert "cluster.yaml" in tree.files

    factors = Path(example_repo.working_dir) / "factors" / "default.yaml"
    factors.write_text(factors.read_text() + "\n")
    example_repo.git.add(A=True)
    message = (
        "factors(default): 1 changed\n\nDrift alarms: 2\n"
        "- H100-SXM5-80GB/decode down -12.0% from x (alarm y); factor refitted\n"
        "- BR100/prefill up +9.0% from x (alarm y); factor refitted\n"
        "Slow nodes (left out of the fit): none\n"
    )
    example_repo.index.commit(message)
    example_repo.git.push("origin", "main")
    second = m.fetch()
    assert second == example_repo.head.commit.hexsha != first
    age, alarms = m.factor_evidence(second)
    assert 0 <= age < 120
    assert alarms == {"H100-SXM5-80GB": 1, "BR100": 1}
    m.close()


def test_an_unreachable_remote_is_a_source_error(tmp_path: Path) -> None:
    m = mirror.Mirror(str(tmp_path / "nowhere.git"), "main", tmp_path / "cache")
    with pytest.raises(errors.SourceError, match=r"nowhere\.git main: fatal: .*does not"):
        m.fetch()

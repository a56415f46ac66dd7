"""Write-back through real Git: a bare remote, a clone, a commit on a branch, a push."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from reconciler.learn import adapter, writeback
from reconciler.model import documents as docs

HEADER = "# Factors for the cluster. Owner: platform-compute.\n"


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    work = tmp_path / "work"
    repo = git.Repo.clone_from(str(remote), work)
    table = adapter.spec_table()
    path = work / "factors" / "default.yaml"
    path.parent.mkdir()
    path.write_text(HEADER + writeback.render_table(table), encoding="utf-8")
    (work / "policy.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: Policy\nmetadata: {name: default}\n"
        "spec:\n  factors: {minSamples: 300, minNodes: 4}\n",
        encoding="utf-8",
    )
    repo.index.add(["factors/default.yaml", "policy.yaml"])
    actor = git.Actor("test", "test@example.com")
    repo.index.commit("seed factors from specs", author=actor, committer=actor)
    repo.git.branch("-M", "main")
    repo.remote("origin").push("main:main").raise_if_error()
    return work


def test_commit_on_a_branch_is_pushed_with_the_evidence(clone: Path, small_records) -> None:  # type: ignore[no-untyped-def]
    recs, _, sc = small_records
    path = writeback.find_table(clone)
    assert path == clone / "factors" / "default.yaml"
    published = writeback.read_table(path)
    policy = docs.FactorPolicy()
    outcome = adapter.learn(recs, published, policy, sc.end)
    message = writeback.commit_message(outcome, policy)
    original = writeback.read_text(clone, "factors/default.yaml")
    text = writeback.render_table(outcome.proposal.table, original)
    res = writeback.publish(
        clone, "factors/default.yaml", text, message, branch="factors/update", push=True
    )
    assert res.pushed and res.created and res.branch == "factors/update"

    remote = git.Repo(clone.parent / "remote.git")
    head = remote.commit("factors/update")
    assert head.hexsha == res.sha
    assert head.message.startswith("factors(default):")
    first = outcome.proposal.changed[0]
    assert f"{first.device_model}/{first.workload_class.value}:" in head.message
    assert "→" in head.message and "n=" in head.message and "Policy: minSamples=" in head.message
    assert remote.commit("main").hexsha != res.sha  # main is untouched: a PR, not a push to main
    assert git.Repo(clone).active_branch.name == "main"

    text = (head.tree / "factors/default.yaml").data_stream.read().decode("utf-8")
    assert text.startswith(HEADER)  # the comment above the document survives
    table = docs.FactorTable.model_validate(next(iter(writeback._loads(text))))
    values = {(f.device_model, f.workload_class): f for f in table.spec.factors}
    ch = outcome.proposal.changed[0]
    assert values[(ch.device_model, ch.workload_class.value)].value == pytest.approx(
        ch.new, rel=1e-3
    )

    hist = writeback.history(clone, path)
    assert hist[0].summary == "seed factors from specs"
    git.Repo(clone).git.checkout("factors/update")
    assert writeback.history(clone, path)[-1].sha == res.sha


def test_publish_in_a_subdirectory_and_unchanged_content(tmp_path: Path) -> None:
    """The desired state may live in a subdirectory; identical content commits nothing."""
    repo = git.Repo.init(tmp_path / "mono", initial_branch="main")
    sub = tmp_path / "mono" / "clusters" / "a"
    sub.mkdir(parents=True)
    (sub / "x.yaml").write_text("a: 1\n")
    repo.index.add(["clusters/a/x.yaml"])
    actor = git.Actor("t", "t@example.com")
    base = repo.index.commit("base", author=actor, committer=actor)
    res = writeback.publish(sub, "factors/learned.yaml", "b: 2\n", "msg\n", branch="bot")
    assert res.created and res.path == "clusters/a/factors/learned.yaml"
    c = repo.commit("bot")
    assert (c.tree / "clusters/a/factors/learned.yaml").data_stream.read() == b"b: 2\n"
    assert (c.tree / "clusters/a/x.yaml").data_stream.read() == b"a: 1\n"
    same = writeback.publish(sub, "x.yaml", "a: 1\n", "msg\n", branch="other")
    assert not same.created and "other" not in repo.heads  # no empty commit, no branch
    assert repo.head.commit == base and not (sub / "factors").exists()


def test_not_a_repository_is_a_source_error(tmp_path: Path) -> None:
    from reconciler import errors

    with pytest.raises(errors.SourceError):
        writeback.publish(tmp_path, "f.yaml", "x", "x", branch="b")


def _reviewer_pushes(remote: Path, tmp: Path, branch: str) -> str:
    """A person clones the remote, adds a commit on the bot branch and pushes it."""
    other = git.Repo.clone_from(str(remote), tmp / "reviewer", branch=branch)
    (Path(other.working_dir) / "review.txt").write_text("looks odd, see H100\n")
    other.index.add(["review.txt"])
    actor = git.Actor("Reviewer", "reviewer@example.com")
    c = other.index.commit("review note", author=actor, committer=actor)
    other.remote("origin").push(f"{branch}:{branch}").raise_if_error()
    return c.hexsha


def test_push_is_a_compare_and_swap_against_the_fetched_branch(clone: Path, tmp_path: Path) -> None:
    """Issue 19.4 / 22.5: a reviewer's commit pushed after the learner fetched the branch
    is never overwritten: exit-2 error, the remote and the local branch stay as they were."""
    remote = git.Repo(clone.parent / "remote.git")
    first = writeback.publish(
        clone, "factors/learned.yaml", "a: 1\n", "m1\n", branch="bot", push=True
    )
    assert first.pushed and remote.commit("bot").hexsha == first.sha
    theirs = _reviewer_pushes(clone.parent / "remote.git", tmp_path, "bot")

    with pytest.raises(writeback.PushRejected, match="changed since it was fetched"):
        writeback.publish(clone, "factors/learned.yaml", "a: 2\n", "m2\n", branch="bot", push=True)
    assert remote.commit("bot").hexsha == theirs  # the reviewer's commit is still there
    assert git.Repo(clone).commit("bot").hexsha == first.sha  # nor did the local branch move

    # Fetched, the branch holds a commit the learner did not write: replacing it would drop
    # that commit, so the push is refused as well, naming it.
    git.Repo(clone).git.fetch("origin", "+refs/heads/bot:refs/remotes/origin/bot")
    with pytest.raises(writeback.PushRejected, match=r"did not write .*Reviewer"):
        writeback.publish(clone, "factors/learned.yaml", "a: 3\n", "m3\n", branch="bot", push=True)
    assert remote.commit("bot").hexsha == theirs


def test_push_replaces_the_learners_own_commit_and_fast_forwards(clone: Path) -> None:
    remote = git.Repo(clone.parent / "remote.git")
    first = writeback.publish(
        clone, "factors/learned.yaml", "a: 1\n", "m1\n", branch="bot", push=True
    )
    second = writeback.publish(
        clone, "factors/learned.yaml", "a: 2\n", "m2\n", branch="bot", push=True
    )
    assert second.created and remote.commit("bot").hexsha == second.sha != first.sha
    # a branch that does not exist yet must not exist when pushed: someone else's branch of
    # the same name, never fetched here, is not overwritten
    other = git.Repo.clone_from(str(clone.parent / "remote.git"), clone.parent / "o")
    other.git.push("origin", "main:refs/heads/taken")
    with pytest.raises(writeback.PushRejected):
        writeback.publish(
            clone, "factors/learned.yaml", "a: 3\n", "m3\n", branch="taken", push=True
        )
    assert remote.commit("taken").hexsha == remote.commit("main").hexsha


def test_an_unchanged_branch_is_not_reported_pushed_when_the_remote_moved(
    clone: Path, tmp_path: Path
) -> None:
    first = writeback.publish(
        clone, "factors/learned.yaml", "a: 1\n", "m1\n", branch="bot", push=True
    )
    theirs = _reviewer_pushes(clone.parent / "remote.git", tmp_path, "bot")
    with pytest.raises(writeback.PushRejected, match="changed since it was fetched"):
        writeback.publish(clone, "factors/learned.yaml", "a: 1\n", "m1\n", branch="bot", push=True)
    assert git.Repo(clone.parent / "remote.git").commit("bot").hexsha == theirs != first.sha

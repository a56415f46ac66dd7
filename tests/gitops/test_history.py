"""``cuctl history`` on a real Git repository: field-level changes, authors, moves followed."""

from __future__ import annotations

import json
from pathlib import Path

import git
from typer.testing import CliRunner

from reconciler import cli

for _name in ("plan", "history"):
    __import__(f"reconciler.cli.{_name}")

TENANT = "tenants/research-batch.yaml"


def _commit(repo: git.Repo, message: str, author: str) -> str:
    repo.git.add(A=True)
    actor = git.Actor(author, f"{author.lower()}@example.invalid")
    return repo.index.commit(message, author=actor, committer=actor).hexsha


def _edit(repo: git.Repo, rel: str, old: str, new: str) -> None:
    path = Path(repo.working_dir, rel)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _history(repo: git.Repo, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["history", str(repo.working_dir), *args])
    return result.exit_code, result.stdout, result.stderr


def test_tenant_history_shows_fields_authors_and_follows_a_move(example_repo: git.Repo) -> None:
    first = example_repo.head.commit.hexsha
    _edit(example_repo, TENANT, "priority: 300", "priority: 500")
    raised = _commit(example_repo, "Raise research priority", "Alice")
    Path(example_repo.working_dir, "teams").mkdir()
    example_repo.git.mv(TENANT, "teams/research.yaml")
    moved = _commit(example_repo, "Group tenants by team", "Carol")
    _edit(example_repo, "teams/research.yaml", "guaranteed: 1600", "guaranteed: 2000")
    quota = _commit(example_repo, "More batch quota for research", "Bob")
    _edit(example_repo, "teams/research.yaml", "# Research:", "# Research team:")
    _commit(example_repo, "Comment only", "Dave")
    code, out, err = _history(example_repo, "--tenant", "research-batch", "-o", "json")
    assert code == 0, err
    entries = json.loads(out)["entries"]
    assert [(e["revision"], e["change"], e["author"]) for e in entries] == [
        (quota, "modified", "Bob"),
        (moved, "moved", "Carol"),
        (raised, "modified", "Alice"),
        (first, "added", "test"),
    ]
    assert entries[0]["fields"] == [
        {
            "path": "spec.quotas[pool=batch].guaranteed",
            "before": 1600,
            "after": 2000,
            "added": False,
            "removed": False,
        }
    ]
    assert entries[1]["previousPath"] == TENANT and entries[1]["path"] == "teams/research.yaml"
    assert entries[1]["fields"] == []
    assert [(f["path"], f["before"], f["after"]) for f in entries[2]["fields"]] == [
        ("spec.priority", 300, 500)
    ]
    code, text, _ = _history(example_repo, "--tenant", "research-batch")
    assert code == 0
    assert "spec.priority: 300 → 500" in text and "Alice <alice@example.invalid>" in text
    assert f"moved: {TENANT} → teams/research.yaml" in text


def test_claim_and_factor_history(example_repo: git.Repo) -> None:
    _edit(example_repo, "claims/ads-embedding/backfill.yaml", "count: 8", "count: 6")
    _commit(example_repo, "Fewer backfill replicas", "Erin")
    code, out, err = _history(example_repo, "--claim", "ads-batch/ads-backfill", "-o", "json")
    assert code == 0, err
    entries = json.loads(out)["entries"]
    assert [(f["path"], f["before"], f["after"]) for f in entries[0]["fields"]] == [
        ("spec.count", 8, 6)
    ]
    assert entries[0]["author"] == "Erin" and len(entries) == 2
    code, _, _ = _history(example_repo, "--claim", "other-ns/ads-backfill")
    assert code == 1, "a claim in another namespace is another claim"
    text = Path(example_repo.working_dir, "factors/default.yaml").read_text()
    start = text.index("- deviceModel: H100")
    value_at = text.index("value:", start)
    end = text.index("\n", value_at)
    old_line = text[value_at:end]
    Path(example_repo.working_dir, "factors/default.yaml").write_text(
        text[:value_at] + "value: 9.99" + text[end:]
    )
    _commit(example_repo, "H100 factor", "Frank")
    code, out, err = _history(example_repo, "--factors", "H100-SXM5-80GB", "-o", "json")
    assert code == 0, err
    newest = json.loads(out)["entries"][0]
    assert newest["author"] == "Frank"
    changes = [(f["path"], f["after"]) for f in newest["fields"]]
    assert len(changes) == 1 and changes[0][1] == 9.99, (old_line, changes)
    assert changes[0][0].startswith("[table=default,deviceModel=H100-SXM5-80GB,workloadClass=")


def test_exactly_one_subject_is_required(example_repo: git.Repo) -> None:
    code, _, err = _history(example_repo, "--tenant", "a", "--pool", "b")
    assert code == 2 and "exactly one" in err
    code, _, err = _history(example_repo, "--tenant", "nobody")
    assert code == 1 and "no commit changed Tenant nobody" in err

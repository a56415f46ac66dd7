"""``cuctl history`` at ``git log`` speed and under validation's bounds (issues 20 and 23).

Histories are built with ``git fast-import``: the example repository, then commits that edit
one tenant, merges, and hostile old commits (alias bombs, deep nesting, odd dates, terminal
escapes in names, subjects and values).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import gitplumbing
import pytest
from typer.testing import CliRunner

from reconciler import _yamlcore, cli
from reconciler.source import history as hist

for _name in ("plan", "history"):
    __import__(f"reconciler.cli.{_name}")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
TENANT = "tenants/research-batch.yaml"
BASE = (EXAMPLE / TENANT).read_bytes()


def _priority(n: int) -> bytes:
    return BASE.replace(b"priority: 300", b"priority: %d" % n)


def _history(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["history", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def _linear(tmp_path: Path, n: int) -> Path:
    root = gitplumbing.init(tmp_path / "repo")
    s = gitplumbing.Stream()
    s.commit(gitplumbing.Commit("example", dict(gitplumbing.tree_files(EXAMPLE))))
    for i in range(n):
        s.commit(
            gitplumbing.Commit(
                f"change {i}", {TENANT: _priority(301 + i)}, author=f"A{i} <a{i}@x.invalid>"
            )
        )
    gitplumbing.run(root, s)
    return root


def test_the_index_answers_warm_queries_and_grows_one_commit_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _linear(tmp_path, 120)
    cold = hist.history(str(root), hist.document("Tenant", "research-batch"))
    assert len(cold) == 121 and cold[0].author == "A119" and cold[-1].change == "added"
    assert [(f.path, f.before, f.after) for f in cold[0].fields] == [("spec.priority", 419, 420)]
    assert (root / ".git" / "cu-reconciler").is_dir(), "the index lives under the Git directory"
    assert hist.walk(str(root), hist.document("Tenant", "research-batch"), limit=5).truncated

    def no_parsing(*args: object, **kwargs: object) -> object:
        raise AssertionError("a warm query parses nothing")

    monkeypatch.setattr(_yamlcore, "plain_documents", no_parsing)
    warm = hist.history(str(root), hist.document("Tenant", "research-batch"))
    assert warm == cold
    monkeypatch.undo()

    s = gitplumbing.Stream()
    s.commit(gitplumbing.Commit("one more", {TENANT: _priority(999)}, from_="refs/heads/main^0"))
    gitplumbing.run(root, s)
    parsed: list[int] = []
    real = _yamlcore.plain_documents

    def counting(text: str, **kwargs: int) -> list[object]:
        parsed.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(_yamlcore, "plain_documents", counting)
    newer = hist.history(str(root), hist.document("Tenant", "research-batch"))
    assert len(newer) == 122 and newer[0].subject == "one more"
    assert len(parsed) == 1, "only the new commit's new blob is parsed (its parent is cached)"


def test_a_merged_change_is_credited_to_its_author_not_the_merger(tmp_path: Path) -> None:
    root = gitplumbing.init(tmp_path / "repo")
    s = gitplumbing.Stream()
    base = s.commit(gitplumbing.Commit("example", dict(gitplumbing.tree_files(EXAMPLE))))
    s.commit(
        gitplumbing.Commit(
            "Raise research priority",
            {TENANT: _priority(500)},
            author="Alice <alice@x.invalid>",
            branch="refs/heads/feature",
            from_=f":{base}",
        )
    )
    s.commit(
        gitplumbing.Commit(
            "Unrelated", {"README.md": b"hello\n"}, author="Bob <bob@x.invalid>", from_=f":{base}"
        )
    )
    s.commit(
        gitplumbing.Commit(
            "Merge feature",
            {TENANT: _priority(500)},  # fast-import writes the merged tree as given
            author="Mallory <m@x.invalid>",
            merge="refs/heads/feature",
        )
    )
    gitplumbing.run(root, s)
    code, out, err = _history(root, "--tenant", "research-batch", "-o", "json")
    assert code == 0, err
    newest = json.loads(out)["entries"][0]
    merge = subprocess.run(
        ["git", "rev-parse", "main"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    feature = subprocess.run(
        ["git", "rev-parse", "feature"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    assert newest["author"] == "Alice" and newest["subject"] == "Raise research priority"
    assert newest["revision"] == feature and newest["mergedIn"] == merge
    assert [(f["path"], f["before"], f["after"]) for f in newest["fields"]] == [
        ("spec.priority", 300, 500)
    ]


HOSTILE_NAME = "Eve \x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07 \x9b31m"


def test_hostile_old_commits_cost_a_warning_not_a_traceback_and_print_escaped(
    tmp_path: Path,
) -> None:
    bomb = b"a: &a [x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [".encode() + b", ".join([b"*" + prev.encode()] * 7) + b"]\n"
    deep = b"kind: ClusterSettings\nx: " + b"[" * 3000 + b"]" * 3000 + b"\n"
    root = gitplumbing.init(tmp_path / "repo")
    s = gitplumbing.Stream()
    s.commit(gitplumbing.Commit("example", dict(gitplumbing.tree_files(EXAMPLE))))
    s.commit(
        gitplumbing.Commit(
            "bomb",
            {"tenants/bomb.yaml": b"apiVersion: cu-reconciler.io/v1alpha1\nkind: Tenant\n" + bomb},
        )
    )
    s.commit(gitplumbing.Commit("deep", {".pre-commit-config.yaml": deep}))
    ours = b"apiVersion: cu-reconciler.io/v1alpha1\n" + deep.replace(b"ClusterSettings", b"CUPool")
    s.commit(gitplumbing.Commit("deep pool", {"pools/deep.yaml": ours}))
    s.commit(
        gitplumbing.Commit(
            "odd date \x1b[31mred",
            {TENANT: _priority(301)},
            author=f"{HOSTILE_NAME} <eve@x.invalid>",
            date="4102444800 -1259",
        )
    )
    value = BASE.replace(b"priority: 300", b'priority: 302\n  note: "\\e[5mblink\\u202e"')
    forged = "value \x01" + "f" * 40 + " :100644 100644 " + "0" * 40 + " M"
    s.commit(gitplumbing.Commit(forged, {TENANT: value}))
    s.commit(
        gitplumbing.Commit(
            "cleanup",
            {"tenants/bomb.yaml": None, ".pre-commit-config.yaml": None, "pools/deep.yaml": None},
        )
    )
    gitplumbing.run(root, s)
    for output in ("text", "json"):
        code, out, err = _history(root, "--tenant", "research-batch", "-o", output)
        assert code == 0, err
        for text in (out, err):
            assert "\x1b" not in text and "\x9b" not in text and "\u202e" not in text
            assert "\x07" not in text
        assert "Traceback" not in err
        assert "bomb.yaml" in err and "expands to more than" in err
        # Outside desired state (no cu-reconciler.io document): parsed under the same
        # bounds, refused, and not reported, as validate does not load it either.
        assert ".pre-commit-config.yaml" not in err
        assert "pools/deep.yaml" in err and "nested more than 1000 levels" in err
    code, out, _ = _history(root, "--tenant", "research-batch")
    assert "Eve \\x1b[2J" in out and "odd date \\x1b[31mred" in out
    assert "2100-01-01" in out or "2099-12-31" in out
    code, out, _ = _history(root, "--tenant", "research-batch", "-o", "json")
    entries = json.loads(out)["entries"]
    assert entries[1]["author"] == HOSTILE_NAME, "JSON escapes, and decodes to the same text"
    assert entries[0]["subject"].startswith("value \x01") and len(entries) == 3


def test_bounded_parse_refuses_what_validation_refuses() -> None:
    with pytest.raises(_yamlcore.Refused, match="nested more than"):
        _yamlcore.plain_documents("a: " + "[" * 3000 + "]" * 3000)
    with pytest.raises(_yamlcore.Refused, match="expands to more than"):
        text = "a: &a [x, x, x, x, x, x, x]\n"
        for level in "bcdefghi":
            prev = chr(ord(level) - 1)
            text += f"{level}: &{level} [" + ", ".join(["*" + prev] * 7) + "]\n"
        _yamlcore.plain_documents(text)
    with pytest.raises(_yamlcore.Refused, match="tag"):
        _yamlcore.plain_documents("a: !!python/object:os.system x\n")
    assert _yamlcore.plain_documents("a: 2024-13-45\nb: 1\n") == [{"a": "2024-13-45", "b": 1}]

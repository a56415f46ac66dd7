"""``cuctl validate``: output formats and exit codes 0/1/2, on real Git repositories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitrepo"
BROKEN_CLAIM = """\
apiVersion: cu-reconciler.io/v1alpha1
kind: CUClaim
metadata:
  name: broken
spec:
  tenant: ml-platform-dev
  pool: no-such-pool
  cu: 10
"""


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    for name in cli._COMMAND_MODULES:
        __import__(f"reconciler.cli.{name}")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    root = tmp_path / "desired"
    shutil.copytree(EXAMPLE, root)
    repo = git.Repo.init(root, initial_branch="main")
    repo.git.add(A=True)
    repo.index.commit("initial")
    return repo


def _break(repo: git.Repo, commit: bool) -> Path:
    root = Path(str(repo.working_tree_dir))
    target = root / "claims" / "ml-platform-dev" / "broken.yaml"
    target.write_text(BROKEN_CLAIM)
    if commit:
        repo.git.add(A=True)
        repo.index.commit("add a broken claim")
    return root


def test_example_is_valid(runner: CliRunner) -> None:
    code, out, err = invoke(runner, "validate", str(EXAMPLE))
    assert code == 0, out + err
    assert out == ""
    assert "valid" in err and "0 error(s)" in err


def test_text_output_is_file_line_col_code_message(runner: CliRunner, repo: git.Repo) -> None:
    root = _break(repo, commit=False)
    code, out, err = invoke(runner, "validate", str(root))
    assert code == 1
    assert out.splitlines() == [
        "claims/ml-platform-dev/broken.yaml:7:9: CU305: unknown pool 'no-such-pool'; define a "
        "CUPool with this name or fix the reference"
    ]
    assert err.startswith("INVALID ") and "1 error(s)" in err


def test_json_output(runner: CliRunner, repo: git.Repo) -> None:
    root = _break(repo, commit=False)
    code, out, _ = invoke(runner, "validate", str(root), "-o", "json")
    assert code == 1
    findings = json.loads(out)
    assert findings == [
        {
            "file": "claims/ml-platform-dev/broken.yaml",
            "line": 7,
            "column": 9,
            "code": "CU305",
            "severity": "error",
            "message": findings[0]["message"],
        }
    ]


def test_json_output_of_a_valid_repository_is_an_empty_list(runner: CliRunner) -> None:
    code, out, _ = invoke(runner, "validate", str(EXAMPLE), "-o", "json")
    assert (code, json.loads(out)) == (0, [])


def test_rev_checks_a_past_commit_and_a_branch(runner: CliRunner, repo: git.Repo) -> None:
    good = repo.head.commit.hexsha
    repo.git.checkout("-b", "pr/broken")
    root = _break(repo, commit=True)
    repo.git.checkout("main")
    assert invoke(runner, "validate", str(root), "--rev", "pr/broken")[0] == 1
    assert invoke(runner, "validate", str(root), "--rev", good)[0] == 0
    assert invoke(runner, "validate", str(root), "--rev", "main")[0] == 0
    code, _, err = invoke(runner, "validate", str(root), "--rev", "pr/broken~1")
    assert code == 0 and good[:12] in err


def test_rev_ignores_uncommitted_changes(runner: CliRunner, repo: git.Repo) -> None:
    root = _break(repo, commit=False)
    assert invoke(runner, "validate", str(root))[0] == 1
    assert invoke(runner, "validate", str(root), "--rev", "HEAD")[0] == 0


def test_unknown_revision_exits_2(runner: CliRunner, repo: git.Repo) -> None:
    code, out, err = invoke(runner, "validate", str(repo.working_tree_dir), "--rev", "nope")
    assert (code, out) == (2, "")
    assert "unknown revision" in err


def test_not_a_repository_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    code, _, err = invoke(runner, "validate", str(tmp_path), "--rev", "HEAD")
    assert code == 2 and "not a Git repository" in err


def test_missing_directory_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    assert invoke(runner, "validate", str(tmp_path / "missing"))[0] == 2


def test_warnings_pass_unless_strict(runner: CliRunner, repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    (root / "empty.yaml").write_text("# nothing yet\n")
    code, out, _ = invoke(runner, "validate", str(root))
    assert code == 0 and "CU116: warning:" in out
    assert invoke(runner, "validate", str(root), "--strict")[0] == 1


def test_committed_schemas_are_current(runner: CliRunner) -> None:
    code, _, err = invoke(runner, "schemas", str(ROOT / "schemas"), "--check")
    assert code == 0, err


def test_pre_commit_hook_definition() -> None:
    hooks = YAML(typ="safe").load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "cuctl-validate")
    assert hook["entry"].split()[:2] == ["cuctl", "validate"]
    assert hook["pass_filenames"] is False


def test_warnings_are_capped_with_a_count(runner: CliRunner, repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    for i in range(7):
        (root / f"empty-{i}.yaml").write_text("# nothing yet\n")
    code, out, _ = invoke(runner, "validate", str(root), "--max-warnings", "3")
    assert code == 0
    assert out.count("CU116: warning:") == 3
    assert "… 4 more warnings not shown" in out
    code, out, _ = invoke(runner, "validate", str(root), "--max-warnings", "0")
    assert out.count("CU116: warning:") == 7


def test_file_names_cannot_forge_lines_in_text_output(runner: CliRunner, repo: git.Repo) -> None:
    root = Path(str(repo.working_tree_dir))
    (root / "x.yaml\n::error file=cluster.yaml::forged.yaml").write_text("# nothing yet\n")
    code, out, _ = invoke(runner, "validate", str(root))
    assert code == 0
    assert not any(line.startswith("::error") for line in out.splitlines())
    assert "x.yaml\\n::error" in out


def test_a_fifo_does_not_hang_validate(runner: CliRunner, repo: git.Repo) -> None:
    import os

    root = Path(str(repo.working_tree_dir))
    os.mkfifo(root / "pipe.yaml")
    code, out, err = invoke(runner, "validate", str(root))
    assert code == 1, out + err
    assert "pipe.yaml:1:1: CU114: cannot read file: not a regular file" in out


def test_a_pool_for_the_rest_of_the_devices_is_valid(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    pool = root / "pools" / "dev.yaml"
    text = pool.read_text()
    start = text.index("  selector:")
    end = text.index("  sharing:")
    pool.write_text(text[:start] + "  selector: {}\n" + text[end:])
    code, out, err = invoke(runner, "validate", str(root))
    assert code == 0, out + err
    assert "CU402" not in out + err and "CU317" not in out + err

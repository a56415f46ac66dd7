"""``plan``/``render`` convert the snapshot validation already composed when they read the
same file: same output as reading it again, and every check of the observe stage kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    for name in ("validate", "plan"):
        __import__(f"reconciler.cli.{name}")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    return repo


def test_the_same_file_by_any_path_or_line_ending_plans_alike(
    runner: CliRunner, tmp_path: Path
) -> None:
    repo = _repo(tmp_path)
    committed = repo / "observed" / "snapshot.yaml"
    copy = tmp_path / "copy.yaml"  # same bytes elsewhere: shared
    copy.write_bytes(committed.read_bytes())
    crlf = tmp_path / "crlf.yaml"  # other bytes, same objects: parsed from the file
    crlf.write_bytes(committed.read_bytes().replace(b"\n", b"\r\n"))
    outputs = set()
    for observed in (committed, copy, crlf):
        code, out, err = invoke(runner, "plan", str(repo), "--observed", str(observed))
        assert code == 1, err
        outputs.add(out)
    code, out, err = invoke(runner, "plan", str(repo))
    assert code == 1, err
    outputs.add(out)
    assert len(outputs) == 1
    assert "=== create " in out


def test_a_snapshot_observe_refuses_is_refused_when_shared(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Validation tolerates a few YAML aliases; the observe stage refuses them in a snapshot.
    Reusing validation's nodes must not skip that check, with or without ``--observed``."""
    repo = _repo(tmp_path)
    snapshot = repo / "observed" / "snapshot.yaml"
    yaml = YAML(typ="safe")
    doc = yaml.load(snapshot.read_text())
    nodes = [i for i in doc["items"] if i["kind"] == "Node"]
    nodes[1]["metadata"]["labels"] = nodes[0]["metadata"]["labels"]  # dumped as &id / *id
    with snapshot.open("w") as f:
        yaml.dump(doc, f)
    assert b"*id001" in snapshot.read_bytes()
    code, out, err = invoke(runner, "validate", str(repo))
    assert code == 0, out + err
    for args in ([], ["--observed", str(snapshot)]):
        code, out, err = invoke(runner, "plan", str(repo), *args)
        assert code == 2, out + err
        assert "YAML aliases are not allowed in a snapshot" in err
        assert out == ""
    code, out, err = invoke(runner, "render", str(repo))
    assert code == 2 and "YAML aliases are not allowed in a snapshot" in err

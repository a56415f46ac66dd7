"""``admittedIdentities`` is validated against the username grammar (issue 18, item 1): a
hostile entry fails ``cuctl validate`` at its file and line and nothing is rendered."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import git
import pytest
from typer.testing import CliRunner

from reconciler import cli
from reconciler.model import codes
from reconciler.source import tree as source_tree
from reconciler.source import worktree
from reconciler.validate import validate_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
ANCHOR = b"  reconcilerNamespace: cu-system\n"


def _with_identities(*entries: str) -> source_tree.SourceTree:
    tree = worktree.read_worktree(str(EXAMPLE))
    files = dict(tree.files)
    # JSON strings are YAML double-quoted scalars: every hostile character survives intact.
    listed = b"".join(f"    - {json.dumps(e, ensure_ascii=False)}\n".encode() for e in entries)
    assert ANCHOR in files["cluster.yaml"]
    files["cluster.yaml"] = files["cluster.yaml"].replace(
        ANCHOR, ANCHOR + b"  admittedIdentities:\n" + listed
    )
    return source_tree.SourceTree(tree.revision, "x", files)


def _line_of_first_entry() -> int:
    text = (EXAMPLE / "cluster.yaml").read_bytes()
    return text[: text.index(ANCHOR)].count(b"\n") + 3


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param("x'] || true || 'a' in ['b", id="cel-injection"),
        pytest.param('a" || true || "', id="double-quote"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("alice\nbob", id="newline"),
        pytest.param("\u0430rgocd", id="cyrillic-look-alike"),
        pytest.param("alice\u202e", id="right-to-left-override"),
        pytest.param("system:anonymous", id="anonymous"),
        pytest.param("system:serviceaccounts:argocd", id="group"),
    ],
)
def test_a_hostile_identity_is_refused_at_its_line(identity: str) -> None:
    result = validate_tree(_with_identities(identity))
    assert result.state is None, "nothing renders"
    (d,) = result.errors
    assert (d.file, d.line, d.code) == (
        "cluster.yaml",
        _line_of_first_entry(),
        codes.Code.RULE_VIOLATED,
    )
    assert "admittedIdentities[0]" in d.message and repr(identity) in d.message
    assert "\n" not in d.render()


def test_a_legitimate_identity_with_an_apostrophe_is_valid() -> None:
    result = validate_tree(
        _with_identities("o'brien@example.com", "system:serviceaccount:cu-system:cu-sync")
    )
    assert result.ok and result.state is not None
    assert result.state.settings.spec.admitted_identities == [
        "o'brien@example.com",
        "system:serviceaccount:cu-system:cu-sync",
    ]


def test_cuctl_validate_exits_1_on_a_real_repository(tmp_path: Path) -> None:
    for name in cli._COMMAND_MODULES:
        __import__(f"reconciler.cli.{name}")
    root = tmp_path / "desired"
    shutil.copytree(EXAMPLE, root)
    cluster = root / "cluster.yaml"
    cluster.write_bytes(
        cluster.read_bytes().replace(
            ANCHOR, ANCHOR + b"  admittedIdentities: [\"x'] || true || 'a' in ['b\"]\n"
        )
    )
    repo = git.Repo.init(root, initial_branch="main")
    repo.git.add(A=True)
    repo.index.commit("hostile identity")
    result = CliRunner().invoke(cli.app, ["validate", str(root), "--rev", "HEAD"])
    assert result.exit_code == 1, result.output
    line = _line_of_first_entry() - 1
    assert f"cluster.yaml:{line}:" in result.stdout and "CU208" in result.stdout
    assert (
        "system:serviceaccount:<namespace>:<name>" in result.stdout or "username" in result.stdout
    )


@pytest.mark.parametrize(
    "identity",
    [
        "system:serviceaccount:argocd:argocd-application-controller",
        "system:serviceaccount:flux-system:kustomize-controller",
    ],
)
def test_an_engines_own_controller_is_a_warning_at_its_line(identity: str) -> None:
    result = validate_tree(_with_identities(identity))
    assert result.ok, "a single-tenant engine may do it; it is said, not refused"
    [d] = [d for d in result.diagnostics if d.code is codes.Code.SHARED_ENGINE_IDENTITY]
    assert (d.file, d.line) == ("cluster.yaml", _line_of_first_entry())
    assert "dedicated ServiceAccount" in d.message

"""``cuctl history --object`` in engine mode walks until it finds the producing revision or
says why it stopped (issue 23, item 4): the walk itself, on a real repository (the live
object's annotation is an input here; tests/gitops/test_snapshot_cluster.py reads one from
the real apiserver)."""

from __future__ import annotations

from pathlib import Path

import git
import gitplumbing
import pytest
import typer

from reconciler.cli import history as history_cli

SUB = "cluster"


def _repo(tmp_path: Path, unrelated: int, broken_at: int | None = None) -> Path:
    """examples/gitrepo under cluster/, then ``unrelated`` commits outside it (one of them,
    ``broken_at``, makes cluster/ invalid and the next repairs it)."""
    root = tmp_path / "repo"
    gitplumbing.init(root)
    s = gitplumbing.Stream()
    files = {f"{SUB}/{p}": d for p, d in gitplumbing.tree_files(gitplumbing.EXAMPLE).items()}
    s.commit(gitplumbing.Commit("example", dict(files), author="Alice <alice@x.invalid>"))
    for i in range(unrelated):
        change: dict[str, bytes | int | None] = {"notes.txt": b"%d\n" % i}
        if broken_at is not None and i == broken_at:
            change[f"{SUB}/pools/dev.yaml"] = b"kind: [\n"
        if broken_at is not None and i == broken_at + 1:
            change[f"{SUB}/pools/dev.yaml"] = files[f"{SUB}/pools/dev.yaml"]
        s.commit(gitplumbing.Commit(f"unrelated {i}", change, author="Bob <bob@x.invalid>"))
    gitplumbing.run(root, s, checkout=True)
    return root


def _quota(path: str) -> tuple[tuple[str, str, str], str]:
    hashes = history_cli._rendered_hashes(path, "HEAD")
    assert hashes, "the example renders"
    key = next((k for k in sorted(hashes) if k[0] == "ResourceQuota"), sorted(hashes)[0])
    return key, hashes[key]


def test_the_walk_goes_past_unrelated_commits_to_the_producing_one(tmp_path: Path) -> None:
    root = _repo(tmp_path, unrelated=60, broken_at=30)
    path = str(root / SUB)
    key, wanted = _quota(path)
    assert key[0] == "ResourceQuota", "every kind we write can be traced, ResourceQuota too"
    repo = git.Repo(root)
    first = repo.git.rev_list("--max-parents=0", "HEAD")
    found = history_cli._search(path, repo, "HEAD", key, wanted, max_commits=1000)
    assert found.found == first and found.stopped is None and found.walked == 61
    stopped = history_cli._search(path, repo, "HEAD", key, wanted, max_commits=50)
    assert stopped.stopped is not None and "raise --max-commits" in stopped.stopped
    assert "still renders this content" in stopped.stopped
    never = history_cli._search(path, repo, "HEAD", key, "not-a-hash", max_commits=1000)
    assert never.found is None and never.stopped is None and never.walked == 61


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ("ResourceQuota/team-a/cu-quota", "/api/v1/namespaces/team-a/resourcequotas/cu-quota"),
        ("DeviceClass/cu-x", "/apis/resource.k8s.io/v1/deviceclasses/cu-x"),
        (
            "ValidatingAdmissionPolicyBinding/fence",
            "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/fence",
        ),
    ],
)
def test_every_kind_we_write_has_a_path(spec: str, path: str) -> None:
    assert history_cli._object_path(spec)[2] == path


@pytest.mark.parametrize("spec", ["ResourceQuota/cu-quota", "DeviceClass/ns/x", "Node/n1"])
def test_wrong_scope_or_kind_is_refused(spec: str) -> None:
    with pytest.raises(typer.Exit):
        history_cli._object_path(spec)


def test_every_kind_render_emits_can_be_traced(tmp_path: Path) -> None:
    """--object accepts every kind the engine form of a render holds, the engine status too."""
    import shutil

    from ruamel.yaml import YAML
    from typer.testing import CliRunner

    from reconciler import cli

    root = tmp_path / "repo"
    shutil.copytree(gitplumbing.EXAMPLE, root)
    result = CliRunner().invoke(cli.app, ["render", str(root), "--status"])
    assert result.exit_code == 0, result.output
    rendered = {d["kind"] for d in YAML(typ="safe").load_all(result.stdout) if d}
    assert "CUEngineStatus" in rendered and "ResourceQuota" in rendered
    assert rendered <= set(history_cli._OBJECT_KINDS), rendered - set(history_cli._OBJECT_KINDS)

"""``cuctl snapshot`` against the real kube-apiserver, and ``--write --branch`` on a real repo.

Proves: the snapshot written from a live cluster is byte-identical on a second read (node
heartbeats and server bookkeeping do not leak in); it plans like the cluster it came from;
``--write --branch`` commits it to a branch with plumbing, leaving a dirty checkout on another
branch exactly as it was, and a second run makes no commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli, devcluster
from reconciler.devcluster import rawapi
from reconciler.devcluster import snapshot as devsnapshot

pytestmark = pytest.mark.integration

for _name in ("plan", "snapshot", "history"):
    __import__(f"reconciler.cli.{_name}")

EXAMPLE_SNAPSHOT = Path(__file__).resolve().parents[2] / "examples/gitrepo/observed/snapshot.yaml"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_snapshot_is_deterministic_and_written_to_a_branch_without_a_checkout(
    control_plane: devcluster.ControlPlane, example_repo: git.Repo
) -> None:
    with control_plane.api_client() as api:
        loaded = devsnapshot.load(api, EXAMPLE_SNAPSHOT)
    try:
        kubeconfig = str(control_plane.kubeconfig)
        code, first, err = _run("snapshot", "--kubeconfig", kubeconfig)
        assert code == 0, err
        code, second, _ = _run("snapshot", "--kubeconfig", kubeconfig)
        assert first == second
        items = YAML(typ="safe").load(first)["items"]
        kinds = {i["kind"] for i in items}
        assert {"Node", "ResourceSlice"} <= kinds
        assert not any("resourceVersion" in i["metadata"] for i in items)
        # The session's cluster is shared: other tests' slices may be there too.
        names = {i["metadata"]["name"] for i in items if i["kind"] == "ResourceSlice"}
        assert set(loaded.slices) <= names

        repo = example_repo
        root = Path(repo.working_dir)
        repo.git.checkout("-b", "feature")
        (root / "README.md").write_text("uncommitted work\n")
        before_status = repo.git.status("--porcelain")
        before_head = repo.head.commit.hexsha
        code, _, err = _run(
            "snapshot", str(root), "--kubeconfig", kubeconfig, "--write", "--branch", "bot/snap"
        )
        assert code == 1, err
        assert repo.git.status("--porcelain") == before_status
        assert repo.head.commit.hexsha == before_head and repo.active_branch.name == "feature"
        committed = repo.git.show("bot/snap:observed/snapshot.yaml") + "\n"
        assert committed == first
        assert repo.commit("bot/snap").parents[0].hexsha == repo.commit("main").hexsha
        code, _, err = _run(
            "snapshot", str(root), "--kubeconfig", kubeconfig, "--write", "--branch", "bot/snap"
        )
        assert code == 0 and "unchanged" in err
        assert len(list(repo.iter_commits("bot/snap"))) == 2

        # The committed snapshot is what render plans against: it renders at that branch.
        code, out, err = _run("render", str(root), "--rev", "bot/snap")
        assert code == 0, err
        assert any(o["kind"] == "ResourceSlice" for o in YAML(typ="safe").load_all(out) if o)
    finally:
        with control_plane.api_client() as api:
            devsnapshot.unload(api, loaded)


def test_history_of_a_live_object_names_the_commit_and_its_author(
    control_plane: devcluster.ControlPlane, example_repo: git.Repo
) -> None:
    """Reconciler mode: the object carries the revision that last changed it."""
    root = str(example_repo.working_dir)
    head = example_repo.head.commit.hexsha
    code, out, err = _run("render", root, "--rev", head, "--plain")
    assert code == 0, err
    cls = next(o for o in YAML(typ="safe").load_all(out) if o and o["kind"] == "DeviceClass")
    name = cls["metadata"]["name"]
    with control_plane.api_client() as api:
        path = f"/apis/resource.k8s.io/v1/deviceclasses/{name}"
        rawapi.apply(api, path, cls, field_manager="cu-reconciler")
        try:
            code, out, err = _run(
                "history",
                root,
                "--object",
                f"DeviceClass/{name}",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "-o",
                "json",
            )
            assert code == 0, err
            found = json.loads(out)
            assert found["revision"] == head and found["author"] == "test"
            assert "revision annotation" in found["how"]
            code, _, err = _run(
                "history",
                root,
                "--object",
                "DeviceClass/not-there",
                "--kubeconfig",
                str(control_plane.kubeconfig),
            )
            assert code == 2 and "not-there" in err
        finally:
            rawapi.delete(api, path)

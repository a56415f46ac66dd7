"""deploy/factors: the CronJob's script against a real bare remote, and its manifests
against the real apiserver (server-side dry run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler.cli import _app
from reconciler.cli import factors as _factors

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "factors"


def _env(tmp: Path, remote: Path, records: Path) -> dict[str, str]:
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    cuctl = bindir / "cuctl"  # the image's entry point, from this checkout
    cuctl.write_text(f'#!/bin/sh\nexec {sys.executable} -m reconciler.cli "$@"\n')
    cuctl.chmod(0o755)
    settings = dict(
        line.split("=", 1) for line in (DEPLOY / "settings.env").read_text().splitlines() if line
    )
    return {
        **os.environ,
        **settings,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "HOME": str(tmp),
        "TMPDIR": str(tmp),
        "REPO_URL": str(remote),
        "RECORDS": str(records),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }


def test_cronjob_script_pushes_a_review_branch_once(
    example_repo: git.Repo, synthetic_records: Path, tmp_path: Path
) -> None:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    example_repo.create_remote("origin", str(remote))
    example_repo.git.push("origin", "main:main")
    env = _env(tmp_path, remote, synthetic_records)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", str(DEPLOY / "fit.sh")], env=env, capture_output=True, text=True
        )

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    bare = git.Repo(remote)
    branch = env["BRANCH"]
    head = bare.commit(branch)
    assert head.message.startswith("factors(learned):")
    assert [p.hexsha for p in head.parents] == [bare.commit("main").hexsha]
    assert set(bare.git.diff("--name-only", "main", branch).split()) == {"factors/learned.yaml"}

    second = run()  # the next day, same records: the branch does not move
    assert second.returncode == 0, second.stderr[-3000:]
    assert "unchanged (already on the branch)" in second.stderr
    assert bare.commit(branch).hexsha == head.hexsha


def test_the_script_uses_only_flags_cuctl_has() -> None:
    script = (DEPLOY / "fit.sh").read_text()
    help_text = CliRunner().invoke(_app.app, ["factors", "fit", "--help"]).stdout
    assert _factors.DEFAULT_BRANCH
    for flag in ("--records", "--repo", "--base", "--write", "--branch", "--push", "--remote"):
        assert flag in script and flag in help_text, flag
    assert "--engine" in script and "--scheduler" in script and "--engine" in help_text


def test_kustomization_lists_existing_files() -> None:
    k = YAML(typ="safe").load((DEPLOY / "kustomization.yaml").read_text())
    for name in k["resources"]:
        assert (DEPLOY / name).is_file(), name
    for gen in k["configMapGenerator"]:
        for name in gen.get("files", []) + gen.get("envs", []):
            assert (DEPLOY / name).is_file(), name


@pytest.mark.integration
def test_manifests_pass_the_apiserver(api, namespace: str) -> None:  # type: ignore[no-untyped-def]
    """Server-side dry run of the ServiceAccount and CronJob, as kustomize renders them."""
    from reconciler.devcluster import rawapi

    docs = {}
    for name in ("serviceaccount.yaml", "cronjob.yaml"):
        doc = YAML(typ="safe").load((DEPLOY / name).read_text())
        doc["metadata"]["namespace"] = namespace
        docs[doc["kind"]] = doc
    job = docs["CronJob"]
    job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = (
        "ghcr.io/example/cu-reconciler:0.1.0"
    )
    sa = rawapi.request(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body=docs["ServiceAccount"],
        query={"dryRun": "All"},
    )
    assert sa["metadata"]["name"] == "cu-factors"
    out = rawapi.request(
        api,
        "POST",
        f"/apis/batch/v1/namespaces/{namespace}/cronjobs",
        body=job,
        query={"dryRun": "All"},
    )
    assert out["spec"]["schedule"] == "17 3 * * *"
    assert out["spec"]["concurrencyPolicy"] == "Forbid"


def _script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", str(DEPLOY / "fit.sh")], env=env, capture_output=True, text=True
    )


def _review_commit(remote: Path, work: Path, branch: str) -> str:
    """A person's commit on the bot branch, pushed to the remote."""
    r = git.Repo.clone_from(str(remote), work, branch=branch)
    (work / "REVIEW.md").write_text("H100 prefill looks high; keep this note\n")
    r.index.add(["REVIEW.md"])
    actor = git.Actor("Reviewer", "reviewer@example.invalid")
    sha = r.index.commit("review note", author=actor, committer=actor).hexsha
    r.remote("origin").push(f"{branch}:{branch}").raise_if_error()
    return sha


def test_script_distinguishes_changed_nothing_and_failed(
    example_repo: git.Repo, synthetic_records: Path, tmp_path: Path
) -> None:
    """Issue 22.2 / 19.4: exit codes and the last line say what happened; a reviewer's
    commit on the bot branch (pushed before the job, or while it runs) is never dropped."""
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    example_repo.create_remote("origin", str(remote))
    example_repo.git.push("origin", "main:main")
    env = _env(tmp_path, remote, synthetic_records)
    branch = env["BRANCH"]
    bare = git.Repo(remote)

    first = _script(env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip().splitlines()[-1].startswith("cu-factors: changed:")
    bot = bare.commit(branch).hexsha

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "r.csv").write_text(synthetic_records.read_text().splitlines()[0] + "\n")
    failed = _script({**env, "RECORDS": str(bad)})
    assert failed.returncode == 2, failed.stdout
    assert failed.stderr.strip().splitlines()[-1].startswith("cu-factors: failed (cuctl exit 2)")
    assert "Traceback" not in failed.stderr and bare.commit(branch).hexsha == bot

    # a reviewer's commit on the bot branch: the job refuses to drop it
    theirs = _review_commit(remote, tmp_path / "reviewer", branch)
    refused = _script(env)
    assert refused.returncode == 2, refused.stdout
    assert "did not write" in refused.stderr and "Reviewer" in refused.stderr
    assert "(pushed to origin)" not in refused.stderr
    assert bare.commit(branch).hexsha == theirs

    # a reviewer pushing while the job runs (after its fetch, before its push)
    bare.git.update_ref(f"refs/heads/{branch}", bot)
    racer = tmp_path / "race.sh"
    racer.write_text(
        "#!/bin/sh\nset -e\n"
        f"cd {tmp_path / 'reviewer'}\n"
        f"git fetch -q origin && git reset -q --hard {bot}\n"
        "echo racing >> REVIEW.md && git add REVIEW.md\n"
        "git -c user.name=Reviewer -c user.email=reviewer@example.invalid commit -qm race\n"
        f"git push -q -f origin HEAD:{branch}\n"
        f'exec {sys.executable} -m reconciler.cli "$@"\n'
    )
    racer.chmod(0o755)
    (tmp_path / "bin" / "cuctl").write_text(f'#!/bin/sh\nexec {racer} "$@"\n')
    other_records = tmp_path / "other.csv"  # new evidence: the job wants to move the branch
    lines = synthetic_records.read_text().splitlines(keepends=True)
    other_records.write_text("".join(lines[: len(lines) * 2 // 3]))
    raced = _script({**env, "RECORDS": str(other_records)})
    assert raced.returncode == 2, raced.stdout + raced.stderr[-2000:]
    assert "changed since it was fetched" in raced.stderr
    race_sha = git.Repo(tmp_path / "reviewer").head.commit.hexsha
    assert bare.commit(branch).hexsha == race_sha  # the racing commit survives

    # merged upstream: the same records have nothing more to say
    bare.git.update_ref("refs/heads/main", bot)
    (tmp_path / "bin" / "cuctl").write_text(
        f'#!/bin/sh\nexec {sys.executable} -m reconciler.cli "$@"\n'
    )
    nothing = _script(env)
    assert nothing.returncode == 0, nothing.stderr[-3000:]
    assert nothing.stdout.strip().splitlines()[-1].startswith("cu-factors: nothing to change")
    assert bare.commit(branch).hexsha == race_sha

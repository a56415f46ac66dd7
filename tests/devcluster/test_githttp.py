"""The smart-HTTP Git server for local bare repositories (what Flux fetches from in tests)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git

from reconciler.devcluster import githttp


def test_clone_fetch_and_refusal_over_http(tmp_path: Path) -> None:
    served = tmp_path / "served"
    origin = served / "desired.git"
    git.Repo.init(origin, bare=True, initial_branch="main")
    work = git.Repo.clone_from(str(origin), tmp_path / "work")
    with work.config_writer() as cfg:
        cfg.set_value("user", "name", "t")
        cfg.set_value("user", "email", "t@example.invalid")
    Path(work.working_dir, "a.yaml").write_text("a: 1\n")
    work.git.add(A=True)
    first = work.index.commit("one").hexsha
    work.git.push("origin", "HEAD:main")

    with githttp.GitHTTPServer(served) as server:
        url = server.url("desired.git")
        assert url.startswith("http://127.0.0.1:")
        clone = git.Repo.clone_from(url, tmp_path / "clone")
        assert clone.head.commit.hexsha == first
        # A new commit is fetched over the same server (upload-pack with a have line).
        Path(work.working_dir, "a.yaml").write_text("a: 2\n")
        work.git.add(A=True)
        second = work.index.commit("two").hexsha
        work.git.push("origin", "HEAD:main")
        clone.remotes.origin.pull("main")
        assert clone.head.commit.hexsha == second
        # Read only: a push over HTTP is refused, and the remote keeps its head.
        push = subprocess.run(
            ["git", "-C", clone.working_dir, "push", url, "HEAD:refs/heads/other"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert push.returncode != 0
        missing = subprocess.run(
            ["git", "ls-remote", server.url("nope.git")], capture_output=True, check=False
        )
        assert missing.returncode != 0
    assert git.Repo(origin).heads.main.commit.hexsha == second
    assert "other" not in [h.name for h in git.Repo(origin).heads]

"""Credentials in a repository URL stay out of every echo, and still reach git (issue 20.5)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path

import git
import pytest

from reconciler.controller import credentials, logs, mirror, outages


@pytest.mark.parametrize(
    ("url", "public", "user", "password"),
    [
        pytest.param(
            "https://x-access-token:ghp_abc@github.com/o/r.git",
            "https://github.com/o/r.git",
            "x-access-token",
            "ghp_abc",
            id="user-and-token",
        ),
        pytest.param(
            "https://ghp_abc@github.com/o/r.git",
            "https://github.com/o/r.git",
            "ghp_abc",
            "",
            id="token-as-user",
        ),
        pytest.param(
            "https://u:p%40ss@git.example.com:8443/r.git",
            "https://git.example.com:8443/r.git",
            "u",
            "p@ss",
            id="port-and-escaped",
        ),
        pytest.param("ssh://git@host/r.git", "ssh://git@host/r.git", None, None, id="ssh-user"),
        pytest.param("git@host:r.git", "git@host:r.git", None, None, id="scp-like"),
        pytest.param("/srv/git/r.git", "/srv/git/r.git", None, None, id="path"),
    ],
)
def test_split(url: str, public: str, user: str | None, password: str | None) -> None:
    got, secret = credentials.split(url)
    assert got == public
    if user is None:
        assert secret is None
    else:
        assert secret == credentials.Credentials(user, password or "")
        assert "ghp_abc" not in repr(secret) and "p@ss" not in repr(secret)


def test_redact_masks_every_url_in_a_text_but_an_ssh_user() -> None:
    text = (
        "fatal: unable to access 'https://x-access-token:ghp_abc@github.com/o/r.git/': 403; "
        "also http://tok@h/x and ssh://git@host/r.git and ssh://git:pw@host/r.git"
    )
    out = credentials.redact(text)
    assert "ghp_abc" not in out and "tok@" not in out and "pw@" not in out
    assert "https://***@github.com/o/r.git" in out
    assert "ssh://git@host/r.git" in out


def test_json_logs_are_redacted_and_carry_no_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure()
    log = logging.getLogger("cu-reconciler.test")
    try:
        raise ValueError("clone https://u:hunter2@git.example.com/r.git failed")
    except ValueError:
        log.exception("fetch failed", extra={"url": "https://u:hunter2@git.example.com/r.git"})
    line = capsys.readouterr().err.strip()
    assert "hunter2" not in line
    record = json.loads(line)
    assert record["error"].startswith("ValueError: clone https://***@git.example.com/r.git")
    assert "\n" not in record["error"] and "Traceback" not in line


def test_the_clone_holds_no_secret_and_git_gets_it_from_the_environment(tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    (tmp_path / "work" / "a").write_text("a")
    work.git.add(A=True)
    work.index.commit("a")
    work.git.push(str(remote), "main")
    _, secret = credentials.split(f"file://u:s3cr3t@localhost{remote}")
    assert secret is not None
    m = mirror.Mirror(f"file://{remote}", "main", tmp_path / "cache", credentials=secret)
    assert m.fetch() == work.head.commit.hexsha
    stored = b"".join(p.read_bytes() for p in (m.root / ".git").rglob("*") if p.is_file())
    assert b"s3cr3t" not in stored
    # The helper git is given answers with the credentials, from the environment only.
    env = {**os.environ, **credentials.git_env(secret)}
    answer = subprocess.run(
        ["git", "-C", str(m.root), "credential", "fill"],
        input="protocol=https\nhost=git.example.com\n\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=True,
    ).stdout
    assert "username=u\n" in answer and "password=s3cr3t\n" in answer


def test_an_unreachable_remote_fails_fast_without_a_prompt(tmp_path: Path) -> None:
    m = mirror.Mirror("https://127.0.0.1:9/nowhere.git", "main", tmp_path / "cache")
    from reconciler import errors

    with pytest.raises(errors.SourceError):
        m.fetch()


def test_a_path_outside_the_repository_is_refused(tmp_path: Path) -> None:
    from reconciler import errors

    m = mirror.Mirror(str(tmp_path / "r.git"), "main", tmp_path / "cache", "../..")
    with pytest.raises(errors.SourceError, match="leaves the repository"):
        m.fetch()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_an_outage_is_logged_once_then_reported_with_its_length() -> None:
    clock = [0.0]
    changes: list[bool] = []
    o = outages.Outages(
        on_change=changes.append, clock=lambda: clock[0], wall=lambda: f"t{clock[0]:.0f}"
    )
    o.failed("GET /x: 503 https://u:pw@h/")
    clock[0] = 30
    o.failed("GET /x: 503")
    assert o.down and o.take() is None
    clock[0] = 62
    o.succeeded()
    found = o.take()
    assert found is not None and found.seconds == 62 and found.start == "t0" and found.end == "t62"
    assert "pw" not in found.error
    assert changes == [False, True]
    assert o.take() is None

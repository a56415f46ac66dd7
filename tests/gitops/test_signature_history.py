"""Issue 19, items 1 and 2: signing covers every commit that reaches the cluster.

Real repositories: a bare remote, a pusher's clone and the reconciler's clone (fetching with
``+refs/heads/main``, as the controller's mirror does), long histories built with Git
plumbing: 10,000 commits with ``git fast-import`` (unsigned, as an attacker pushes them) and
3,000 real SSH-signed commit objects (:mod:`signed_history`; 10,000 signed ones are timed by
``bench/bench_signing.py``, not here). Proves, with no count cap:
an unsigned commit that removes ``signing`` under 10,000 empty commits is refused, with and
without a last verified revision; one unsigned commit among 3,000 signed ones is found; a
force-push is refused until a commit signed by a key trusted at the last verified revision
accepts it (naming it); a merge cannot pick the parent whose keys suit it; a broken-then-
restored ClusterSettings does not reset trust; ``cuctl render`` applies the same rule.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import git
import pytest
import signed_history as sh
from typer.testing import CliRunner

from reconciler import errors
from reconciler.cli import _app
from reconciler.model import documents as docs
from reconciler.source import signature

SETTINGS = "cluster.yaml"


def _commit(repo: git.Repo, message: str, key: sh.Key | None, *extra: str) -> str:
    repo.git.add(A=True)
    args = ["-c", "gpg.format=ssh"]
    if key is not None:
        args += ["-c", f"user.signingkey={key.path}"]
    cmd = ["git", *args, "commit", "-q", "--allow-empty", "-m", message, *extra]
    cmd.append("-S" if key is not None else "--no-gpg-sign")
    subprocess.run(cmd, cwd=repo.working_dir, check=True)
    return repo.head.commit.hexsha


def _signers(repo: git.Repo, lines: list[str] | None) -> None:
    path = Path(repo.working_dir, SETTINGS)
    text = path.read_text().split("\n  signing:")[0].rstrip("\n") + "\n"
    if lines is not None:
        text += "  signing:\n    sshAllowedSigners:\n" + "".join(f"      - {x}\n" for x in lines)
    path.write_text(text)


def _keys(*keys: sh.Key) -> docs.CommitSigning:
    return docs.CommitSigning(ssh_allowed_signers=[k.line for k in keys])


@pytest.fixture
def alice(tmp_path: Path) -> sh.Key:
    return sh.ssh_key(tmp_path, "alice")


@pytest.fixture
def mallory(tmp_path: Path) -> sh.Key:
    return sh.ssh_key(tmp_path, "mallory")


@pytest.fixture
def remotes(example_repo: git.Repo, tmp_path: Path, alice: sh.Key) -> tuple[git.Repo, git.Repo]:
    """(pusher's clone, reconciler's clone) of a bare remote whose main requires alice's
    signature from its second commit on."""
    _signers(example_repo, [alice.line])
    _commit(example_repo, "Require signed commits", alice)
    bare = tmp_path / "remote.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    example_repo.create_remote("origin", str(bare))
    example_repo.git.push("-q", "origin", "main")
    mirror = git.Repo.clone_from(str(bare), tmp_path / "mirror")
    return example_repo, mirror


def _fetch(mirror: git.Repo) -> str:
    mirror.git.fetch("-q", "origin", "+refs/heads/main:refs/remotes/origin/main")
    return mirror.commit("refs/remotes/origin/main").hexsha


def _clear_caches() -> None:
    signature._SETTINGS.clear()
    signature._VERIFIED.clear()


def test_unsigned_removal_under_10000_empty_commits_is_refused(
    remotes: tuple[git.Repo, git.Repo], alice: sh.Key
) -> None:
    pusher, mirror = remotes
    anchor = signature.Anchor(_fetch(mirror), _keys(alice))
    _signers(pusher, None)
    removal = _commit(pusher, "drop signing", None)
    head = sh.empty_commits(Path(pusher.working_dir), 10_000)
    pusher.git.push("-q", "origin", "main")
    assert _fetch(mirror) == head
    for given in (None, anchor):  # a fresh clone (render, plan), and the cluster's anchor
        with pytest.raises(errors.SignatureError, match=f"commit {removal[:12]} .*not signed"):
            signature.verify(mirror.working_dir, head, given)


def test_one_unsigned_commit_among_3000_signed_ones(example_repo: git.Repo, alice: sh.Key) -> None:
    repo = example_repo
    _signers(repo, [alice.line])
    start = _commit(repo, "Require signed commits", alice)
    root = Path(repo.working_dir)
    sh.signed_commits(root, 2_000, alice)  # 10,000: bench/bench_signing.py
    hidden = sh.signed_commits(root, 1, None, message="unsigned")
    head = sh.signed_commits(root, 1_000, alice)
    # The generator writes exactly what `git commit -S` writes: Git itself agrees.
    keys = _keys(alice)
    signature._git_verify(repo, head, keys, "test")
    with pytest.raises(errors.SignatureError, match=f"commit {hidden[:12]} .*not signed"):
        signature.verify(str(root), head)
    with pytest.raises(errors.SignatureError, match=f"commit {hidden[:12]} .*not signed"):
        signature.verify(str(root), head, signature.Anchor(start, keys))
    # From a last verified revision after it, only the 1,000 newer commits are checked.
    first_after = repo.git.rev_list("--reverse", f"{hidden}..{head}").split()[0]
    _clear_caches()
    verified = signature.verify(str(root), head, signature.Anchor(first_after, keys))
    assert verified is not None and verified.commits == 999 and "alice" in verified.signer


def test_in_process_verification_agrees_with_git(example_repo: git.Repo, alice: sh.Key) -> None:
    """A commit signed by ``git commit -S`` (ssh-keygen) verifies in-process; a tampered
    payload does not, and then Git is asked and refuses it too."""
    _signers(example_repo, [alice.line])
    sha = _commit(example_repo, "signed by git", alice)
    raw = bytes(example_repo.odb.stream(bytes.fromhex(sha)).read())
    split = signature._split_signed(raw)
    assert split is not None
    armored, payload = split
    assert signature._ssh_verify(armored, payload, _keys(alice)).startswith("alice@")
    assert signature._ssh_verify(armored, payload + b"x", _keys(alice)) == ""
    bob = sh.ssh_key(Path(example_repo.working_dir).parent, "bob")
    assert signature._ssh_verify(armored, payload, _keys(bob)) == ""


def test_force_push_is_refused_until_a_trusted_commit_accepts_it(
    remotes: tuple[git.Repo, git.Repo], alice: sh.Key, mallory: sh.Key, tmp_path: Path
) -> None:
    pusher, mirror = remotes
    start = _fetch(mirror)
    last = _commit(pusher, "applied change", alice)
    pusher.git.push("-q", "origin", "main")
    anchor = signature.Anchor(_fetch(mirror), _keys(alice))
    assert anchor.revision == last
    assert signature.verify(mirror.working_dir, last, anchor) is not None

    # A roll-back by force-push to an older, correctly signed commit: refused.
    pusher.git.reset("-q", "--hard", start)
    rewritten = _commit(pusher, "rewritten, signed by a trusted key", alice)
    pusher.git.push("-q", "--force", "origin", "main")
    head = _fetch(mirror)
    assert head == rewritten
    with pytest.raises(errors.SignatureError, match="does not contain the last verified"):
        signature.verify(mirror.working_dir, head, anchor)

    trailer = f"{signature.ACCEPT_TRAILER}: {last}"
    cases = [
        (mallory, trailer, "does not trust"),  # the right words, an untrusted key
        (alice, f"{signature.ACCEPT_TRAILER}: {start}", "does not contain"),  # another rev
        (None, trailer, "not signed"),
    ]
    for key, words, error in cases:
        pusher.git.reset("-q", "--hard", rewritten)
        _commit(pusher, "accept", key, "--trailer", words)
        pusher.git.push("-q", "--force", "origin", "main")
        with pytest.raises(errors.SignatureError, match=error):
            signature.verify(mirror.working_dir, _fetch(mirror), anchor)

    pusher.git.reset("-q", "--hard", rewritten)
    accepted = _commit(pusher, "Accept the rewritten history", alice, "--trailer", trailer)
    pusher.git.push("-q", "--force", "origin", "main")
    verified = signature.verify(mirror.working_dir, _fetch(mirror), anchor)
    assert verified is not None and verified.revision == accepted
    # The acceptance stands in for the anchor: what follows it is checked as usual.
    unsigned = _commit(pusher, "unsigned after the acceptance", None)
    pusher.git.push("-q", "origin", "main")
    with pytest.raises(errors.SignatureError, match=f"commit {unsigned[:12]} .*not signed"):
        signature.verify(mirror.working_dir, _fetch(mirror), anchor)

    # A fresh clone that never had the anchor commit (gone with the force-push): the same.
    url = f"file://{mirror.remotes.origin.url}"  # the protocol: only reachable objects
    fresh = git.Repo.clone_from(url, tmp_path / "fresh")
    with pytest.raises((git.BadName, ValueError)):
        fresh.commit(last)
    pusher.git.reset("-q", "--hard", accepted)
    pusher.git.push("-q", "--force", "origin", "main")
    fresh.git.fetch("-q", "origin", "+refs/heads/main:refs/remotes/origin/main")
    assert signature.verify(fresh.working_dir, accepted, anchor) is not None
    pusher.git.reset("-q", "--hard", rewritten)
    pusher.git.push("-q", "--force", "origin", "main")
    with pytest.raises(errors.SignatureError, match="does not contain the last verified"):
        signature.verify(fresh.working_dir, rewritten, anchor)


def test_a_merge_cannot_pick_the_parent_whose_keys_suit_it(
    example_repo: git.Repo, alice: sh.Key, mallory: sh.Key
) -> None:
    repo = example_repo
    before = repo.head.commit.hexsha  # no signing yet
    _signers(repo, [alice.line])
    main = _commit(repo, "Require signed commits", alice)
    repo.git.checkout("-q", "-b", "side", before)
    _signers(repo, [mallory.line])
    _commit(repo, "mallory's own settings (trust on first use on a branch)", mallory)
    # A merge whose FIRST parent is the side branch, signed by the key the side trusts.
    repo.git.merge("-q", "--no-ff", "--no-commit", "-s", "ours", main)
    merge = _commit(repo, "merge", mallory)
    assert repo.commit(merge).parents[1].hexsha == main
    with pytest.raises(errors.SignatureError, match=f"at its parent {main[:12]}"):
        signature.verify(str(repo.working_dir), merge)
    with pytest.raises(errors.SignatureError, match=f"at its parent {main[:12]}"):
        signature.verify(str(repo.working_dir), merge, signature.Anchor(main, _keys(alice)))


def test_broken_then_restored_settings_do_not_reset_trust(
    example_repo: git.Repo, alice: sh.Key, mallory: sh.Key
) -> None:
    repo = example_repo
    _signers(repo, [alice.line])
    _commit(repo, "Require signed commits", alice)
    path = Path(repo.working_dir, SETTINGS)
    good = path.read_text()
    path.write_text(good + "  : [unparseable\n")
    broken = _commit(repo, "break it", None)
    path.write_text(good)
    _signers(repo, [mallory.line])
    restored = _commit(repo, "restore it with my key", mallory)
    with pytest.raises(errors.SignatureError, match=f"commit {broken[:12]} .*not signed"):
        signature.verify(str(repo.working_dir), restored)


def test_render_refuses_an_unsigned_revision(example_repo: git.Repo, alice: sh.Key) -> None:
    repo = example_repo
    _signers(repo, [alice.line])
    signed = _commit(repo, "Require signed commits", alice)
    runner = CliRunner()
    root = str(repo.working_dir)
    ok = runner.invoke(_app.app, ["render", root, "--rev", signed])
    assert ok.exit_code == 0, ok.output
    ok = runner.invoke(_app.app, ["render", root])  # the plugin's form: the checkout at HEAD
    assert ok.exit_code == 0, ok.output
    unsigned = _commit(repo, "unsigned", None)
    for args in (["render", root, "--rev", unsigned], ["render", root]):
        result = runner.invoke(_app.app, args)
        assert result.exit_code == 2
        assert f"commit {unsigned[:12]}" in result.output and "not signed" in result.output
        assert "kind:" not in result.output  # nothing rendered
    # A working tree that differs from its signed HEAD is not what was signed.
    repo.git.reset("-q", "--hard", signed)
    Path(root, "tenants", "extra.yaml").write_text("# not committed\n")
    result = runner.invoke(_app.app, ["render", root])
    assert result.exit_code == 2 and "uncommitted" in result.output

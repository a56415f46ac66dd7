"""Issue 19 items 1-3 on the real control plane, through ``cuctl apply`` processes (each one a
"restarted controller with an empty cache"), from fresh clones of a bare remote.

- The delete guard: after an apply, a force-pushed commit that deletes every pool and sets
  ``maxDeleteFraction: 1.0`` is refused (the limits recorded on the Lease at the last apply
  are stricter), although the last-applied commit is not in the fetched history; nothing is
  written.
- Signing: after a signed revision is applied, a force-pushed history (signed by the same,
  trusted key) is refused because it does not contain the last verified revision, until a
  trusted commit accepts it (``Cu-Accept-History``); then it applies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from live_fleet import Fleet, owned

from reconciler import devcluster
from reconciler.apply import record as records
from reconciler.devcluster import identity, rawapi
from reconciler.source import signature

pytestmark = pytest.mark.integration

LEASE = "/apis/coordination.k8s.io/v1/namespaces/cu-system/leases/cu-reconciler"


@pytest.fixture
def sa_kubeconfig(control_plane: devcluster.ControlPlane, fleet: Fleet) -> Iterator[Path]:
    """The reconciler's kubeconfig; the Lease (and the record on it) is removed afterwards."""
    account = identity.install_rbac(fleet.admin)
    yield identity.service_account_kubeconfig(fleet.admin, control_plane.kubeconfig, *account)
    rawapi.delete(fleet.admin, LEASE)


@pytest.fixture
def bare(fleet: Fleet, tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    git.Repo.init(path, bare=True, initial_branch="main")
    fleet.repo.create_remote("origin", str(path))
    return path


def _apply(bare: Path, into: Path, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """A fresh clone (only what the remote has now), then one ``cuctl apply`` process."""
    git.Repo.clone_from(f"file://{bare}", into)
    cmd = [sys.executable, "-m", "reconciler.cli", "apply", str(into), "--rev", "HEAD"]
    return subprocess.run(
        [*cmd, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _versions(fleet: Fleet) -> dict[str, str]:
    return {o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in owned(fleet.admin)}


def _record(fleet: Fleet) -> records.Record | None:
    lease = rawapi.request(fleet.admin, "GET", LEASE)
    return records.parse(lease["metadata"].get("annotations") or {})


def test_a_force_pushed_mass_delete_cannot_lift_the_recorded_limit(
    fleet: Fleet, bare: Path, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    repo, root = fleet.repo, Path(fleet.repo.working_dir)
    repo.git.push("-q", "origin", "main")
    first = _apply(bare, tmp_path / "clone-1", sa_kubeconfig)
    assert first.returncode == 0, first.stderr
    record = _record(fleet)
    assert record is not None and record.revision == repo.head.commit.hexsha
    assert record.safety is not None and record.safety.max_delete_fraction == 0.3
    applied = repo.head.commit.hexsha

    for folder in ("pools", "tenants", "claims"):
        for path in (root / folder).rglob("*.yaml"):
            path.unlink()
    policy = root / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("maxDeleteFraction: 0.3", "maxDeleteFraction: 1.0")
    )
    repo.git.add(A=True)
    repo.git.commit("-q", "--amend", "-m", "Delete every pool (and lift the guard)")
    repo.git.push("-q", "--force", "origin", "main")
    before = _versions(fleet)
    second = _apply(bare, tmp_path / "clone-2", sa_kubeconfig)
    with pytest.raises((git.BadName, ValueError)):
        git.Repo(tmp_path / "clone-2").commit(applied)  # not in the fetched history
    assert second.returncode == 2, second.stderr
    assert "PlanRefused" in second.stderr
    assert "limits recorded at the last apply: maxDeleteFraction 0.3" in second.stderr
    assert _versions(fleet) == before, "nothing written"


def _ssh_key(tmp: Path, name: str) -> tuple[Path, str]:
    path = tmp / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    public = (tmp / f"{name}.pub").read_text().split()
    return path, f"{name}@example.invalid {public[0]} {public[1]}"


def _signed_commit(repo: git.Repo, key: Path, message: str, *extra: str) -> str:
    repo.git.add(A=True)
    subprocess.run(
        [
            "git",
            "-c",
            "gpg.format=ssh",
            "-c",
            f"user.signingkey={key}",
            "commit",
            "-q",
            "-S",
            "--allow-empty",
            "-m",
            message,
            *extra,
        ],
        cwd=repo.working_dir,
        check=True,
    )
    return repo.head.commit.hexsha


def test_a_force_push_is_refused_across_processes_until_accepted(
    fleet: Fleet, bare: Path, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    repo, root = fleet.repo, Path(fleet.repo.working_dir)
    base = repo.head.commit.hexsha
    key, line = _ssh_key(tmp_path, "alice")
    settings = root / "cluster.yaml"
    settings.write_text(
        settings.read_text() + f"  signing:\n    sshAllowedSigners:\n      - {line}\n"
    )
    signed = _signed_commit(repo, key, "Require signed commits")
    repo.git.push("-q", "origin", "main")
    first = _apply(bare, tmp_path / "clone-1", sa_kubeconfig)
    assert first.returncode == 0, first.stderr
    record = _record(fleet)
    assert record is not None and record.revision == signed
    assert record.signing is not None and record.signing.ssh_allowed_signers == [line]
    assert json.loads(
        rawapi.request(fleet.admin, "GET", LEASE)["metadata"]["annotations"][records.SIGNING]
    )["sshAllowedSigners"] == [line]

    # Rewritten: the same settings, signed by the same trusted key, but not on top of `signed`.
    repo.git.reset("-q", "--hard", base)
    settings.write_text(
        settings.read_text() + f"  signing:\n    sshAllowedSigners:\n      - {line}\n"
    )
    rewritten = _signed_commit(repo, key, "Require signed commits (rewritten)")
    repo.git.push("-q", "--force", "origin", "main")
    before = _versions(fleet)
    second = _apply(bare, tmp_path / "clone-2", sa_kubeconfig)
    assert second.returncode == 2, second.stderr
    assert "UntrustedRevision" in second.stderr
    assert f"does not contain the last verified revision {signed[:12]}" in second.stderr
    assert _versions(fleet) == before

    accepted = _signed_commit(
        repo, key, "Accept the rewritten history", "--trailer",
        f"{signature.ACCEPT_TRAILER}: {signed}",
    )  # fmt: skip
    repo.git.push("-q", "origin", "main")
    third = _apply(bare, tmp_path / "clone-3", sa_kubeconfig)
    assert third.returncode == 0, third.stderr
    record = _record(fleet)
    assert record is not None and record.revision == accepted
    assert rewritten != signed

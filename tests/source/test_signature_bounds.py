"""The signing walk reads ClusterSettings with the loader's bounds: a hostile file outside the
layout (issue 20.3: a 3,000-deep list in ``.pre-commit-config.yaml`` that mentions
ClusterSettings) cannot crash it, and the real settings are still the ones found."""

from __future__ import annotations

from pathlib import Path

import git
import gitplumbing

from reconciler.source import signature

KEY = b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
SETTINGS = b"""apiVersion: cu-reconciler.io/v1alpha1
kind: ClusterSettings
metadata: {name: c}
spec:
  driverName: cu.example.com
  reference: {deviceModel: A100-SXM4-80GB, cuPerDevice: 100}
  signing:
    sshAllowedSigners: ["platform@example.invalid KEY"]
""".replace(b"KEY", KEY)


def test_a_deep_file_outside_the_layout_does_not_wedge_the_signing_walk(tmp_path: Path) -> None:
    root = gitplumbing.init(tmp_path / "repo")
    deep = b"kind: ClusterSettings\nx: " + b"[" * 3000 + b"]" * 3000 + b"\n"
    stream = gitplumbing.Stream()
    stream.commit(gitplumbing.Commit("settings", {"cluster.yaml": SETTINGS}))
    stream.commit(gitplumbing.Commit("hook config", {".pre-commit-config.yaml": deep}))
    gitplumbing.run(root, stream)
    head = git.Repo(root).commit("HEAD")
    found = signature.signing_at(head)
    assert found is not None and found.ssh_allowed_signers

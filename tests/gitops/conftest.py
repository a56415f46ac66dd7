"""Fixtures shared by the tests that run a real Argo CD (built by hack/build-argocd.sh)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import devcluster
from reconciler.devcluster import argocd


@pytest.fixture(scope="module")
def argo_bin_dir() -> Path:
    """The cached Argo CD build (built on a cold cache: several minutes)."""
    return argocd.build()


@pytest.fixture(scope="module")
def argo(
    control_plane: devcluster.ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
    argo_bin_dir: Path,
) -> Iterator[argocd.ArgoCD]:
    """Argo CD (controller, repo-server, plugin server, Redis) on the session's control plane."""
    running = argocd.start(control_plane, tmp_path_factory.mktemp("argocd"), argo_bin_dir)
    try:
        yield running
    finally:
        running.stop()

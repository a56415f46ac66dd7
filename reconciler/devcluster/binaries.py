"""Locate the control-plane binaries, building them with ``hack/build-k8s.sh`` when needed.

The build script is the single owner of versions, cache keys and build flags; this module
never recomputes them. It runs the script (a warm run only hashes a few files) and reads the
``KUBE_BIN_DIR=...`` and ``ETCD_BIN_DIR=...`` lines it prints. The script's exit code 3 (no
usable Go toolchain) and 4 (module download failed) become :class:`ToolchainError`, so tests
can skip loudly when Go is absent and fail loudly for everything else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ToolchainError

#: Exit codes of hack/build-k8s.sh that mean "the toolchain or a module is missing".
_TOOLCHAIN_EXIT_CODES = {3, 4}

COMPONENTS = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")
#: Built alongside the control plane but not part of it: a client and the node agent.
TOOLS = ("kubectl", "kubelet")


@dataclass(frozen=True, slots=True)
class Binaries:
    """Absolute paths of the control-plane executables, kubectl and kubelet."""

    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubectl: Path
    kubelet: Path

    def path(self, component: str) -> Path:
        """The executable of ``component`` (one of :data:`COMPONENTS` or :data:`TOOLS`)."""
        return Path(getattr(self, component.replace("-", "_")))


def repo_root() -> Path:
    """The checkout that contains ``hack/build-k8s.sh``; found from this file, not the cwd."""
    return Path(__file__).resolve().parents[2]


def build_script() -> Path:
    return repo_root() / "hack" / "build-k8s.sh"


def tool_dir(script: str, variable: str) -> Path:
    """Run ``hack/<script>`` (it builds when its cache is cold) and return the directory it
    prints as ``<variable>=...``: how the GitOps tools' builds hand over their binaries."""
    proc = subprocess.run(
        [str(repo_root() / "hack" / script)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ToolchainError(
            f"hack/{script} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith(f"{variable}="):
            return Path(line.split("=", 1)[1])
    raise ToolchainError(f"hack/{script} printed no {variable}")


def go_available() -> bool:
    """Whether a ``go`` command is on PATH (the only reason integration tests may skip)."""
    return shutil.which("go") is not None


def ensure_built(*, quiet: bool = False) -> Binaries:
    """Build (or find cached) binaries and return their paths.

    Progress of a cold build goes to our stderr as the script prints it, unless ``quiet``.
    Raises :class:`ToolchainError` when Go or a module is missing; ``RuntimeError`` with the
    script's output for any other failure (a compile error is a bug to see, not to skip).
    """
    script = build_script()
    if not script.is_file():
        raise ToolchainError(f"{script} is missing; is this a cu-reconciler checkout?")
    proc = subprocess.run(
        ["bash", str(script)],
        cwd=repo_root(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    if proc.returncode in _TOOLCHAIN_EXIT_CODES:
        raise ToolchainError(
            f"hack/build-k8s.sh could not build the control plane (exit {proc.returncode}); "
            "its message above says what is missing"
        )
    if proc.returncode != 0:
        raise RuntimeError(f"hack/build-k8s.sh failed with exit code {proc.returncode}")
    return _parse(proc.stdout)


def cached() -> Binaries | None:
    """The cached binaries if the current pins are built, without building anything."""
    proc = subprocess.run(
        ["bash", str(build_script()), "--print"],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    return _parse(proc.stdout) if proc.returncode == 0 else None


def _parse(stdout: str) -> Binaries:
    dirs = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    try:
        kube, etcd = Path(dirs["KUBE_BIN_DIR"]), Path(dirs["ETCD_BIN_DIR"])
    except KeyError as exc:
        raise RuntimeError(f"hack/build-k8s.sh printed no {exc.args[0]}: {stdout!r}") from exc
    bins = Binaries(
        etcd=etcd / "etcd",
        kube_apiserver=kube / "kube-apiserver",
        kube_scheduler=kube / "kube-scheduler",
        kube_controller_manager=kube / "kube-controller-manager",
        kubectl=kube / "kubectl",
        kubelet=kube / "kubelet",
    )
    for name in COMPONENTS + TOOLS:
        if not os.access(bins.path(name), os.X_OK):
            raise RuntimeError(f"{bins.path(name)} is not an executable; rerun hack/build-k8s.sh")
    return bins

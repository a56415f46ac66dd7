"""Real Flux controllers (source-controller, kustomize-controller) on the local control plane.

Built from Go modules by ``hack/build-flux.sh`` (pinned in ``hack/versions.env``, cached like the
control plane), run as plain processes with the admin kubeconfig, as Flux runs them in
``flux-system``: the CRDs of both controllers installed first, leader election off, all
namespaces watched. source-controller serves the artifacts it fetched over HTTP on 127.0.0.1 (its
advertised storage address), where kustomize-controller downloads them.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler import errors
from reconciler.devcluster import argocd, binaries, controlplane, identity, rawapi

NAMESPACE = "flux-system"
_MANAGER = "flux-harness"
CONTROLLERS = ("source-controller", "kustomize-controller")


def build() -> Path:
    """The directory holding both controllers and ``crds/`` (building them when not cached)."""
    script = binaries.repo_root() / "hack" / "build-flux.sh"
    proc = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise errors.ToolchainError(
            f"hack/build-flux.sh failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith("FLUX_BIN_DIR="):
            return Path(line.split("=", 1)[1])
    raise errors.ToolchainError("hack/build-flux.sh printed no FLUX_BIN_DIR")


@dataclass(slots=True)
class Flux:
    workdir: Path
    processes: dict[str, controlplane._Process] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path} -----\n" + "\n".join(text))
        return "\n".join(parts)

    def wait_for(self, probe: Any, timeout: float, what: str) -> Any:
        """Poll ``probe`` each second until truthy; on timeout fail with both controllers' logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tail()}"
        )

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            controlplane._terminate(self.processes[name], 10.0)
        self.processes.clear()


def install(api: ApiClient, bin_dir: Path) -> None:
    """Every CRD both controllers watch (they do not start without them) and ``flux-system``."""
    names = []
    for path in sorted((bin_dir / "crds").glob("*.yaml")):
        crd = YAML(typ="safe").load(path.read_text())
        name = crd["metadata"]["name"]
        rawapi.apply(
            api,
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            crd,
            field_manager=_MANAGER,
        )
        names.append(name)
    for name in names:
        argocd._wait(lambda n=name: argocd._established(api, n), 60, f"CRD {name}")
    identity.ensure_namespace(api, NAMESPACE)


def start(cp: controlplane.ControlPlane, workdir: Path, bin_dir: Path) -> Flux:
    """Install the CRDs, then start source-controller and kustomize-controller."""
    with cp.api_client() as api:
        install(api, bin_dir)
    flux = Flux(workdir)
    flux.log_dir.mkdir(parents=True, exist_ok=True)
    (workdir / "storage").mkdir(exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    storage, *ports = controlplane._free_ports(5)
    env = {
        **os.environ,
        "KUBECONFIG": str(cp.kubeconfig),
        "RUNTIME_NAMESPACE": NAMESPACE,
        "TMPDIR": str(workdir / "tmp"),
    }
    common = ["--enable-leader-election=false", "--log-encoding=console", "--log-level=info"]
    args = {
        "source-controller": [
            f"--storage-path={workdir / 'storage'}",
            f"--storage-addr=127.0.0.1:{storage}",
            f"--storage-adv-addr=127.0.0.1:{storage}",
            f"--metrics-addr=127.0.0.1:{ports[0]}",
            f"--health-addr=127.0.0.1:{ports[1]}",
        ],
        "kustomize-controller": [
            f"--metrics-addr=127.0.0.1:{ports[2]}",
            f"--health-addr=127.0.0.1:{ports[3]}",
            "--no-remote-bases=true",
        ],
    }
    for name in CONTROLLERS:
        flux.processes[name] = argocd._spawn(
            name, bin_dir / name, [str(bin_dir / name), *args[name], *common], flux.log_dir, env
        )
    return flux

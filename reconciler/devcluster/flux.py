"""Real Flux controllers (source-controller, kustomize-controller) on the local control plane.

Built from Go modules by ``hack/build-flux.sh`` (pinned in ``hack/versions.env``, cached like the
control plane), run as plain processes with the admin kubeconfig, as Flux runs them in
``flux-system``: the CRDs of both controllers installed first, leader election off, all
namespaces watched. source-controller serves the artifacts it fetched over HTTP on 127.0.0.1 (its
advertised storage address), where kustomize-controller downloads them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler.devcluster import binaries, controlplane, identity, rawapi, supervised, workloads

NAMESPACE = "flux-system"
_MANAGER = "flux-harness"
CONTROLLERS = ("source-controller", "kustomize-controller")


def build() -> Path:
    """The directory holding both controllers and ``crds/`` (building them when not cached)."""
    return binaries.tool_dir("build-flux.sh", "FLUX_BIN_DIR")


class Flux(supervised.Supervised):
    """source-controller and kustomize-controller, as processes."""


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
        established = functools.partial(supervised.crd_established, api, name)
        workloads.wait_for(established, timeout=60, what=f"CRD {name}")
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
        flux.spawn(name, [str(bin_dir / name), *args[name], *common], env)
    return flux

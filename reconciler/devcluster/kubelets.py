"""Real kubelets on the local control plane, each with the fake CRI runtime and DRA plugins.

Why: API-only Nodes stop at "the scheduler allocated the claim". A real kubelet (v1.37, from
the same build) runs the Pod through ``NodePrepareResources`` of every driver in the
allocation, which is where a missing or broken plugin shows. The container runtime is
``cu-fake-cri`` (``k8s.io/cri-client/pkg/fake``): no containers run, but every
CreateContainer request is recorded with its CDI devices resolved, so tests read what a
container would have been given. Recipe and sandbox settings: shared/research/real-kubelet.md.

Shape of one kubelet node (short root under /tmp: unix socket paths are limited to 107 bytes)::

    <root>/kubelet/          --root-dir: plugins_registry/, plugins/<driver>/, pods/
    <root>/cdi/              CDI specs written by the plugins, read by the fake runtime
    <root>/cri.sock          the fake runtime
    <root>/containers.jsonl  one JSON line per CreateContainer (cu-fake-cri Record)
    <root>/kubelet.yaml      KubeletConfiguration
    <workdir>/logs/<node>-<component>.log

Every process runs in its own session; :meth:`KubeletNode.stop` stops them all, and single
components can be killed and restarted (:meth:`KubeletNode.kill`, :meth:`KubeletNode.start`)
to prove restart behaviour.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler.devcluster import binaries as binaries_mod
from reconciler.devcluster import controlplane, drivers, rawapi

CU_DRIVER = "cu.cu-reconciler.io"
PLUGIN_NAMESPACE = "cu-system"
"""Namespace of the plugins' presence Leases (the reconciler's namespace by default)."""
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


class PluginBuildError(RuntimeError):
    """``hack/build-plugin.sh`` failed."""


@dataclass(frozen=True, slots=True)
class PluginBinaries:
    plugin: Path
    fake_cri: Path


def build_plugin() -> PluginBinaries:
    """Build (or find cached) the kubelet plugin and the fake runtime (hack/build-plugin.sh)."""
    script = binaries_mod.repo_root() / "hack" / "build-plugin.sh"
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, check=False, env=os.environ.copy()
    )
    if proc.returncode != 0:
        raise PluginBuildError(f"hack/build-plugin.sh exit {proc.returncode}:\n{proc.stderr}")
    dirs = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    base = Path(dirs["PLUGIN_BIN_DIR"])
    return PluginBinaries(plugin=base / "cu-kubelet-plugin", fake_cri=base / "cu-fake-cri")


@dataclass(slots=True)
class KubeletNode:
    """One real kubelet node and the processes around it."""

    name: str
    root: Path
    log_dir: Path
    argv: dict[str, list[str]]
    binaries: dict[str, Path]
    processes: dict[str, controlplane._Process] = field(default_factory=dict)

    @property
    def cdi_dir(self) -> Path:
        return self.root / "cdi"

    @property
    def record(self) -> Path:
        return self.root / "containers.jsonl"

    def plugin_dir(self, driver: str = CU_DRIVER) -> Path:
        return self.root / "kubelet" / "plugins" / driver

    def checkpoint(self, driver: str = CU_DRIVER) -> dict[str, Any]:
        """The plugin's checkpoint of prepared claims ({} before the first prepare)."""
        path = self.plugin_dir(driver) / "checkpoint.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def containers(self) -> list[dict[str, Any]]:
        """Every CreateContainer request the fake runtime recorded, oldest first."""
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def cdi_specs(self) -> list[str]:
        return sorted(p.name for p in self.cdi_dir.glob("*.json"))

    def add_plugin(
        self, driver: str, binary: Path, kubeconfig: Path, *, cu: bool | None = None
    ) -> str:
        """Start a plugin for ``driver`` on this node (late, e.g. after a missing-plugin test);
        ``cu``: ours (default: when ``driver`` is the default CU driver name) or a vendor's."""
        key = f"plugin:{driver}"
        ours = driver == CU_DRIVER if cu is None else cu
        self.argv[key] = plugin_argv(binary, self.root, self.name, driver, kubeconfig, cu=ours)
        self.binaries[key] = binary
        self.start(key)
        return key

    def components(self) -> tuple[str, ...]:
        return tuple(self.argv)

    def start(self, component: str) -> None:
        """(Re)start one component: ``cri``, ``kubelet`` or ``plugin:<driver>``."""
        if component in self.processes and controlplane._alive(self.processes[component]):
            return
        log = self.log_dir / f"{self.name}-{component.replace(':', '-')}.log"
        self.processes[component] = controlplane._spawn(
            component, self.binaries[component], self.argv[component], log
        )

    def kill(self, component: str) -> None:
        """SIGKILL one component (a crash, not a graceful stop)."""
        proc = self.processes.pop(component, None)
        if proc is not None:
            _kill(proc)

    def alive(self, component: str) -> bool:
        proc = self.processes.get(component)
        return proc is not None and controlplane._alive(proc)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the kubelet first (it stops calling plugins), then plugins, then the runtime."""
        order = ["kubelet", *[c for c in self.processes if c.startswith("plugin:")], "cri"]
        for name in order:
            proc = self.processes.pop(name, None)
            if proc is not None:
                controlplane._terminate(proc, timeout)
        unmount_under(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def start_node(
    cp: controlplane.ControlPlane,
    api: ApiClient,
    name: str,
    *,
    vendor_drivers: Iterable[str] = (),
    cu_plugin: bool = True,
    labels: Mapping[str, str] | None = None,
    kube: binaries_mod.Binaries | None = None,
    plugins: PluginBinaries | None = None,
    timeout: float = 90.0,
    cu_driver: str = CU_DRIVER,
) -> KubeletNode:
    """Start a kubelet node ``name`` and wait until it is Ready and schedulable.

    ``vendor_drivers`` get a no-op plugin each (``--mode=vendor``); ``cu_plugin`` starts ours
    as ``cu_driver`` (ClusterSettings.spec.driverName of the repository it will serve).
    The node-lifecycle controller does not run here, so the not-ready taint the apiserver
    puts on a new Node is lifted once the kubelet reports Ready, as that controller would.
    """
    kube = kube or binaries_mod.ensure_built(quiet=True)
    plugins = plugins or build_plugin()
    root = Path(tempfile.mkdtemp(prefix="cuk-", dir="/tmp"))
    for sub in ("kubelet/plugins_registry", "kubelet/plugins", "cdi", "certs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    port, healthz = controlplane._free_ports(2)
    config = _kubelet_config(root, port, healthz, cp.feature_gates)
    (root / "kubelet.yaml").write_text(json.dumps(config, indent=2))
    node_labels = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    argv: dict[str, list[str]] = {
        "cri": [
            str(plugins.fake_cri),
            f"--endpoint=unix://{root}/cri.sock",
            f"--record={root}/containers.jsonl",
            f"--cdi-dirs={root}/cdi",
        ],
        "kubelet": [
            str(kube.kubelet),
            f"--config={root}/kubelet.yaml",
            f"--kubeconfig={cp.kubeconfig}",
            f"--root-dir={root}/kubelet",
            f"--cert-dir={root}/certs",
            f"--hostname-override={name}",
            "--node-ip=127.0.0.1",
            *([f"--node-labels={node_labels}"] if node_labels else []),
            "--v=2",
        ],
    }
    bins: dict[str, Path] = {"cri": plugins.fake_cri, "kubelet": kube.kubelet}
    drivers_wanted = ([cu_driver] if cu_plugin else []) + sorted(set(vendor_drivers))
    for driver in drivers_wanted:
        key = f"plugin:{driver}"
        # Ours by name: with a custom driverName ours is not CU_DRIVER, yet serves CU.
        ours = cu_plugin and driver == cu_driver
        argv[key] = plugin_argv(plugins.plugin, root, name, driver, cp.kubeconfig, cu=ours)
        bins[key] = plugins.plugin
    node = KubeletNode(name, root, cp.log_dir, argv, bins)
    ensure_namespace(api, PLUGIN_NAMESPACE)
    try:
        node.start("cri")
        _wait(lambda: (root / "cri.sock").exists(), timeout, f"{name}: fake CRI socket")
        node.start("kubelet")
        for driver in drivers_wanted:
            node.start(f"plugin:{driver}")
        wait_ready(api, node, timeout)
        if cu_plugin:
            wait_lease(api, name, timeout)
    except BaseException:
        node.stop()
        raise
    return node


def plugin_argv(
    binary: Path, root: Path, node: str, driver: str, kubeconfig: Path, *, cu: bool
) -> list[str]:
    """The plugin's command line: ``cu`` serves our claims, else a no-op vendor stand-in."""
    return [
        str(binary),
        f"--driver-name={driver}",
        f"--mode={'cu' if cu else 'vendor'}",
        f"--node-name={node}",
        f"--kubeconfig={kubeconfig}",
        f"--kubelet-registry-dir={root}/kubelet/plugins_registry",
        f"--plugin-dir={root}/kubelet/plugins/{driver}",
        f"--cdi-dir={root}/cdi",
        f"--lease-namespace={PLUGIN_NAMESPACE}",
        "--lease-duration=20s",
    ]


def vendor_drivers_for(vendors: Iterable[drivers.Vendor | str]) -> list[str]:
    return sorted({drivers.vendor_driver(v).driver for v in vendors})


def wait_ready(api: ApiClient, node: KubeletNode, timeout: float = 90.0) -> dict[str, Any]:
    """Wait for the Node to be Ready, then lift the not-ready taint (no lifecycle controller)."""

    def ready() -> dict[str, Any] | None:
        for component in node.processes:
            if not node.alive(component):
                raise controlplane.StartError(
                    f"{node.name}: {component} exited\n" + tail(node, component)
                )
        try:
            obj = rawapi.request(api, "GET", f"/api/v1/nodes/{node.name}")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        return dict(obj) if conds.get("Ready") == "True" else None

    obj: dict[str, Any] = _wait(ready, timeout, f"{node.name}: Node Ready")
    taints = [t for t in obj["spec"].get("taints", []) if t["key"] != NOT_READY_TAINT]
    rawapi.request(
        api,
        "PATCH",
        f"/api/v1/nodes/{node.name}",
        body={"spec": {"taints": taints or None}},
        content_type=rawapi.MERGE_PATCH,
    )
    return obj


def wait_lease(api: ApiClient, node: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait for the CU plugin's presence Lease of ``node`` (it is registered with the kubelet)."""

    def lease() -> dict[str, Any] | None:
        try:
            return dict(
                rawapi.request(
                    api,
                    "GET",
                    f"/apis/coordination.k8s.io/v1/namespaces/{PLUGIN_NAMESPACE}"
                    f"/leases/cu-kubelet-plugin-{node}",
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    found: dict[str, Any] = _wait(lease, timeout, f"{node}: plugin presence Lease")
    return found


def ensure_namespace(api: ApiClient, name: str) -> None:
    try:
        rawapi.request(
            api,
            "POST",
            "/api/v1/namespaces",
            body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
    except ApiException as exc:
        if exc.status != 409:
            raise


def tail(node: KubeletNode, component: str, lines: int = 40) -> str:
    path = node.log_dir / f"{node.name}-{component.replace(':', '-')}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _kubelet_config(
    root: Path, port: int, healthz: int, gates: Mapping[str, bool]
) -> dict[str, Any]:
    """A KubeletConfiguration that runs inside this sandbox (no cgroup v2, no swap checks)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": "127.0.0.1",
        "port": port,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "readOnlyPort": 0,
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{root}/cri.sock",
        "localStorageCapacityIsolation": False,
        "resolvConf": "",
        "featureGates": dict(gates),
        "registerNode": True,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "evictionHard": {},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }


def _wait(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise controlplane.StartError(f"{what}: not reached in {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def unmount_under(root: Path) -> None:
    """Unmount what the kubelet mounted under ``root`` (it bind-mounts its root dir onto
    itself to make it shared), deepest first, so no mount outlives the node."""
    prefix = str(root.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [
        line.split()[1].replace("\\040", " ")
        for line in lines
        if len(line.split()) > 1
        and (line.split()[1] == prefix or line.split()[1].startswith(prefix + "/"))
    ]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _kill(proc: controlplane._Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.popen is not None:
        proc.popen.wait(timeout=10)


# --- state for ``python -m reconciler.devcluster up --kubelets N`` / ``down`` ----------------

STATE_FILE = "kubelets.json"


def save_state(workdir: Path, nodes: Sequence[KubeletNode]) -> None:
    """Record every node's processes so ``down`` (another process) can stop them."""
    state = {
        n.name: {
            "root": str(n.root),
            "processes": {
                c: {"pid": p.pid, "binary": str(p.binary)} for c, p in n.processes.items()
            },
        }
        for n in nodes
    }
    (workdir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def load_state(workdir: Path, log_dir: Path) -> list[KubeletNode]:
    path = workdir / STATE_FILE
    if not path.exists():
        return []
    out = []
    for name, entry in json.loads(path.read_text()).items():
        node = KubeletNode(name, Path(entry["root"]), log_dir, {}, {})
        for comp, p in entry["processes"].items():
            node.processes[comp] = controlplane._Process(comp, int(p["pid"]), Path(p["binary"]))
        out.append(node)
    return out


def stop_all(workdir: Path, log_dir: Path) -> int:
    """Stop the kubelet nodes recorded under ``workdir``; returns how many."""
    nodes = load_state(workdir, log_dir)
    for node in nodes:
        node.stop()
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return len(nodes)

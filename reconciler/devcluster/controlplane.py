"""Start and stop etcd, kube-apiserver, kube-scheduler and kube-controller-manager on loopback.

Why real components: everything cu-reconciler does ends in the Kubernetes API, and the part
that matters most (kube-scheduler allocating devices from our ResourceSlices) only exists in
the real scheduler. So tests and the demo run the upstream binaries that ``hack/build-k8s.sh``
builds, never a fake server.

Shape of a cluster (all under one work directory)::

    <workdir>/pki/           CA, serving and client certificates, service-account keys
    <workdir>/etcd/          etcd data (fsync off: a test cluster need not survive a crash)
    <workdir>/logs/<c>.log   stdout+stderr of each component
    <workdir>/kubeconfig     admin identity (system:masters) for clients, kubectl and tests
    <workdir>/state.json     pids, ports and binaries, so ``down`` works from another process

Readiness is polled on each component's health endpoint (etcd ``/health``, the apiserver's
``/readyz``, the scheduler's ``/readyz``, the controller manager's ``/healthz``), never slept
for. Each component runs in its own session (process group); :meth:`ControlPlane.stop` signals
the groups, waits, escalates to SIGKILL, and then checks that no listener is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from reconciler.devcluster import binaries as binaries_mod
from reconciler.devcluster import pki as pki_mod

#: DRA feature gates, set identically on every component. In 1.37 all of these default to on
#: (beta or GA); they are spelled out so the cluster does not change under us when a default
#: flips, and because a gate that is off makes the apiserver silently drop fields on write.
FEATURE_GATES: Mapping[str, bool] = {
    "DRAConsumableCapacity": True,  # beta: allowMultipleAllocations, requestPolicy, capacity
    "DRAPartitionableDevices": True,  # beta: sharedCounters / consumesCounters
    "DRADeviceTaints": True,  # GA: device taints, claim tolerations
    "DRADeviceTaintRules": True,  # GA: the DeviceTaintRule API (resource.k8s.io/v1)
    "DRADeviceBindingConditions": True,  # beta: bindsToNode, bindingConditions
}

#: kube-controller-manager controllers: claims from templates and deallocation
#: (resourceclaim), NoExecute device taints (device-taint-eviction), and the two that make
#: namespace deletion and ownerReferences behave as in a real cluster.
CONTROLLERS: Sequence[str] = (
    "resourceclaim-controller",
    "device-taint-eviction-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "resourcequota-controller",
)

SERVICE_CIDR = "10.0.0.0/24"
_PORT_RANGE = (20000, 32000)
_PORT_ATTEMPTS = 3
_COMPONENT_ORDER = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")


class StartError(RuntimeError):
    """A component did not become ready; the message carries the tail of its log."""


@dataclass(frozen=True, slots=True)
class Ports:
    """Loopback TCP ports, picked free at start."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    scheduler: int
    controller_manager: int

    def all(self) -> tuple[int, ...]:
        return (
            self.etcd_client,
            self.etcd_peer,
            self.apiserver,
            self.scheduler,
            self.controller_manager,
        )


@dataclass(slots=True)
class _Process:
    name: str
    pid: int
    binary: Path
    popen: subprocess.Popen[bytes] | None = None
    argv: tuple[str, ...] = ()


@dataclass(slots=True)
class ControlPlane:
    """A running local control plane; use as a context manager or call :meth:`stop`."""

    workdir: Path
    ports: Ports
    feature_gates: Mapping[str, bool]
    startup_seconds: float = 0.0
    _processes: dict[str, _Process] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client certificate in ``system:masters``) for any client."""
        return self.workdir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._processes.items()}

    def api_client(self) -> k8s_client.ApiClient:
        """A new ``kubernetes.client.ApiClient`` for the admin identity (close it when done)."""
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return api

    def running(self) -> dict[str, bool]:
        """Whether each component's process is still alive."""
        return {name: _alive(p) for name, p in self._processes.items()}

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` of every component log, for failure reports."""
        parts = []
        for name in _COMPONENT_ORDER:
            path = self.log_dir / f"{name}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"----- {path} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(parts)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one component (fault injection: ``kill -9`` the apiserver) and wait for it."""
        proc = self._processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 15
        while _alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=1)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        """Start a killed component again with its original command line; wait until ready."""
        proc = self._processes[name]
        if _alive(proc):
            raise RuntimeError(f"{name} is still running")
        if not proc.argv:
            raise RuntimeError(f"{name} was not started by this process")
        self._processes[name] = _spawn(name, proc.binary, proc.argv, self.log_dir / f"{name}.log")
        self.save_state()
        port = {"kube-apiserver": self.ports.apiserver}.get(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(self._processes[name]):
                raise StartError(f"{name} exited on restart\n{self.log_tail()}")
            if port is None or port in listening_ports():
                with contextlib.suppress(Exception), self.api_client() as api:
                    if port is None or api.call_api("GET", f"{self.server}/readyz").status == 200:
                        return
            time.sleep(0.2)
        raise StartError(f"{name} not ready after restart\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every component (reverse start order) and check no port is still listened on."""
        for name in reversed(_COMPONENT_ORDER):
            proc = self._processes.get(name)
            if proc is not None:
                _terminate(proc, timeout)
        self._processes.clear()
        state = self.workdir / "state.json"
        state.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        while (busy := listening_ports() & set(self.ports.all())) and time.monotonic() < deadline:
            time.sleep(0.05)
        if busy:
            raise RuntimeError(f"ports still listened on after stop: {sorted(busy)}")

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def save_state(self) -> None:
        """Write ``state.json`` so another process can find and stop this cluster."""
        state = {
            "ports": {k: getattr(self.ports, k) for k in Ports.__dataclass_fields__},
            "feature_gates": dict(self.feature_gates),
            "processes": {
                n: {"pid": p.pid, "binary": str(p.binary)} for n, p in self._processes.items()
            },
            "kubeconfig": str(self.kubeconfig),
            "server": self.server,
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def from_state(cls, workdir: Path) -> ControlPlane | None:
        """The cluster described by ``<workdir>/state.json``, or None if there is none."""
        path = workdir / "state.json"
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        cp = cls(
            workdir=workdir, ports=Ports(**state["ports"]), feature_gates=state["feature_gates"]
        )
        for name, p in state["processes"].items():
            cp._processes[name] = _Process(name, int(p["pid"]), Path(p["binary"]))
        return cp


def start(
    workdir: Path,
    *,
    binaries: binaries_mod.Binaries | None = None,
    feature_gates: Mapping[str, bool] | None = None,
    extra_args: Mapping[str, Sequence[str]] | None = None,
    timeout: float = 90.0,
) -> ControlPlane:
    """Start a fresh control plane under ``workdir`` and return once every part is ready.

    ``binaries`` defaults to :func:`binaries.ensure_built` (builds on a cold cache).
    ``feature_gates`` is merged over :data:`FEATURE_GATES` and passed to every component.
    ``extra_args`` maps a component name to more command-line flags for it.
    Raises :class:`StartError` (after stopping what did start) if something is not ready
    within ``timeout`` seconds. A port taken between picking and binding it (another cluster
    starting at the same moment) is retried with fresh ports, twice.
    """
    bins = binaries or binaries_mod.ensure_built()
    gates = {**FEATURE_GATES, **(feature_gates or {})}
    t0 = time.monotonic()
    workdir = workdir.resolve()
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        shutil.rmtree(workdir / "etcd", ignore_errors=True)
        try:
            cp = _start_once(workdir, bins, gates, extra_args or {}, t0 + timeout)
        except StartError as exc:
            if "address already in use" not in str(exc) or attempt == _PORT_ATTEMPTS:
                raise
            continue
        cp.startup_seconds = time.monotonic() - t0
        return cp
    raise AssertionError("unreachable")


def _start_once(
    workdir: Path,
    bins: binaries_mod.Binaries,
    gates: Mapping[str, bool],
    extra_args: Mapping[str, Sequence[str]],
    deadline: float,
) -> ControlPlane:
    for sub in ("pki", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    pki = pki_mod.generate(workdir / "pki")
    ports = Ports(*_free_ports(5))
    cp = ControlPlane(workdir=workdir, ports=ports, feature_gates=gates)
    _write_kubeconfig(cp.kubeconfig, cp.server, pki.ca.cert, pki.admin, "admin")
    _write_kubeconfig(
        workdir / "scheduler.kubeconfig", cp.server, pki.ca.cert, pki.scheduler, "kube-scheduler"
    )
    _write_kubeconfig(
        workdir / "controller-manager.kubeconfig",
        cp.server,
        pki.ca.cert,
        pki.controller_manager,
        "kube-controller-manager",
    )
    args = _command_lines(cp, bins, pki, gates)
    for name, extra in extra_args.items():
        args[name] = [*args[name], *extra]
    tls = _client_tls(pki)
    probes: dict[str, Callable[[], bool]] = {
        "etcd": lambda: _http_ok(f"http://127.0.0.1:{ports.etcd_client}/health", None),
        "kube-apiserver": lambda: _http_ok(f"{cp.server}/readyz", tls),
        "kube-scheduler": lambda: _http_ok(f"https://127.0.0.1:{ports.scheduler}/readyz", tls),
        "kube-controller-manager": lambda: _http_ok(
            f"https://127.0.0.1:{ports.controller_manager}/healthz", tls
        ),
    }
    try:
        # etcd, then the apiserver; the scheduler and controller manager start together.
        for group in (
            ("etcd",),
            ("kube-apiserver",),
            ("kube-scheduler", "kube-controller-manager"),
        ):
            for name in group:
                cp._processes[name] = _spawn(
                    name, bins.path(name), args[name], cp.log_dir / f"{name}.log"
                )
            cp.save_state()
            for name in group:
                _wait_ready(cp, name, probes[name], deadline)
        _wait_ready(
            cp,
            "kube-apiserver",
            lambda: _http_ok(f"{cp.server}/api/v1/namespaces/default", tls),
            deadline,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            cp.stop()
        raise
    return cp


@contextlib.contextmanager
def running(workdir: Path, **kwargs: Any) -> Iterator[ControlPlane]:
    """``with running(tmpdir) as cp:`` start, yield, and always stop."""
    cp = start(workdir, **kwargs)
    try:
        yield cp
    finally:
        cp.stop()


def listening_ports() -> set[int]:
    """TCP ports with a socket in LISTEN state on this host (from /proc/net/tcp{,6})."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                cols = line.split()
                if len(cols) > 3 and cols[3] == "0A":  # TCP_LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


# --- command lines -------------------------------------------------------------------------


def _command_lines(
    cp: ControlPlane,
    bins: binaries_mod.Binaries,
    pki: pki_mod.ClusterPKI,
    gates: Mapping[str, bool],
) -> dict[str, list[str]]:
    p, w = cp.ports, cp.workdir
    gate_flag = "--feature-gates=" + ",".join(
        f"{k}={str(v).lower()}" for k, v in sorted(gates.items())
    )
    peer = f"http://127.0.0.1:{p.etcd_peer}"
    client = f"http://127.0.0.1:{p.etcd_client}"
    serving = [f"--tls-cert-file={pki.serving.cert}", f"--tls-private-key-file={pki.serving.key}"]
    return {
        "etcd": [
            str(bins.etcd),
            "--name=devcluster",
            f"--data-dir={w / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=devcluster={peer}",
            "--unsafe-no-fsync",  # test data; fsync on a shared CI disk costs seconds per write
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(bins.kube_apiserver),
            f"--etcd-servers={client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={p.apiserver}",
            *serving,
            f"--client-ca-file={pki.ca.cert}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            # No kubelet and no service-account controller: a "default" service account never
            # appears, so the admission plugin would reject every Pod (envtest does the same).
            "--disable-admission-plugins=ServiceAccount",
            # A loopback advertise address cannot go into the "kubernetes" Endpoints object.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            gate_flag,
        ],
        "kube-scheduler": [
            str(bins.kube_scheduler),
            f"--kubeconfig={w / 'scheduler.kubeconfig'}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={p.scheduler}",
            *serving,
            "--profiling=false",
            "--v=3",
            gate_flag,
        ],
        "kube-controller-manager": [
            str(bins.kube_controller_manager),
            f"--kubeconfig={w / 'controller-manager.kubeconfig'}",
            "--leader-elect=false",
            # Each controller gets its own service account (TokenRequest), so RBAC applies to
            # it exactly as in a real cluster.
            "--use-service-account-credentials=true",
            f"--controllers={','.join(CONTROLLERS)}",
            "--bind-address=127.0.0.1",
            f"--secure-port={p.controller_manager}",
            *serving,
            f"--root-ca-file={pki.ca.cert}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--profiling=false",
            "--v=2",
            gate_flag,
        ],
    }


def _write_kubeconfig(path: Path, server: str, ca: Path, user: pki_mod.CertPair, name: str) -> None:
    """A kubeconfig (JSON is valid YAML) with absolute paths to the certificate files."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "devcluster", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": name,
                "user": {"client-certificate": str(user.cert), "client-key": str(user.key)},
            }
        ],
        "contexts": [{"name": "devcluster", "context": {"cluster": "devcluster", "user": name}}],
        "current-context": "devcluster",
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    path.chmod(0o600)


# --- processes -----------------------------------------------------------------------------


def _spawn(
    name: str,
    binary: Path,
    argv: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> _Process:
    """Start ``argv`` in its own session (stop() signals the group), output appended to
    ``log``. Every harness here (control plane, kubelet nodes, Argo CD, Flux) starts its
    processes through this one function."""
    out = open(log, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
        )
    finally:
        out.close()
    return _Process(name, popen.pid, binary, popen, tuple(argv))


def _wait_ready(cp: ControlPlane, name: str, probe: Callable[[], bool], deadline: float) -> None:
    proc = cp._processes[name]
    delay = 0.05
    while True:
        if not _alive(proc):
            raise StartError(f"{name} exited during start-up\n{cp.log_tail()}")
        if probe():
            return
        if time.monotonic() > deadline:
            raise StartError(f"{name} not ready in time\n{cp.log_tail()}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _alive(proc: _Process) -> bool:
    if proc.popen is not None:
        return proc.popen.poll() is None
    # Not our child (``down`` from another process): trust the pid only if it still runs
    # the binary we started, so a recycled pid is never signalled.
    try:
        exe = os.readlink(f"/proc/{proc.pid}/exe")
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")) == proc.binary.resolve()


def _terminate(proc: _Process, timeout: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(proc):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while _alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
    if proc.popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=1)


# --- small helpers -------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free now, picked below the kernel's ephemeral
    range (32768+ on Linux) so outgoing connections cannot grab them before we bind."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(*_PORT_RANGE)
        if port in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _client_tls(pki: pki_mod.ClusterPKI) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.cert))
    ctx.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
    return ctx


def _http_ok(url: str, ctx: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False

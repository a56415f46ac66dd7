"""A running controller (``cuctl run`` as a subprocess, as the reconciler's ServiceAccount)
against the real control plane, following a bare Git remote that tests push to."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import git
import pytest
import tenant_loop
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from ruamel.yaml import YAML

from reconciler import devcluster
from reconciler.apply import writer as writers
from reconciler.controller import status as st
from reconciler.devcluster import identity, rawapi, workloads
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.model import kinds, ownership

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OWNED = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"
SECRET = "s3cret-for-tests"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/cu-system/leases/cu-reconciler"
CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
OWNED_KINDS = (
    "ResourceQuota",  # left behind, it would be a foreign object to the next test's inventory
    "ResourceSlice",
    "DeviceClass",
    "DeviceTaintRule",
    "ResourceClaim",
    "ResourceClaimTemplate",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except ApiException as exc:
            if exc.status not in (404, 500, 503):
                raise
            value, last = None, exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # the apiserver is restarting
            value, last = None, exc
        if value:
            return value
        last = value if value is not None else last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def owned(api: ApiClient) -> list[dict[str, Any]]:
    out = []
    for kind in OWNED_KINDS:
        k = kinds.of(kind)
        body = rawapi.request(api, "GET", k.collection_path(), query={"labelSelector": OWNED})
        out += [{"apiVersion": k.api_version, "kind": kind, **o} for o in body["items"]]
    return out


def versions(api: ApiClient) -> dict[str, str]:
    """Every owned object as we would write it: all but status and bookkeeping.

    Not the resourceVersion: the kube-controller-manager writes DeviceTaintRule status
    (and the scheduler claim status) on its own schedule, sometimes seconds after we
    converged, and those writes are not ours (CI caught exactly that as "written").
    """
    out = {}
    for o in owned(api):
        meta = {
            k: v for k, v in o["metadata"].items() if k not in ("resourceVersion", "managedFields")
        }
        mine = {k: v for k, v in o.items() if k != "status"}
        out[writers.subject_of(o)] = json.dumps({**mine, "metadata": meta}, sort_keys=True)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> set[str]:
    """The IPv4 addresses a TCP socket listens on at ``port`` (from /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, _, hex_port = fields[1].partition(":")
        if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            out.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return out


def install_crd(api: ApiClient) -> None:
    doc = YAML(typ="safe").load((DEPLOY / "crd.yaml").read_text())
    rawapi.apply(api, f"{CRD}/{doc['metadata']['name']}", doc, field_manager="test")

    def established() -> bool:
        crd = rawapi.request(api, "GET", f"{CRD}/{doc['metadata']['name']}")
        conds = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    wait_for("the CUSync CRD", established, 30)


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    webhook_port: int
    identity: str

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@dataclass
class Env:
    admin: ApiClient
    cp: devcluster.ControlPlane
    kubeconfig: Path
    work: Path
    remote: Path
    clone: git.Repo
    replicas: list[Replica] = field(default_factory=list)

    def start(
        self,
        identity: str = "replica-0",
        *,
        interval: str = "1s",
        resync: str = "3s",
        extra: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Replica:
        metrics, hook = free_port(), free_port()
        log = self.work / f"{identity}.log"
        cmd = [
            sys.executable,
            "-m",
            "reconciler.cli",
            "run",
            "--repo",
            str(self.remote),
            "--interval",
            interval,
            "--resync",
            resync,
            "--metrics-port",
            str(metrics),
            "--webhook-port",
            str(hook),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.work / f"cache-{identity}"),
            "--identity",
            identity,
            *extra,
        ]
        env = {**os.environ, "CU_WEBHOOK_SECRET": SECRET, **(environ or {})}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec
            )
        replica = Replica(proc, log, metrics, hook, identity)
        self.replicas.append(replica)
        return replica

    def sync(self) -> dict[str, Any]:
        body: dict[str, Any] = rawapi.request(self.admin, "GET", st.path("default"))
        return body

    def condition(self, type_: str) -> dict[str, Any] | None:
        for c in (self.sync().get("status") or {}).get("conditions") or ():
            if c["type"] == type_:
                return dict(c)
        return None

    def ready_at(self, sha: str, timeout: float = 90) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            sync = self.sync()
            status = sync.get("status") or {}
            ready = self.condition("Ready")
            if status.get("lastAppliedRevision") == sha and ready and ready["status"] == "True":
                return sync
            return None

        return wait_for(f"CUSync Ready at {sha[:12]}", probe, timeout)

    def commit(self, message: str, edit: Callable[[Path], None]) -> str:
        root = Path(self.clone.working_dir)
        edit(root)
        self.clone.git.add(A=True)
        self.clone.index.commit(message)
        self.clone.git.push("origin", "main")
        return str(self.clone.head.commit.hexsha)

    def head(self) -> str:
        return str(self.clone.head.commit.hexsha)

    def webhook(self, replica: Replica, body: dict[str, Any], *, sign: bool = True) -> int:
        raw = json.dumps(body).encode()
        digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
        if sign:
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{replica.webhook_port}/hook", data=raw, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@pytest.fixture
def env(
    control_plane: devcluster.ControlPlane,
    api: ApiClient,
    example_repo: git.Repo,
    tmp_path: Path,
) -> Iterator[Env]:
    install_crd(api)
    root = Path(example_repo.working_dir)
    loaded = devsnapshot.load(api, root / "observed" / "snapshot.yaml")
    settings = YAML(typ="safe").load((root / "cluster.yaml").read_text())
    namespaces: list[str] = settings["spec"]["managedNamespaces"]
    for ns in namespaces:
        identity.ensure_namespace(api, ns)
    account = identity.install_rbac(api)
    kubeconfig = identity.service_account_kubeconfig(api, control_plane.kubeconfig, *account)
    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    example_repo.create_remote("origin", str(remote))
    example_repo.git.push("origin", "main")
    e = Env(api, control_plane, kubeconfig, tmp_path, remote, example_repo)
    try:
        yield e
    finally:
        for r in e.replicas:
            with contextlib.suppress(Exception):
                r.stop(signal.SIGKILL)
        for ns in namespaces:
            workloads.force_delete_pods(api, ns)
        for obj in owned(api):
            rawapi.delete(api, writers.path_of(obj))
        _no_claims_left(api, namespaces)
        # The deleted fence policy is still enforced until the apiserver's policy cache
        # catches up: a next test that creates a tolerating claim before its controller
        # starts (the fence-findings test) got 403 from this test's fence.
        tenant_loop.wait_fence(api, "default", enforced=False)
        inventories = "/api/v1/namespaces/cu-system/configmaps"
        selector = {"labelSelector": "app.kubernetes.io/name=cu-reconciler"}
        for item in rawapi.request(api, "GET", inventories, query=selector)["items"]:
            rawapi.delete(api, f"{inventories}/{item['metadata']['name']}")
        devsnapshot.unload(api, loaded)
        rawapi.delete(api, st.path("default"))
        rawapi.delete(api, LEASE)
        shutil.rmtree(tmp_path / "cache-replica-0", ignore_errors=True)


def _no_claims_left(api: ApiClient, namespaces: list[str]) -> None:
    """Every claim in the managed namespaces deleted and gone before the next test: an
    allocated claim lingers (its finalizer) until the resourceclaim controller sees its Pod
    gone, and a next test that creates a claim of the same name would get 409, or a
    reconcile would find the name taken by an object it does not own."""

    def path(ns: str) -> str:
        return f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"

    def left() -> list[str]:
        return [
            f"{ns}/{c['metadata']['name']}"
            for ns in namespaces
            for c in rawapi.request(api, "GET", path(ns))["items"]
        ]

    for name in left():
        ns, _, claim = name.partition("/")
        rawapi.delete(api, f"{path(ns)}/{claim}")
    wait_for("every claim gone after the test", lambda: not left() or None, 90)

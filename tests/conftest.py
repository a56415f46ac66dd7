"""Shared fixtures: one real local control plane per test session.

``control_plane`` builds the binaries if needed (``hack/build-k8s.sh``; seconds when cached)
and starts etcd, kube-apiserver, kube-scheduler and kube-controller-manager once, in the
session's temporary directory. Integration tests skip only when no ``go`` is on PATH and no
binaries are cached, and they say so loudly; any other build or start failure is an error.
When a test that used the cluster fails, the tail of every component log is attached to its
report (the full logs stay in the temporary directory that the report names).
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path

import git
import pytest
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.devcluster import rawapi

_NO_GO = (
    "NO GO TOOLCHAIN: integration tests against the real kube-apiserver/kube-scheduler are "
    "SKIPPED because `go` is not on PATH and no binaries are cached; install Go >= 1.26 and run "
    "hack/build-k8s.sh"
)
_CLUSTER_KEY = pytest.StashKey[devcluster.ControlPlane]()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gitrepo"


@pytest.fixture
def example_repo(tmp_path: Path) -> git.Repo:
    """A real Git repository holding examples/gitrepo as one commit on ``main``."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "test")
        cfg.set_value("user", "email", "test@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("example")
    return repo


@pytest.fixture(scope="session")
def synthetic_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30,000 synthetic inference records (100 of them bad) for the example's device models."""
    from reconciler.learn import synthetic

    frame, _ = synthetic.generate(synthetic.Scenario(records=30_000, bad_rows=100), seed=21)
    path = tmp_path_factory.mktemp("records") / "records.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def control_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[devcluster.ControlPlane]:
    """A running control plane: ``.kubeconfig``, ``.api_client()``, ``.log_dir``."""
    if not devcluster.go_available() and devcluster.binaries.cached() is None:
        warnings.warn(_NO_GO, stacklevel=1)
        pytest.skip(_NO_GO)
    bins = devcluster.ensure_built()
    cp = devcluster.start(tmp_path_factory.mktemp("devcluster"), binaries=bins)
    request.config.stash[_CLUSTER_KEY] = cp
    print(f"\ndevcluster ready in {cp.startup_seconds:.1f}s at {cp.server}; logs in {cp.log_dir}")
    try:
        yield cp
    finally:
        del request.config.stash[_CLUSTER_KEY]
        cp.stop()


@pytest.fixture
def api(control_plane: devcluster.ControlPlane) -> Iterator[ApiClient]:
    """An admin ApiClient for one test."""
    with control_plane.api_client() as client:
        yield client


@pytest.fixture
def namespace(api: ApiClient) -> Iterator[str]:
    """A fresh namespace, deleted after the test with everything in it.

    Its Pods are force-deleted first: with no kubelet to confirm termination, a bound Pod
    would stay Terminating forever and hold its namespace (and its claims) with it.
    """
    name = f"t-{uuid.uuid4().hex[:10]}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    rawapi.request(api, "POST", "/api/v1/namespaces", body=body)
    yield name
    devcluster.workloads.force_delete_pods(api, name)
    rawapi.delete(api, f"/api/v1/namespaces/{name}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and "control_plane" in getattr(item, "fixturenames", ()):
        cp = item.config.stash.get(_CLUSTER_KEY, None)
        if cp is not None:
            report.sections.append(("devcluster component logs", cp.log_tail(80)))
    return report

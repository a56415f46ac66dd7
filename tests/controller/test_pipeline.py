"""The pipeline on the example repository (a real Git repo), a snapshot and the in-memory writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
import pytest

from reconciler.apply import fake
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.observe import snapshot, sources

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


@pytest.fixture
def repo(example_repo: git.Repo) -> git.Repo:
    return example_repo


def _devices() -> tuple[dict[str, Any], ...]:
    text = (EXAMPLE / "observed" / "snapshot.yaml").read_text()
    return tuple(
        dict(o) for o in snapshot.parse(text, "snapshot.yaml") if o["kind"] != "ResourceClaim"
    )


class _Cluster:
    """The snapshot's Nodes and vendor slices, plus whatever the writer has stored."""

    def __init__(self, writer: fake.MemoryWriter) -> None:
        self.writer = writer

    def read(self) -> Any:
        return sources.InMemory(_devices() + tuple(self.writer.objects.values())).read()


def test_first_run_converges_and_second_run_writes_nothing(repo: git.Repo) -> None:
    writer = fake.MemoryWriter()
    request = pipeline.Request(repo.working_dir, "HEAD")
    first = pipeline.reconcile(request, _Cluster(writer), writer)
    assert first.reason is Reason.SUCCEEDED, first.message
    assert first.revision == repo.head.commit.hexsha
    assert first.applied is not None and first.applied.writes > 0
    kinds = {o["kind"] for o in writer.objects.values()}
    assert {"DeviceClass", "ResourceSlice", "DeviceTaintRule", "ResourceClaim"} <= kinds
    written = writer.writes

    second = pipeline.reconcile(request, _Cluster(writer), writer)
    assert second.reason is Reason.SUCCEEDED, second.message
    assert second.applied is not None and second.applied.writes == 0
    assert writer.writes == written


def test_an_invalid_revision_stops_at_validation_and_writes_nothing(repo: git.Repo) -> None:
    writer = fake.MemoryWriter()
    cluster = Path(repo.working_dir) / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("driverName:", "driverNam:"))
    repo.git.add(A=True)
    repo.index.commit("typo")
    outcome = pipeline.reconcile(
        pipeline.Request(repo.working_dir, "HEAD"), _Cluster(writer), writer
    )
    assert outcome.reason is Reason.VALIDATION_FAILED
    assert outcome.reason.stalled
    assert "cluster.yaml" in outcome.message
    assert writer.writes == 0


def test_an_unknown_revision_is_a_source_failure(repo: git.Repo) -> None:
    writer = fake.MemoryWriter()
    request = pipeline.Request(repo.working_dir, "no-such-branch")
    outcome = pipeline.reconcile(request, _Cluster(writer), writer)
    assert outcome.reason is Reason.SOURCE_FAILED
    assert "no-such-branch" in outcome.message
    assert writer.writes == 0


def test_a_rejected_object_degrades_the_reconcile_and_only_it_and_its_claims_fail(
    repo: git.Repo,
) -> None:
    writer = fake.MemoryWriter()
    first = pipeline.reconcile(pipeline.Request(repo.working_dir, "HEAD"), _Cluster(writer), writer)
    assert first.plan is not None
    victim = next(o for o in first.plan.objects if o["kind"] == "DeviceClass")
    name = victim["metadata"]["name"]
    fresh = fake.MemoryWriter(reject={f"DeviceClass/{name}"})
    outcome = pipeline.reconcile(pipeline.Request(repo.working_dir, "HEAD"), _Cluster(fresh), fresh)
    assert outcome.reason is Reason.DEGRADED
    assert name in outcome.message
    assert outcome.applied is not None
    for entry in outcome.applied.problems:
        assert entry.subject == f"DeviceClass/{name}" or entry.outcome == "skipped"
    assert (
        fresh.writes
        == outcome.applied.writes
        == len(first.plan.objects) - len(outcome.applied.problems)
    )


def test_a_writer_the_fence_does_not_exempt_is_refused_before_any_write(repo: git.Repo) -> None:
    writer = fake.MemoryWriter(identity="kubernetes-admin")
    outcome = pipeline.reconcile(
        pipeline.Request(repo.working_dir, "HEAD"), _Cluster(writer), writer
    )
    assert outcome.reason is Reason.IDENTITY_REFUSED
    assert outcome.reason.stalled
    assert "'kubernetes-admin'" in outcome.message
    assert "system:serviceaccount:cu-system:cu-reconciler" in outcome.message
    assert writer.writes == 0


def test_the_delete_guard_cannot_be_lifted_by_the_commit_that_deletes(repo: git.Repo) -> None:
    root = Path(repo.working_dir)
    policy = root / "policy.yaml"
    policy.write_text(
        policy.read_text().replace("maxDeleteFraction: 0.3", "maxDeleteFraction: 0.1")
    )
    repo.git.add(A=True)
    repo.index.commit("a strict guard")
    writer = fake.MemoryWriter()
    first = pipeline.reconcile(pipeline.Request(repo.working_dir, "HEAD"), _Cluster(writer), writer)
    assert first.reason is Reason.SUCCEEDED, first.message
    policy.write_text(
        policy.read_text().replace("maxDeleteFraction: 0.1", "maxDeleteFraction: 1.0")
    )
    for claim in (root / "claims").rglob("*.yaml"):
        claim.unlink()
    repo.git.add(A=True)
    repo.index.commit("delete every claim and lift the guard in the same commit")
    written = writer.writes
    second = pipeline.reconcile(
        pipeline.Request(repo.working_dir, "HEAD"), _Cluster(writer), writer
    )
    assert second.reason is Reason.PLAN_REFUSED, second.message
    assert "maxDeleteFraction (10%)" in second.message
    assert first.revision[:12] in second.message
    assert writer.writes == written


def test_a_broken_pool_file_is_reported_once_as_the_cause_not_as_a_cascade(
    repo: git.Repo,
) -> None:
    """Issue 9: apply's summary named "unknown pool" errors in the claims instead of the one
    file that failed to load."""
    pool = Path(repo.working_dir) / "pools" / "dev.yaml"
    pool.write_text(pool.read_text().replace("sharing:", "sharing: [unclosed", 1))
    repo.git.commit("-am", "a broken pool file")
    writer = fake.MemoryWriter()
    outcome = pipeline.reconcile(
        pipeline.Request(repo.working_dir, "HEAD"), _Cluster(writer), writer
    )
    assert outcome.reason is Reason.VALIDATION_FAILED
    assert writer.writes == 0
    assert "pools/dev.yaml" in outcome.message and "unknown pool" not in outcome.message
    errors = [d for d in outcome.diagnostics if d.severity.name == "ERROR"]
    assert errors and {d.file for d in errors} == {"pools/dev.yaml"}, [d.render() for d in errors]


FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleet"


def test_a_fleet_repository_reconciles_the_named_clusters_overlay(tmp_path: Path) -> None:
    """A CUSync's spec.cluster (or ``cuctl run --cluster``) picks clusters/<name>/; a fleet
    repository with no cluster named is refused before anything is written."""
    import shutil

    root = tmp_path / "fleet"
    shutil.copytree(FLEET, root)
    repo = git.Repo.init(root, initial_branch="main")
    repo.git.add(A=True)
    repo.git.commit("-m", "fleet", "--author", "t <t@example.invalid>")
    text = (root / "clusters" / "dc-east" / "observed" / "snapshot.yaml").read_text()
    devices = tuple(o for o in snapshot.parse(text, "s.yaml") if o["kind"] != "ResourceClaim")

    class _East:
        def __init__(self, writer: fake.MemoryWriter) -> None:
            self.writer = writer

        def read(self) -> Any:
            return sources.InMemory(devices + tuple(self.writer.objects.values())).read()

    writer = fake.MemoryWriter()
    refused = pipeline.reconcile(pipeline.Request(str(root), "HEAD"), _East(writer), writer)
    assert refused.reason is Reason.SOURCE_FAILED and "--cluster" in refused.message
    assert writer.writes == 0

    first = pipeline.reconcile(
        pipeline.Request(str(root), "HEAD", "dc-east"), _East(writer), writer
    )
    assert first.reason is Reason.SUCCEEDED, first.message
    assert first.applied is not None and first.applied.writes > 0
    again = pipeline.reconcile(
        pipeline.Request(str(root), "HEAD", "dc-east"), _East(writer), writer
    )
    assert again.reason is Reason.SUCCEEDED and again.applied is not None
    assert again.applied.writes == 0


class _Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def read(self) -> Any:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        pytest.param(RecursionError("maximum recursion depth exceeded"), Reason.INTERNAL_ERROR),
        pytest.param(ConnectionRefusedError("refused"), Reason.API_UNAVAILABLE),
    ],
    ids=["bug", "apiserver-down"],
)
def test_an_exception_in_a_step_is_the_outcome_not_a_crash(
    repo: git.Repo, exc: Exception, reason: Reason
) -> None:
    """Issue 20.3: a traceback left the CUSync "Reconciling" forever; now it is an outcome."""
    writer = fake.MemoryWriter()
    outcome = pipeline.reconcile(pipeline.Request(repo.working_dir, "HEAD"), _Raising(exc), writer)
    assert outcome.reason is reason
    assert outcome.message.startswith(f"observe: {type(exc).__name__}: ")
    assert writer.writes == 0
    assert not outcome.reason.stalled, "retried with backoff, Stalled only if it repeats"


BYPASS = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "ResourceClaim",
    "metadata": {"name": "sneaky", "namespace": "default", "uid": "u-sneaky"},
    "spec": {
        "devices": {
            "requests": [
                {
                    "name": "gpu",
                    "exactly": {
                        "deviceClassName": "gpu.nvidia.com",
                        "tolerations": [{"key": "cu-reconciler.io/managed", "operator": "Exists"}],
                    },
                }
            ]
        }
    },
}


def test_fence_findings_reach_the_status_from_a_degraded_reconcile(repo: git.Repo) -> None:
    """Issue 20.6: fence findings were not shown while a reconcile was Degraded."""
    from reconciler.controller import status as st

    class _WithBypass(_Cluster):
        def read(self) -> Any:
            return sources.InMemory((*_devices(), BYPASS, *self.writer.objects.values())).read()

    writer = fake.MemoryWriter()
    first = pipeline.reconcile(
        pipeline.Request(repo.working_dir, "HEAD"), _WithBypass(writer), writer
    )
    assert first.plan is not None
    victim = next(o for o in first.plan.objects if o["kind"] == "DeviceClass")
    fresh = fake.MemoryWriter(reject={f"DeviceClass/{victim['metadata']['name']}"})
    outcome = pipeline.reconcile(
        pipeline.Request(repo.working_dir, "HEAD"), _WithBypass(fresh), fresh
    )
    assert outcome.reason is Reason.DEGRADED
    status = st.compute({}, outcome, 1, "T", failures=1, stall_after=5)
    assert status["fenceFindings"] == [
        {
            "namespace": "default",
            "name": "sneaky",
            "reason": status["fenceFindings"][0]["reason"],
        }
    ]
    assert "tolerates the fence taint" in status["fenceFindings"][0]["reason"]
    assert "pools" not in status, "figures only from a reconcile that converged"


def test_devices_lost_under_promises_show_as_shortfalls_in_status_and_argocd(
    repo: git.Repo,
) -> None:
    """Issue 20.6: after a node's devices disappeared the CUSync stayed Ready=True with
    nothing to say; only `cuctl plan` told "promise not deliverable"."""
    import sys

    from reconciler.controller import metrics
    from reconciler.controller import status as st

    lost = {"h100-01", "h100-02", "h100-03"}

    class _Lost(_Cluster):
        def read(self) -> Any:
            keep = tuple(
                o
                for o in _devices()
                if not (o["kind"] == "ResourceSlice" and o["spec"].get("nodeName") in lost)
            )
            return sources.InMemory(keep + tuple(self.writer.objects.values())).read()

    writer = fake.MemoryWriter()
    outcome = pipeline.reconcile(pipeline.Request(repo.working_dir, "HEAD"), _Lost(writer), writer)
    assert outcome.reason is Reason.SUCCEEDED
    status = st.compute({}, outcome, 1, "T")
    messages = [x["message"] for x in status["shortfalls"]]
    assert any("ads-embedding in pool inference-prod" in m for m in messages), messages
    assert all(m.startswith("promise not deliverable: ") for m in messages)
    ready = status["conditions"][0]
    assert ready["status"] == "True" and ready["message"].endswith("promises not deliverable")
    m = metrics.Metrics()
    m.set_audit(status)
    short = m.registry.get_sample_value(
        "cu_promise_shortfall_cu", {"tenant": "ads-embedding", "pool": "inference-prod"}
    )
    assert short == 400
    sys.path.insert(0, str(EXAMPLE.parents[1] / "tests" / "gitops"))
    from test_health_lua import health

    lua = EXAMPLE.parents[1] / "deploy/argocd/resource_customizations/cu-reconciler.io/CUSync"
    obj = {"metadata": {"name": "default", "generation": 1}, "spec": {}, "status": status}
    assert health(lua, obj)["status"] == "Degraded"

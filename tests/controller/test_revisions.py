"""What a watch-triggered reconcile may skip, proven against the real control plane.

A commit's loaded, validated and verified desired state is reused for the next reconcile of
the same commit (a vendor node appearing re-reads only the cluster and still converges); a new
commit is read afresh. The watches take the events of our own writes for echoes, and still
report anyone else's change of the same object.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Env, owned, wait_for
from kubernetes.client import ApiClient

from reconciler.apply import writer as writers
from reconciler.controller import echoes, pipeline, watches
from reconciler.controller import revisions as revs
from reconciler.controller.reasons import Reason
from reconciler.devcluster import drivers, nodes, rawapi
from reconciler.model import kinds
from reconciler.observe import cluster

SHA_A = "a" * 40
LABELS = {
    "accelerator.example.com/vendor": "nvidia",
    "platform.example.com/tier": "production",
    "topology.kubernetes.io/zone": "cn-north-1a",
    "node.kubernetes.io/instance-type": "hgx-h100-8",
}


def test_only_an_immutable_sha_is_a_key() -> None:
    assert revs.Revisions.key("/r", SHA_A, None) == revs.Key("/r", SHA_A, None)
    assert revs.Revisions.key("/r", "b" * 64, "east") is not None  # SHA-256 repositories
    for moving in (None, "HEAD", "main", "a" * 39, "A" * 40, "refs/heads/main"):
        assert revs.Revisions.key("/r", moving, None) is None
    cache = revs.Revisions()
    assert cache.get(None) is None
    assert cache.misses == 0  # a working tree or a branch is never looked up


def test_the_newest_revisions_are_kept(example_repo: Any) -> None:
    """A real revision's Loaded; the least recently used one leaves first."""
    writer = _Null()
    cache = revs.Revisions(size=2)
    repo = example_repo.working_dir
    shas = []
    for i in range(3):
        path = Path(repo) / "claims" / "search-ranking" / "query-rewrite.yaml"
        path.write_text(path.read_text() + f"\n# {i}\n")
        example_repo.git.add(A=True)
        example_repo.index.commit(f"c{i}")
        shas.append(example_repo.head.commit.hexsha)
        pipeline.reconcile(pipeline.Request(repo, shas[-1]), _NoCluster(), writer, revisions=cache)
    assert len(cache) == 2
    assert cache.get(revs.Revisions.key(repo, shas[0], None)) is None
    loaded = cache.get(revs.Revisions.key(repo, shas[2], None))
    assert loaded is not None and str(loaded.desired.revision) == shas[2]
    assert loaded.tree.revision == loaded.desired.revision


def test_an_invalid_revision_is_not_kept_and_is_checked_every_time(example_repo: Any) -> None:
    repo = example_repo.working_dir
    settings = Path(repo) / "cluster.yaml"
    settings.write_text(settings.read_text().replace("driverName:", "driverNam:"))
    example_repo.git.add(A=True)
    example_repo.index.commit("typo")
    sha = example_repo.head.commit.hexsha
    cache = revs.Revisions()
    for attempt in (1, 2):
        outcome = pipeline.reconcile(
            pipeline.Request(repo, sha), _NoCluster(), _Null(), revisions=cache
        )
        assert outcome.reason is Reason.VALIDATION_FAILED and not outcome.cached
        assert "cluster.yaml" in outcome.message
        assert cache.misses == attempt and len(cache) == 0


class _NoCluster:
    """Observation fails: the run stops after the desired state is cached."""

    def read(self) -> Any:
        from reconciler import errors

        raise errors.ObserveError("no cluster in this test")


class _Null:
    def whoami(self) -> str:
        return ""

    def apply(self, obj: Any, *, dry_run: bool) -> dict[str, Any]:
        raise AssertionError("nothing may be written")

    def delete(self, obj: Any, *, dry_run: bool) -> bool:
        raise AssertionError("nothing may be deleted")

    def replace(self, obj: Any, *, dry_run: bool) -> dict[str, Any]:
        raise AssertionError("nothing may be written")

    def set_managed_fields(self, live: Any, fields: list[Any], *, dry_run: bool) -> dict[str, Any]:
        raise AssertionError("nothing may be written")

    def get(self, obj: Any) -> dict[str, Any] | None:
        return None

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {}


@pytest.mark.integration
def test_a_node_event_reuses_the_revision_and_converges_and_a_new_commit_is_read_fresh(
    env: Env,
) -> None:
    api = cluster.connect(str(env.kubeconfig))
    writer = writers.KubeWriter(api)
    cache = revs.Revisions()
    repo = str(env.clone.working_dir)
    first = env.head()
    outcome = pipeline.reconcile(
        pipeline.Request(repo, first), cluster.Cluster(api), writer, revisions=cache
    )
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert not outcome.cached and cache.misses == 1 and len(cache) == 1

    node = "h100-31"
    nodes.create_node(env.admin, node, LABELS)
    try:
        drivers.publish_node(env.admin, node, drivers.Vendor.NVIDIA, "H100", 8)
        outcome = pipeline.reconcile(
            pipeline.Request(repo, first), cluster.Cluster(api), writer, revisions=cache
        )
        assert outcome.reason is Reason.SUCCEEDED, outcome.message
        assert outcome.cached and cache.hits == 1
        assert outcome.revision == first
        live = {(o["kind"], o["metadata"]["name"]): o for o in owned(env.admin)}
        assert ("ResourceSlice", f"cu-{node}-0") in live, "the node's CU slice is published"
        assert any(
            o["kind"] == "DeviceTaintRule" and o["spec"]["deviceSelector"].get("pool") == node
            for o in live.values()
        ), "and fenced"

        # A new commit drops a claim: it is read and validated, not taken from the cache.
        def drop(root: Path) -> None:
            (root / "claims" / "search-ranking" / "query-rewrite.yaml").unlink()

        second = env.commit("drop a claim", drop)
        outcome = pipeline.reconcile(
            pipeline.Request(repo, second), cluster.Cluster(api), writer, revisions=cache
        )
        assert outcome.reason is Reason.SUCCEEDED, outcome.message
        assert not outcome.cached and cache.misses == 2
        assert outcome.plan is not None and str(outcome.plan.revision) == second
        assert outcome.applied is not None and outcome.applied.writes > 0
        assert not any("query-rewrite" in o["metadata"]["name"] for o in owned(env.admin))

        # The withdrawn node leaves with the second revision cached, still converging.
        drivers.withdraw_node(env.admin, node, drivers.Vendor.NVIDIA)
        outcome = pipeline.reconcile(
            pipeline.Request(repo, second), cluster.Cluster(api), writer, revisions=cache
        )
        assert outcome.reason is Reason.SUCCEEDED and outcome.cached
        assert not any(o["metadata"]["name"] == f"cu-{node}-0" for o in owned(env.admin))
    finally:
        drivers.withdraw_node(env.admin, node)
        nodes.delete_node(env.admin, node)
        api.close()  # type: ignore[no-untyped-call]


@pytest.mark.integration
def test_our_writes_are_echoes_and_another_managers_edit_is_news(api: ApiClient) -> None:
    """A real watch on DeviceClasses: our apply and delete are echoes, a hand edit is news."""
    kind = kinds.of("DeviceClass")
    name = "h17-echo-probe"
    obj: dict[str, Any] = {
        "apiVersion": kind.api_version,
        "kind": "DeviceClass",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "cu-reconciler"}},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "a.example.com"'}}]},
    }
    ours = echoes.Echoes()
    changes: list[watches.Change] = []
    relists: list[watches.Change] = []

    def notify(change: watches.Change) -> None:
        (relists if change.event == watches.RELISTED else changes).append(change)

    stop = threading.Event()
    target = watches.Target("DeviceClass", kind.collection_path(), watches.OWNED)
    watches.start(api, notify, stop, (target,))
    writer = writers.KubeWriter(api)
    try:
        time.sleep(1.0)  # the watch is open (a list for the resourceVersion, then the watch)
        assert [c.kind for c in relists] == ["DeviceClass"], "a list asks for a reconcile"
        ours.wrote(writer.apply(obj, dry_run=False))
        obj["spec"]["selectors"][0]["cel"]["expression"] = 'device.driver == "b.example.com"'
        ours.wrote(writer.apply(obj, dry_run=False))
        wait_for("the create and update events", lambda: len(changes) == 2, 10)
        assert [c.event for c in changes] == ["ADDED", "MODIFIED"]
        assert ours.news(changes) == [], "our own create and update are echoes"

        edited = {**obj, "metadata": {**obj["metadata"], "annotations": {"hand": "edit"}}}
        rawapi.apply(api, kind.object_path(name, ""), edited, field_manager="someone-else")
        wait_for("the hand edit's event", lambda: len(changes) == 3, 10)
        assert [c.event for c in ours.news(changes)] == ["MODIFIED"], "a hand edit is news"

        live = rawapi.request(api, "GET", kind.object_path(name, ""))
        rawapi.delete(api, kind.object_path(name, ""))
        wait_for("someone else's delete", lambda: len(changes) == 4, 10)
        assert changes[-1].event == "DELETED" and changes[-1].uid == live["metadata"]["uid"]
        assert ours.news(changes[-1:]) == changes[-1:], "a delete by someone else is news"

        live = writer.apply(obj, dry_run=False)
        ours.wrote(live)
        ours.deleted(live)
        writer.delete(live, dry_run=False)
        wait_for("our re-create and delete", lambda: len(changes) == 6, 10)
        assert ours.news(changes[-2:]) == [], "our own re-create and delete are echoes"
    finally:
        stop.set()
        rawapi.delete(api, kind.object_path(name, ""))

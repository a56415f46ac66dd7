"""The watch cache (observe/informer.py): it equals a list, shows our writes at once, and
lists instead whenever it cannot be sure.

The unit tests drive stores by hand; the integration tests run the controller's real watches
against the real apiserver and compare every read with a full list (``cluster.Cluster``).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst
from kubernetes.client import ApiClient

from reconciler import devcluster
from reconciler.apply import writer as writers
from reconciler.controller import watches
from reconciler.devcluster import rawapi
from reconciler.model import kinds
from reconciler.model import observed as obs
from reconciler.observe import cluster, informer, sources

OURS = {"app.kubernetes.io/managed-by": "cu-reconciler"}


def _obj(kind: str, name: str, uid: str, rv: str, **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "uid": uid, "resourceVersion": rv, "labels": dict(OURS)}
    return {"apiVersion": "resource.k8s.io/v1", "kind": kind, "metadata": meta, **extra}


class _Listing:
    """A fallback Source that records that it was asked."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> obs.RawObjects:
        self.reads += 1
        return sources.classify(())


def _cache(barrier: float = 5.0) -> tuple[informer.Cache, _Listing, list[str]]:
    stores = {
        "DeviceClass": informer.Store(
            "DeviceClass", "/apis/resource.k8s.io/v1/deviceclasses", watches.OWNED
        ),
        "ResourceClaim": informer.Store("ResourceClaim", "/apis/resource.k8s.io/v1/resourceclaims"),
    }
    listing = _Listing()
    counted: list[str] = []
    cache = informer.Cache(stores, listing, barrier_seconds=barrier, counted=counted.append)
    return cache, listing, counted


def test_a_relist_keeps_the_identity_of_unchanged_objects_and_drops_the_gone() -> None:
    store = informer.Store("DeviceClass", "/apis/resource.k8s.io/v1/deviceclasses")
    a, b = _obj("DeviceClass", "a", "u-a", "1"), _obj("DeviceClass", "b", "u-b", "2")
    store.replace([a, b])
    first = {o["metadata"]["uid"]: o for o in store.items()}
    store.replace([dict(a), _obj("DeviceClass", "b", "u-b", "3")])
    second = {o["metadata"]["uid"]: o for o in store.items()}
    assert second["u-a"] is first["u-a"], "same resourceVersion: the same object"
    assert second["u-b"] is not first["u-b"] and second["u-b"]["metadata"]["resourceVersion"] == "3"
    store.replace([dict(a)])
    assert [o["metadata"]["uid"] for o in store.items()] == ["u-a"]
    assert store.holds("u-b", "99"), "a uid gone since our write satisfies the barrier"


def test_a_store_keeps_what_reconciles_read() -> None:
    """Nodes keep their conditions only; objects not ours lose their managedFields; ours
    keep them (the diff compares our field manager's entries)."""
    store = informer.Store("Node", "/api/v1/nodes")
    fields = [{"manager": "kubelet", "operation": "Update"}]
    ready = [{"type": "Ready", "status": "True"}]
    node = {
        "metadata": {"name": "n", "uid": "u-n", "resourceVersion": "1", "managedFields": fields},
        "status": {"conditions": ready, "images": [{"names": ["x"] * 50}], "capacity": {}},
    }
    store.replace([node])
    (kept,) = store.items()
    assert kept["status"] == {"conditions": ready} and "managedFields" not in kept["metadata"]
    assert kept["kind"] == "Node" and kept["apiVersion"] == "v1"
    slices = informer.Store("ResourceSlice", "/apis/resource.k8s.io/v1/resourceslices")
    ours = _obj("ResourceSlice", "ours", "u-1", "1")
    ours["metadata"]["managedFields"] = fields
    theirs = _obj("ResourceSlice", "theirs", "u-2", "1")
    theirs["metadata"] |= {"managedFields": fields, "labels": {}}
    slices.replace([ours, theirs])
    by_name = {o["metadata"]["name"]: o["metadata"] for o in slices.items()}
    assert by_name["ours"]["managedFields"] == fields
    assert "managedFields" not in by_name["theirs"]


def test_list_items_get_their_kind_and_reads_come_in_the_apiservers_order() -> None:
    store = informer.Store("ResourceClaim", "/apis/resource.k8s.io/v1/resourceclaims")
    items = [
        {"metadata": {"name": n, "namespace": ns, "uid": f"{ns}/{n}", "resourceVersion": "1"}}
        for ns, n in (("b", "a"), ("a", "z"), ("a", "b"))
    ]
    store.replace(items)
    added = _obj("ResourceClaim", "0", "x", "2")
    added["metadata"]["namespace"] = "a"
    store.event("ADDED", added)
    got = store.items()
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in got] == [
        ("a", "0"),
        ("a", "b"),
        ("a", "z"),
        ("b", "a"),
    ]
    assert {(o["apiVersion"], o["kind"]) for o in got} == {("resource.k8s.io/v1", "ResourceClaim")}


@settings(max_examples=60, deadline=None)
@given(
    hst.lists(
        hst.tuples(
            hst.sampled_from(("ADDED", "MODIFIED", "DELETED", "LIST")),
            hst.integers(0, 7),
        ),
        max_size=30,
    )
)
def test_reads_stay_in_list_order_through_any_events(events: list[tuple[str, int]]) -> None:
    """The store keeps its list order per event (no sort per read): after any sequence of
    events and re-lists, a read is what sorting the objects by (namespace, name) gives."""
    store = informer.Store("ResourceClaim", "/apis/resource.k8s.io/v1/resourceclaims")
    held: dict[str, dict[str, Any]] = {}
    for n, (kind, i) in enumerate(events):
        obj = _obj("ResourceClaim", f"c{i % 4}", f"u{i}", str(n + 1))
        obj["metadata"]["namespace"] = "ab"[i // 4]
        if kind == "LIST":
            held[f"u{i}"] = obj
            store.replace(list(held.values()))
        elif kind == "DELETED":
            held.pop(f"u{i}", None)
            store.event(kind, obj)
        else:
            held[f"u{i}"] = obj
            store.event(kind, obj)
    want = sorted(held.values(), key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    got = store.items()
    assert [o["metadata"]["uid"] for o in got] == [o["metadata"]["uid"] for o in want]
    assert [o["metadata"]["resourceVersion"] for o in got] == [
        o["metadata"]["resourceVersion"] for o in want
    ]


def test_our_objects_share_the_spec_of_their_planned_twin() -> None:
    """A stored object of ours keeps the planned object's spec when it is equal (one copy
    for planner and cache), whether it arrives after the plan (an event) or before it (a
    list at start, paired by ``adopt``); an unequal spec, or an object not ours, is kept as
    it came."""
    spec = {"devices": [{"name": "gpu-0"}], "driver": "cu.example.com"}
    planned = {
        "a": {**_obj("ResourceSlice", "a", "-", "-"), "spec": spec},
        "b": {**_obj("ResourceSlice", "b", "-", "-"), "spec": spec},
        "c": {**_obj("ResourceSlice", "c", "-", "-"), "spec": spec},
    }
    known: dict[str, dict[str, Any]] = {}
    store = informer.Store("ResourceSlice", "/apis/resource.k8s.io/v1/resourceslices")
    store.twin = lambda obj: known.get(obj["metadata"]["name"])
    listed = {**_obj("ResourceSlice", "a", "ua", "1"), "spec": copy.deepcopy(spec)}
    store.replace([listed])  # before any plan: no twin yet
    assert store.items()[0]["spec"] is not spec
    known.update(planned)
    store.adopt()
    assert store.items()[0]["spec"] is spec
    store.event("ADDED", {**_obj("ResourceSlice", "b", "ub", "2"), "spec": copy.deepcopy(spec)})
    other = {"devices": [{"name": "gpu-1"}], "driver": "cu.example.com"}
    store.event("ADDED", {**_obj("ResourceSlice", "c", "uc", "3"), "spec": other})
    foreign = _obj("ResourceSlice", "a", "ux", "4", spec=copy.deepcopy(spec))
    foreign["metadata"]["labels"] = {}
    foreign["metadata"]["namespace"] = "z"
    store.event("ADDED", foreign)
    got = {(o["metadata"]["name"], o["metadata"]["uid"]): o["spec"] for o in store.items()}
    assert got[("b", "ub")] is spec
    assert got[("c", "uc")] == other and got[("c", "uc")] is not spec
    assert got[("a", "ux")] == spec and got[("a", "ux")] is not spec


def test_a_read_waits_for_our_write_and_then_reads_the_stores() -> None:
    cache, listing, counted = _cache()
    for store in cache.stores.values():
        store.replace([])
    written = _obj("DeviceClass", "c", "u-c", "10")
    cache.wrote(written)
    # The watch delivers the write a moment after the write's answer.
    threading.Timer(0.2, cache.stores["DeviceClass"].event, ("ADDED", written)).start()
    raw = cache.read()
    assert listing.reads == 0 and counted == ["cache"]
    assert [o["metadata"]["uid"] for o in raw.owned] == ["u-c"]


def test_a_delete_is_waited_for_and_a_terminating_object_counts_as_released() -> None:
    cache, listing, _ = _cache()
    claim = _obj("ResourceClaim", "c", "u-claim", "5")
    claim["metadata"]["namespace"] = "t"
    cache.stores["ResourceClaim"].replace([claim])
    cache.stores["DeviceClass"].replace([])
    cache.deleted(claim)
    terminating = {**claim, "metadata": {**claim["metadata"], "deletionTimestamp": "now"}}
    threading.Timer(0.2, cache.stores["ResourceClaim"].event, ("MODIFIED", terminating)).start()
    raw = cache.read()
    assert listing.reads == 0
    assert raw.claims[0]["metadata"]["deletionTimestamp"] == "now"


def test_a_write_never_reflected_lists_instead_after_the_barrier() -> None:
    cache, listing, counted = _cache(barrier=0.3)
    for store in cache.stores.values():
        store.replace([])
    cache.wrote(_obj("DeviceClass", "c", "u-c", "10"))
    cache.read()
    assert listing.reads == 1 and counted == ["list"]
    # The list is newer than that write: the next read does not wait for it again.
    cache.read()
    assert listing.reads == 1 and counted == ["list", "cache"]


def test_a_broken_watch_lists_at_once_until_its_store_is_listed_again() -> None:
    cache, listing, counted = _cache(barrier=60.0)
    for store in cache.stores.values():
        store.replace([])
    cache.stores["ResourceClaim"].broke()
    started = time.monotonic()
    cache.read()
    assert listing.reads == 1 and counted == ["list"]
    assert time.monotonic() - started < 30, "did not wait out the barrier for a broken watch"
    cache.stores["ResourceClaim"].replace([])
    cache.read()
    assert counted == ["list", "cache"]


def test_writes_outside_the_stores_are_not_waited_for() -> None:
    """A write the watches do not select (another kind, or without the selector's label)
    would never be reflected: waiting for it would turn every read into a list."""
    cache, listing, _ = _cache(barrier=60.0)
    for store in cache.stores.values():
        store.replace([])
    cache.wrote({"kind": "Event", "metadata": {"uid": "e", "resourceVersion": "1"}})
    unlabelled = _obj("DeviceClass", "x", "u-x", "3")
    unlabelled["metadata"]["labels"] = {}
    cache.wrote(unlabelled)
    cache.read()
    assert listing.reads == 0


# --- the real apiserver ---------------------------------------------------------------------


def _wait(what: str, ok: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _versions(raw: obs.RawObjects) -> dict[str, dict[str, str]]:
    """Each bucket of a read as uid → resourceVersion (what a reconcile depends on)."""
    out: dict[str, dict[str, str]] = {}
    for bucket in ("nodes", "slices", "claims", "owned", "plugin_leases"):
        out[bucket] = {
            o["metadata"]["uid"]: o["metadata"]["resourceVersion"] for o in getattr(raw, bucket)
        }
    out["inventories"] = {k: str(sorted(v.items())) for k, v in (raw.inventories or {}).items()}
    return out


def _device_class(name: str) -> dict[str, Any]:
    """A DeviceClass wearing our label (the cache's watch selects it)."""
    return {
        "apiVersion": kinds.of("DeviceClass").api_version,
        "kind": "DeviceClass",
        "metadata": {"name": name, "labels": dict(OURS)},
        "spec": {"selectors": [{"cel": {"expression": 'device.driver == "a.example"'}}]},
    }


@pytest.fixture
def cached(api: ApiClient) -> Iterator[informer.Cache]:
    """The controller's watches, keeping the controller's stores."""
    stop = threading.Event()
    targets = watches.stored()
    cache = cluster.cached(api, watches.stores(targets))
    watches.start(api, lambda change: None, stop, targets, cache.stores)
    _wait("every store listed", lambda: all(s.synced for s in cache.stores.values()))
    try:
        yield cache
    finally:
        stop.set()


@pytest.mark.integration
def test_the_cache_reads_what_a_full_list_reads(api: ApiClient, cached: informer.Cache) -> None:
    """Through creates, edits and deletes by someone else, the cache converges to the list,
    object for object (uid and resourceVersion), and its reads are in the list's order."""
    kind = kinds.of("DeviceClass")
    names = [f"informer-probe-{i}" for i in range(3)]
    listing = cluster.Cluster(api)
    try:
        for name in names:
            body = _device_class(name)
            rawapi.apply(api, kind.object_path(name, ""), body, field_manager="someone-else")
        edited = {"metadata": {"annotations": {"hand": "edit"}}}
        rawapi.request(
            api,
            "PATCH",
            kind.object_path(names[1], ""),
            body=edited,
            content_type="application/merge-patch+json",
        )
        rawapi.delete(api, kind.object_path(names[2], ""))

        def same() -> bool:
            return _versions(cached.read()) == _versions(listing.read())

        _wait("the cache to equal a list", same)
        got = [o["metadata"]["name"] for o in cached.read().owned if o["kind"] == "DeviceClass"]
        assert names[0] in got and names[1] in got and names[2] not in got
        assert got == sorted(got), "in the apiserver's order"
    finally:
        for name in names:
            rawapi.delete(api, kind.object_path(name, ""))


@pytest.mark.integration
def test_our_writes_are_in_the_very_next_read(api: ApiClient, cached: informer.Cache) -> None:
    """Write, then read at once (no sleep): the read has the write, from the stores, not a
    list. Then delete, read at once: gone."""
    kind = kinds.of("DeviceClass")
    name = "informer-ryw"
    writer = writers.KubeWriter(api)
    counted: list[str] = []
    cached.counted = counted.append
    body = _device_class(name)
    try:
        for driver in ("a.example", "b.example", "c.example"):
            body["spec"]["selectors"][0]["cel"]["expression"] = f'device.driver == "{driver}"'
            stored = writer.apply(body, dry_run=False)
            cached.wrote(stored)
            mine = [o for o in cached.read().owned if o["metadata"]["name"] == name]
            assert [o["metadata"]["resourceVersion"] for o in mine] == [
                stored["metadata"]["resourceVersion"]
            ]
            assert driver in mine[0]["spec"]["selectors"][0]["cel"]["expression"]
        writer.delete(stored, dry_run=False)
        cached.deleted(stored)
        assert name not in {o["metadata"]["name"] for o in cached.read().owned}
        assert counted == ["cache"] * 4, "every read came from the stores"
    finally:
        rawapi.delete(api, kind.object_path(name, ""))


@pytest.mark.integration
def test_after_an_apiserver_restart_reads_list_until_the_watches_have_listed_again(
    api: ApiClient, control_plane: devcluster.ControlPlane, cached: informer.Cache
) -> None:
    """kill -9 of the apiserver: every store is out of step, so a read lists (it is never
    served from a cache that may have missed events); what changed right after the restart
    is in the cache once the watches have listed again."""
    kind = kinds.of("DeviceClass")
    name = "informer-after-restart"
    counted: list[str] = []
    cached.counted = counted.append
    control_plane.kill("kube-apiserver")
    _wait("every watch to notice", lambda: not any(s.synced for s in cached.stores.values()))
    control_plane.restart("kube-apiserver")
    api.rest_client.pool_manager.clear()
    body = _device_class(name)
    try:

        def written() -> bool:
            try:
                rawapi.apply(api, kind.object_path(name, ""), body, field_manager="someone-else")
            except Exception:  # still starting: refused, reset or timed out
                return False
            return True

        _wait("the apiserver to take a write", written, 30)
        if not all(s.synced for s in cached.stores.values()):
            raw = cached.read()
            assert counted[-1] == "list", "out of step: listed"
            assert name in {o["metadata"]["name"] for o in raw.owned}
        _wait("every store listed again", lambda: all(s.synced for s in cached.stores.values()))
        _wait(
            "the write in the cache",
            lambda: name in {o["metadata"]["name"] for o in cached.read().owned},
        )
        assert counted[-1] == "cache"
        listing = cluster.Cluster(api)
        _wait(
            "the cache to equal a list",
            lambda: _versions(cached.read()) == _versions(listing.read()),
        )
    finally:
        rawapi.delete(api, kind.object_path(name, ""))

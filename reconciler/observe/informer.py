"""Observation from watch caches, so an event costs what it changed, not a re-list.

Each watched collection has a :class:`Store`, filled by one full (paged) list and then kept
by that watch's events, as client-go's reflector keeps an informer's store
(:mod:`reconciler.controller.watches` runs the list and the watch). An object keeps its
identity while its resourceVersion holds, so the memos downstream (observe by uid +
resourceVersion, the plan's slices, the diff's in-sync pairs) find it unchanged without a
parse. :class:`Cache` is the :class:`reconciler.observe.sources.Source` over the stores.

What could make a cache wrong, and what stops it:

- *Our own writes not yet seen.* The reconcile after ours must see what we wrote, or it
  creates what exists (409) or plans against a claim we deleted. Every write reports to
  :meth:`Cache.wrote` / :meth:`Cache.deleted` (the controller's leader writer does), and
  :meth:`Cache.read` waits until each store holds that write (its uid at that
  resourceVersion or newer; a deleted uid gone or terminating). If that takes longer than
  :data:`BARRIER_SECONDS`, it lists instead.
- *A watch that broke* (apiserver restart, ``410 Gone``, a transport error, RBAC without
  ``watch``). Its store is not synced until its next list succeeds, and until then every
  read is a full list. A broken watch can make the cache stale, but never silently.
- *Other writers' changes.* Each arrives as a watch event that wakes the loop. The
  reconcile it wakes reads the cache after the event was applied (the watch applies it
  before it notifies). A list gives no more: it is a snapshot too.
- *Read order.* The planner must not see a different plan for the same objects, so a read
  sorts each collection as the apiserver lists it (by namespace and name).

The controller still lists from scratch when it becomes the leader and on its periodic
resync (``--resync``): the belt to these braces.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import observed as obs
from reconciler.model import ownership, sharing
from reconciler.observe import sources

log = logging.getLogger("cu-reconciler.informer")

BARRIER_SECONDS = 5.0
"""How long a read waits for the watches to deliver our own last writes before it lists."""
GONE_REMEMBERED = 65536
"""Deleted uids remembered per store (for the write barrier); older ones are forgotten."""


def api_version_of(path: str) -> str:
    """The apiVersion a collection path serves: ``/api/v1/...`` → ``v1``,
    ``/apis/<group>/<version>/...`` → ``<group>/<version>``."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return parts[1]
    return f"{parts[1]}/{parts[2]}"


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def not_older(have: str, want: str) -> bool:
    """Whether resourceVersion ``have`` is ``want`` or later. resourceVersions are opaque
    to clients, but etcd's are integers and the apiserver hands them out in order; anything
    else is only known to be as new when equal."""
    if have.isdigit() and want.isdigit():
        return int(have) >= int(want)
    return have == want


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What a store keeps of an object: without what no reconcile reads, as
    controller-runtime's cache transforms strip it. An object without our label loses its
    ``managedFields`` (only ours are compared, :func:`ownership.is_ours`); a Node keeps only
    its status conditions (observation reads its name, labels and annotations, the watch its
    Ready condition; a real Node's status lists every image it holds)."""
    meta = _meta(obj)
    if "managedFields" in meta and not ownership.is_owned(obj):
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    if obj.get("kind") == "Node" and isinstance(obj.get("status"), Mapping):
        obj = {**obj, "status": {"conditions": obj["status"].get("conditions") or []}}
    return obj


def _labels_match(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """``k=v[,k=v]`` equality selectors (the only kind the reconciler watches with)."""
    if not selector:
        return True
    labels = _meta(obj).get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


def _order_key(uid: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = _meta(obj)
    return (str(meta.get("namespace") or ""), str(meta.get("name", "")), uid)


@dataclass
class Store:
    """One collection as its watch last saw it: objects by uid."""

    kind: str
    path: str
    selector: str | None = None
    lock: threading.Condition = field(default_factory=threading.Condition, repr=False)
    """Shared by every store of a :class:`Cache`, so a read can wait on all of them."""
    synced: bool = False
    """Listed, and the watch since has not broken: the store is what the apiserver holds."""
    _items: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    _order: list[tuple[str, str, str]] = field(default_factory=list, repr=False)
    """(namespace, name, uid) of every object, sorted: the list order, kept per event so a
    read does not sort 25,000 objects again."""
    _keys: dict[str, tuple[str, str, str]] = field(default_factory=dict, repr=False)
    _gone: OrderedDict[str, None] = field(default_factory=OrderedDict, repr=False)
    _sharer: sharing.Sharer = field(default_factory=sharing.Sharer, repr=False)
    """Equal small maps and short strings of the stored objects are one instance each."""
    twin: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None
    """The object the last plan made for a stored object's key (the controller sets it):
    a stored object of ours whose spec equals its twin's keeps the twin's spec instead of a
    second copy (at 25,000 objects, the specs were 40 % of the store). Nothing modifies
    either (the rule that lets plans share objects), so sharing is safe."""
    _lonely: set[str] = field(default_factory=set, repr=False)
    """Objects of ours stored while their plan was not yet made (listed at start)."""

    @property
    def api_version(self) -> str:
        return api_version_of(self.path)

    def namespace(self) -> str | None:
        """The namespace of a namespaced collection path, else None."""
        parts = self.path.strip("/").split("/")
        return parts[parts.index("namespaces") + 1] if "namespaces" in parts else None

    def selects(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` belongs in this store (its kind, namespace and labels)."""
        if obj.get("kind") != self.kind:
            return False
        ns = self.namespace()
        if ns is not None and _meta(obj).get("namespace") != ns:
            return False
        return _labels_match(self.selector, obj)

    def _whole(self, obj: dict[str, Any], uid: str) -> dict[str, Any]:
        # List items carry no apiVersion/kind; watch events' objects do.
        if "kind" not in obj or "apiVersion" not in obj:
            obj = {"apiVersion": self.api_version, "kind": self.kind, **obj}
        obj = slim(obj)
        spec = self._twin_spec(uid, obj)
        if spec is None:
            whole: dict[str, Any] = self._sharer.share(obj)
            return whole
        # Shared without its spec: the twin's is already shared, and sharing a copy only
        # to drop it would fill the table with maps no object keeps.
        shared: dict[str, Any] = self._sharer.share({k: v for k, v in obj.items() if k != "spec"})
        shared["spec"] = spec
        return shared

    def _twin_spec(self, uid: str, obj: Mapping[str, Any]) -> Any:
        """The planned twin's spec when ``obj``'s equals it (:attr:`twin`), else None;
        remembers an object of ours that has no twin yet, for :meth:`adopt`."""
        if self.twin is None or not ownership.is_owned(obj):
            return None
        twin = self.twin(obj)
        if twin is None:
            self._lonely.add(uid)
            return None
        self._lonely.discard(uid)
        spec = twin.get("spec")
        return spec if spec is not None and obj.get("spec") == spec else None

    def adopt(self) -> None:
        """Give the objects of ours stored before their plan existed their twin's spec
        (:attr:`twin`); the controller calls it after a reconcile. Cheap when none waits."""
        if self.twin is None or not self._lonely:
            return
        with self.lock:
            for uid in list(self._lonely):
                self._lonely.discard(uid)
                obj = self._items.get(uid)
                if obj is None:
                    continue
                spec = self._twin_spec(uid, obj)
                if spec is not None and obj.get("spec") is not spec:
                    self._items[uid] = {**obj, "spec": spec}

    def _tidy(self) -> None:
        """Drop the shared maps no stored object uses any more (called under the lock)."""
        if self._sharer.crowded():
            self._sharer.rebuild(self._items.values())

    def replace(self, items: Iterable[dict[str, Any]]) -> None:
        """A list's result: everything the store holds (unchanged objects keep identity)."""
        fresh: dict[str, dict[str, Any]] = {}
        # Built outside the lock: only the watch's own thread writes a store, so its
        # objects cannot change meanwhile, and reads are not held up by a long list.
        for item in items:
            meta = _meta(item)
            uid = str(meta.get("uid") or "")
            old = self._items.get(uid)
            same = old is not None and _meta(old).get("resourceVersion") == meta.get(
                "resourceVersion"
            )
            fresh[uid] = old if same and old is not None else self._whole(item, uid)
        keys = {uid: _order_key(uid, obj) for uid, obj in fresh.items()}
        order = sorted(keys.values())
        with self.lock:
            for uid in self._items.keys() - fresh.keys():
                self._forget(uid)
            self._items, self._keys, self._order = fresh, keys, order
            self.synced = True
            self._tidy()
            self.lock.notify_all()

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        """A watch event (``ADDED``, ``MODIFIED``, ``DELETED``)."""
        uid = str(_meta(obj).get("uid") or "")
        if not uid:
            return
        with self.lock:
            self._unlist(uid)
            if kind == "DELETED":
                self._items.pop(uid, None)
                self._forget(uid)
            else:
                stored = self._items[uid] = self._whole(obj, uid)
                key = self._keys[uid] = _order_key(uid, stored)
                bisect.insort(self._order, key)
                self._tidy()
            self.lock.notify_all()

    def _unlist(self, uid: str) -> None:
        key = self._keys.pop(uid, None)
        if key is not None:
            i = bisect.bisect_left(self._order, key)
            if i < len(self._order) and self._order[i] == key:
                del self._order[i]

    def broke(self) -> None:
        """The watch stopped: events may be missed until the next list."""
        with self.lock:
            self.synced = False
            self.lock.notify_all()

    def _forget(self, uid: str) -> None:
        self._lonely.discard(uid)
        self._gone[uid] = None
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)

    def holds(self, uid: str, resource_version: str) -> bool:
        """Our write of ``uid`` at ``resource_version`` is reflected (or overtaken)."""
        if uid in self._gone:
            return True
        have = self._items.get(uid)
        return have is not None and not_older(
            str(_meta(have).get("resourceVersion") or ""), resource_version
        )

    def released(self, uid: str) -> bool:
        """Our delete of ``uid`` is reflected: gone, or terminating (finalizers pending)."""
        have = self._items.get(uid)
        return have is None or bool(_meta(have).get("deletionTimestamp"))

    def items(self) -> list[dict[str, Any]]:
        """The objects, in the order the apiserver lists them (namespace, name)."""
        with self.lock:
            return [self._items[uid] for _, _, uid in self._order]


@dataclass
class Cache:
    """A :class:`sources.Source` over watch-fed stores, with a list as its fallback."""

    stores: Mapping[str, Store]
    """By kind: one store per watched collection."""
    fallback: sources.Source
    """A full list, for when a store is not synced or our writes are not yet reflected."""
    finish: Callable[[obs.RawObjects], obs.RawObjects] = lambda raw: dataclasses.replace(
        raw, read_at=time.time(), inventories=raw.inventories or {}
    )
    """What a read adds beyond the objects: the time (and, on a live cluster,
    :meth:`reconciler.observe.cluster.Cluster.finish`'s capability probe)."""
    barrier_seconds: float = BARRIER_SECONDS
    lock: threading.Condition = field(default_factory=threading.Condition)
    counted: Callable[[str], None] = lambda source: None
    """Told of each read's source, ``cache`` or ``list``: a cache that always lists is
    broken (a missing ``watch`` permission, say), and the controller's metrics say so."""
    _written: dict[tuple[str, str], str] = field(default_factory=dict)
    """(kind, uid) → resourceVersion of our writes not yet seen reflected."""
    _deleted: dict[tuple[str, str], None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for store in self.stores.values():
            store.lock = self.lock

    def serves(self, namespace: str) -> bool:
        """Whether the namespaced stores (presence Leases, inventory) watch ``namespace``."""
        return all(s.namespace() in (None, namespace) for s in self.stores.values())

    def wrote(self, stored: Mapping[str, Any]) -> None:
        """A write's answer (the object as stored): the next read must include it."""
        store = self.stores.get(str(stored.get("kind") or ""))
        meta = _meta(stored)
        uid, rv = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
        if store is None or not uid or not rv or not store.selects(stored):
            return  # not a collection we cache (or not one this watch selects)
        with self.lock:
            self._written[(store.kind, uid)] = rv

    def deleted(self, obj: Mapping[str, Any]) -> None:
        """A delete the apiserver accepted: the next read must not hold the object."""
        store = self.stores.get(str(obj.get("kind") or ""))
        uid = str(_meta(obj).get("uid") or "")
        if store is None or not uid:
            return
        with self.lock:
            self._written.pop((store.kind, uid), None)
            self._deleted[(store.kind, uid)] = None

    def _reflected(self) -> bool:
        written = all(self.stores[k].holds(uid, rv) for (k, uid), rv in self._written.items())
        return written and all(self.stores[k].released(uid) for k, uid in self._deleted)

    def _settle(self) -> bool:
        """Wait until every store is synced and holds our writes; False = list instead."""

        def synced() -> bool:
            return all(s.synced for s in self.stores.values())

        with self.lock:
            # A broken watch will not mend within the barrier: list at once.
            self.lock.wait_for(lambda: not synced() or self._reflected(), self.barrier_seconds)
            ready = synced() and self._reflected()
            # Either way, nothing earlier needs waiting for again: a list is newer than it.
            self._written.clear()
            self._deleted.clear()
            return ready

    def read(self) -> obs.RawObjects:
        if not self._settle():
            self.counted("list")
            log.info("watch caches not in step: listing instead")
            return self.fallback.read()
        self.counted("cache")
        items = [obj for store in self.stores.values() for obj in store.items()]
        return self.finish(sources.classify(items))

"""Watches that wake the loop: what vendor drivers publish, Nodes, claims, and what we own.

One thread per resource: list (everything into its store, for the watch cache of
:mod:`reconciler.observe.informer`; else one item, for a resourceVersion), then ``?watch=1``
with bookmarks, restarted on timeout and re-listed on ``410 Gone`` or any transport failure
(an apiserver restart), retrying every :data:`RETRY_CAP` seconds at most. Every list
notifies a :data:`RELISTED` change: whatever happened between the old watch breaking and
the new list's resourceVersion (a fence binding deleted right after an apiserver restart)
no event will ever report, so the loop reconciles from a fresh read instead.
Each event whose relevant
content changed calls ``notify`` with a :class:`Change`; the loop debounces, and drops the
changes that turn out to be its own writes (:mod:`reconciler.controller.echoes`: the
write's response may arrive after its event, so this is decided later). Relevant content is
the object without ``resourceVersion``/``managedFields`` and, for Nodes, without the
kubelet's heartbeat (only the Ready condition counts) and, for DeviceTaintRules, without
the status, so a quiet cluster does not wake the controller.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client import ApiClient

from reconciler import kube
from reconciler.model import ownership, presence
from reconciler.observe import cluster, informer

log = logging.getLogger("cu-reconciler.watch")
OWNED = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"
WATCH_SECONDS = 300
RETRY_CAP = 2.0
"""Longest pause between attempts to re-list after a failure: how late, at worst, a watch
notices the apiserver is back (and so how long a change made meanwhile waits for repair)."""
RELISTED = "RELISTED"
"""The :attr:`Change.event` of a (re-)list: events may have been missed, reconcile."""


@dataclass(frozen=True, slots=True)
class Change:
    """One watch event that may matter: which object, at which resourceVersion."""

    kind: str
    event: str
    """``ADDED``, ``MODIFIED``, ``DELETED``, or :data:`RELISTED` (uid empty)."""
    uid: str
    resource_version: str


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    path: str
    selector: str | None = None
    notify: bool = True
    """Whether its changes wake the loop (False: only kept in a store for reads)."""


TARGETS: tuple[Target, ...] = (
    Target("ResourceSlice", "/apis/resource.k8s.io/v1/resourceslices"),
    Target("Node", "/api/v1/nodes"),
    Target("ResourceClaim", "/apis/resource.k8s.io/v1/resourceclaims"),
    Target("DeviceTaintRule", "/apis/resource.k8s.io/v1/devicetaintrules"),
    Target("DeviceClass", "/apis/resource.k8s.io/v1/deviceclasses", OWNED),
    Target("ResourceClaimTemplate", "/apis/resource.k8s.io/v1/resourceclaimtemplates", OWNED),
    # The fence's admission objects are watched whole, not by our label: a hand edit that
    # strips the label must wake the loop as surely as one that weakens the policy.
    Target(
        "ValidatingAdmissionPolicy",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    ),
    Target(
        "ValidatingAdmissionPolicyBinding",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
    ),
)


def stored(presence_namespace: str = cluster.PRESENCE_NAMESPACE) -> tuple[Target, ...]:
    """Every collection a reconcile reads (:mod:`reconciler.observe.cluster`'s lists), as
    watches that keep a store: :data:`TARGETS`, and three that never wake the loop. Our
    ResourceQuotas (the kube-controller-manager rewrites their usage on every claim), the
    kubelet plugins' presence Leases (renewed every few seconds; a lapse is found by the
    periodic resync, as before) and our inventory ConfigMaps (only we write them)."""
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{presence_namespace}/leases"
    configmaps = f"/api/v1/namespaces/{presence_namespace}/configmaps"
    return (
        *TARGETS,
        Target("ResourceQuota", "/api/v1/resourcequotas", OWNED, notify=False),
        Target("Lease", leases, f"{presence.PRESENCE_LABEL}=true", notify=False),
        Target("ConfigMap", configmaps, cluster.INVENTORY_SELECTOR, notify=False),
    )


def stores(targets: tuple[Target, ...]) -> dict[str, informer.Store]:
    """One empty store per target, by kind (for :func:`start` and the cache)."""
    return {t.kind: informer.Store(t.kind, t.path, t.selector) for t in targets}


STATUS_IGNORED = frozenset({"DeviceTaintRule"})
"""Kinds whose status no reconcile reads: the kube-controller-manager's device-taint
eviction controller writes a DeviceTaintRule's conditions after we create it, which would
otherwise wake a full reconcile that writes nothing (observed on the generated repository)."""


def fingerprint(kind: str, obj: Mapping[str, Any]) -> str:
    """A digest of what a reconcile could depend on."""
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("resourceVersion", "managedFields")
    }
    body: dict[str, Any] = {**obj, "metadata": meta}
    if kind in STATUS_IGNORED:
        body.pop("status", None)
    if kind == "Node":
        conditions = (obj.get("status") or {}).get("conditions") or ()
        ready = [c.get("status") for c in conditions if c.get("type") == "Ready"]
        body["status"] = {"ready": ready}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class Watch:
    api: ApiClient
    target: Target
    notify: Callable[[Change], None]
    stop: threading.Event
    store: informer.Store | None = None
    """Kept as the apiserver holds the collection (a full list, then every event), for
    :class:`reconciler.observe.informer.Cache`; None: the watch only wakes the loop."""

    def run(self) -> None:
        seen: dict[str, str] = {}
        backoff = kube.RetryPolicy(attempts=1, base=0.5, cap=RETRY_CAP)
        failures = 0
        while not self.stop.is_set():
            try:
                rv = self._list_rv()
                failures = 0
                if self.target.notify:
                    self.notify(Change(self.target.kind, RELISTED, "", rv))
                while not self.stop.is_set() and rv:
                    rv = self._watch(rv, seen)
            except Exception as exc:  # any transport failure: back off, re-list
                failures += 1
                log.debug("watch %s: %s", self.target.kind, exc)
                self.stop.wait(backoff.delay(min(failures, 6)))
            finally:
                if self.store is not None:
                    self.store.broke()  # until the next list, reads list instead

    def _query(self) -> dict[str, str]:
        return {"labelSelector": self.target.selector} if self.target.selector else {}

    def _list_rv(self) -> str:
        """The resourceVersion to watch from; with a store, after listing everything into it
        (paged: every page of one list is served at the first page's resourceVersion)."""
        rv = ""

        def pages() -> Iterator[dict[str, Any]]:
            # Page by page into the store: a page's parsed JSON is dropped once stored.
            nonlocal rv
            token = ""
            while True:
                query = {**self._query(), "limit": str(cluster.PAGE if self.store else 1)}
                if token:
                    query["continue"] = token
                resp = kube.call(self.api, "GET", self.target.path, query=query)
                if not resp.ok or not isinstance(resp.data, dict):
                    raise RuntimeError(resp.reason())
                meta = resp.data.get("metadata") or {}
                rv = str(meta.get("resourceVersion") or "")
                yield from resp.data.get("items") or ()
                token = str(meta.get("continue") or "") if self.store is not None else ""
                if not token:
                    return

        if self.store is not None:
            self.store.replace(pages())
        else:
            for _ in pages():
                pass
        return rv

    def _watch(self, rv: str, seen: dict[str, str]) -> str:
        """Follow one watch request; return the resourceVersion to resume at ("" = re-list)."""
        query = {
            **self._query(),
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": rv,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        method, url, headers, body, _ = self.api.param_serialize(
            method="GET",
            resource_path=self.target.path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        resp = self.api.call_api(
            method, url, header_params=headers, body=body, _request_timeout=WATCH_SECONDS + 30
        )
        raw = resp.response
        try:
            if resp.status != 200:
                return ""
            for line in raw:
                if self.stop.is_set():
                    return ""
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                new_rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                kind = event.get("type")
                if kind == "ERROR":
                    return ""  # 410 Gone and friends: re-list
                rv = str(new_rv)
                if kind == "BOOKMARK":
                    continue
                uid = str((obj.get("metadata") or {}).get("uid") or "")
                change = Change(self.target.kind, str(kind), uid, rv)
                if self.store is not None:  # before the loop hears of it
                    self.store.event(str(kind), obj)
                if not self.target.notify:
                    continue
                if kind == "DELETED":
                    seen.pop(uid, None)
                    self.notify(change)
                    continue
                digest = fingerprint(self.target.kind, obj)
                if seen.get(uid) != digest:  # from a list's resourceVersion: all news
                    seen[uid] = digest
                    self.notify(change)
            return rv
        finally:
            raw.release_conn()


def start(
    api: ApiClient,
    notify: Callable[[Change], None],
    stop: threading.Event,
    targets: tuple[Target, ...] = TARGETS,
    stores: Mapping[str, informer.Store] | None = None,
) -> list[threading.Thread]:
    """One thread per target; a target whose kind has a store in ``stores`` keeps it."""
    threads = []
    for target in targets:
        watch = Watch(api, target, notify, stop, (stores or {}).get(target.kind))
        thread = threading.Thread(target=watch.run, name=f"watch-{target.kind}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads

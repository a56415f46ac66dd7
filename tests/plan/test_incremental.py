"""Incremental planning: a plan made with the controller's memo equals a plan made from scratch.

The controller keeps a ``planning.Memo`` across reconciles so an event recomputes only what
it can affect (today: the ResourceSlices of the nodes whose devices or live slices changed).
The contract is equality, after every event of a random sequence — a node lost or back, a
device turning unhealthy, a node relabelled into another pool, a claim added or removed, a
factor moved, a new revision (each leaving what it does not change the same object) — with
the live side either the previous plan's own objects (``plan --base``, the benchmark) or
what an apiserver would return after applying it (new objects on every list, a uid, and a
resourceVersion that changes on every write), or the controller's watch cache of it
(observe/informer.py: unchanged objects kept, small maps shared between objects).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import cu_example as ex
from hypothesis import given, settings
from hypothesis import strategies as hst

from reconciler import plan as planning
from reconciler.diff import changeset
from reconciler.model import observed as obs
from reconciler.model import ownership
from reconciler.observe import informer
from reconciler.plan import managed, safety

_MODELS = (("nvidia", "H100"), ("nvidia", "A100"), ("biren", "BR104"), ("hygon", "Z100"))
_NODES = 8


@dataclasses.dataclass
class _World:
    present: set[int] = dataclasses.field(default_factory=lambda: set(range(_NODES)))
    unhealthy: set[int] = dataclasses.field(default_factory=set)
    external: set[int] = dataclasses.field(default_factory=set)
    """Nodes whose first device a hand-made claim holds (charged before admission)."""
    claims: list[Any] = dataclasses.field(default_factory=lambda: list(ex.CLAIMS))
    factor: float = 1.55
    guarantee: int = 200
    """ads's guarantee in pool train."""
    revision: int = 0
    added: int = 0
    edge: set[int] = dataclasses.field(default_factory=set)
    """Nodes labelled for pool edge (its node selector): their devices change pools."""
    memo: obs.Memo = dataclasses.field(default_factory=obs.Memo)
    made: dict[object, Any] = dataclasses.field(default_factory=dict)
    """Documents already made, so what an event leaves alone keeps its identity, as in the
    controller (an identity check is how the memo's caches tell it is unchanged)."""

    def _once(self, key: object, make: Any) -> Any:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def observed(self) -> obs.ObservedState:
        slices = []
        for i in sorted(self.present):
            vendor, model = _MODELS[i % len(_MODELS)]
            sick = {"unhealthy": [0]} if i in self.unhealthy else {}
            slices.append(ex.vendor_slice(f"n{i}", vendor, model, 2, **sick))
        nodes = tuple(
            ex.node(f"n{i}", {"tier": "edge"} if i in self.edge else {})
            for i in sorted(self.present)
        )
        adapters = self._once("adapters", ex.adapters)
        first = obs.build(obs.RawObjects(nodes=nodes, slices=tuple(slices)), adapters, ex.DRIVER)
        claims = []
        for i in sorted(self.external):
            device = min(
                (d for d in first.devices if d.node == f"n{i}"), key=lambda d: d.id, default=None
            )
            if device is None:
                continue
            result = {
                "request": "cu-0",
                "driver": ex.DRIVER,
                "pool": f"n{i}",
                "device": f"{device.vendor}-{device.id.device}",
            }
            claims.append(
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceClaim",
                    "metadata": {"name": f"hand-{i}", "namespace": "lab"},
                    "status": {"allocation": {"devices": {"results": [result]}}},
                }
            )
        raw = obs.RawObjects(nodes=nodes, slices=tuple(slices), claims=tuple(claims))
        return obs.build(raw, adapters, ex.DRIVER, self.memo)

    def desired(self) -> Any:
        base = self._once(("revision", self.revision), self._base)
        return dataclasses.replace(
            base,
            claims=tuple(self.claims),
            factor_tables=(self._once(("factor", self.factor), self._table),),
            tenants=self._once(("guarantee", self.guarantee), self._tenants),
        )

    def _base(self) -> Any:
        edge = ex.pool("edge", {"selector": {"nodeSelector": {"matchLabels": {"tier": "edge"}}}})
        return ex.desired(revision=f"{self.revision:040x}", pools=(*ex.POOLS, edge))

    def _table(self) -> Any:
        table = ex.factor_table()
        factors = [
            f.model_copy(update={"value": self.factor})
            if f.device_model == "H100-SXM5-80GB" and f.workload_class == "decode"
            else f
            for f in table.spec.factors
        ]
        return table.model_copy(update={"spec": table.spec.model_copy(update={"factors": factors})})

    def _tenants(self) -> Any:
        return tuple(
            ex.tenant(
                "ads",
                {
                    "namespaces": ["ads"],
                    "priority": 50,
                    "mayBorrow": True,
                    "quotas": [
                        {"pool": "train", "guaranteed": self.guarantee},
                        {"pool": "infer", "guaranteed": 10},
                    ],
                },
            )
            if t.metadata.name == "ads"
            else t
            for t in ex.TENANTS
        )


def _event(world: _World, kind: str, i: int) -> None:
    if kind == "lose":
        world.present.discard(i)
    elif kind == "return":
        world.present.add(i)
    elif kind == "unhealthy":
        world.unhealthy ^= {i}
    elif kind == "external":
        world.external ^= {i}
    elif kind == "claim_added":
        world.added += 1
        tenant, pool, cu = (("lab", "train", 25), ("ads", "infer", 5), ("search", "train", 40))[
            i % 3
        ]
        world.claims.append(
            ex.claim(f"new-{world.added}", {"tenant": tenant, "pool": pool, "cu": cu})
        )
    elif kind == "claim_removed" and world.claims:
        world.claims.pop(i % len(world.claims))
    elif kind == "guarantee":
        world.guarantee = 200 if world.guarantee != 200 else 40 * (1 + i % 3)
    elif kind == "factor":
        world.factor = round(world.factor * (1.1 if i % 2 else 0.9), 4)
    elif kind == "revision":
        world.revision += 1
    elif kind == "edge":
        world.edge ^= {i}


class _Apiserver:
    """What a re-list returns after the target is applied: new objects every time, each with
    a uid, a resourceVersion that changes exactly when its content does, our applied stamp
    and the managedFields server-side apply records."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.versions = itertools.count(1)
        self.events: list[tuple[str, dict[str, Any]]] = []
        """What a watch would deliver since the last :meth:`watched`."""
        self.store = informer.Store("Any", "/apis/any/v1/any")
        """The controller's watch cache of all of it (one store: one kind's is no different)."""

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        wanted = {safety.object_key(o): o for o in objects}
        for key in set(self.stored) - set(wanted):
            self.events.append(("DELETED", self.stored.pop(key)))
        for key, obj in wanted.items():
            old = self.stored.get(key)
            body = copy.deepcopy(managed.stamped(obj))
            body["metadata"]["managedFields"] = [
                {
                    "manager": ownership.FIELD_MANAGER,
                    "operation": "Apply",
                    "apiVersion": obj["apiVersion"],
                    "fieldsType": "FieldsV1",
                    "fieldsV1": managed.fieldset_of(obj),
                }
            ]
            if old is not None:
                same = {**old, "metadata": {**old["metadata"]}}
                del same["metadata"]["uid"], same["metadata"]["resourceVersion"]
                if same == body:
                    continue
            body["metadata"]["uid"] = old["metadata"]["uid"] if old else f"uid-{key}"
            body["metadata"]["resourceVersion"] = str(next(self.versions))
            self.stored[key] = body
            self.events.append(("MODIFIED" if old else "ADDED", body))

    def list(self) -> tuple[dict[str, Any], ...]:
        return tuple(copy.deepcopy(o) for _, o in sorted(self.stored.items()))

    def watched(self) -> tuple[dict[str, Any], ...]:
        """The watch cache's read: the events since the last one applied to the store
        (unchanged objects keep their identity, their small maps are shared)."""
        for kind, obj in self.events:
            self.store.event(kind, copy.deepcopy(obj))
        self.events.clear()
        self.store.adopt()
        return tuple(self.store.items())

    def live(self, mode: str, last: planning.Plan) -> tuple[dict[str, Any], ...]:
        if mode == "relist":
            return self.list()
        if mode == "watch":
            return self.watched()
        return last.objects


_EVENTS = hst.tuples(
    hst.sampled_from(
        (
            "lose",
            "return",
            "unhealthy",
            "external",
            "claim_added",
            "claim_removed",
            "factor",
            "guarantee",
            "revision",
            "edge",
        )
    ),
    hst.integers(0, _NODES - 1),
)


def _same(a: planning.Plan, b: planning.Plan) -> None:
    assert a.objects == b.objects
    assert a.report == b.report
    assert a.refusal == b.refusal


@settings(max_examples=40, deadline=None)
@given(
    events=hst.lists(_EVENTS, min_size=1, max_size=10),
    mode=hst.sampled_from(("plan", "relist", "watch")),
)
def test_a_plan_with_the_memo_equals_a_plan_from_scratch_after_every_event(
    events: list[tuple[str, int]], mode: str
) -> None:
    """Whatever the live side: the last plan, a re-list, or the controller's watch cache
    (whose objects must also come out of planning and diffing exactly as they went in)."""
    world = _World()
    memo = planning.Memo()
    changes = changeset.Memo()
    server = _Apiserver()
    # As the controller does: our stored objects share their planned twin's spec.
    server.store.twin = memo.planned
    last = planning.plan(world.desired(), world.observed(), (), memo=memo)
    server.apply(last.objects)
    for kind, i in events:
        _event(world, kind, i)
        desired, observed = world.desired(), world.observed()
        live = server.live(mode, last)
        before = copy.deepcopy(live)
        fresh = planning.plan(desired, observed, live)
        incremental = planning.plan(desired, observed, live, memo=memo)
        _same(incremental, fresh)
        assert changeset.compute(incremental.objects, live, memo=changes) == changeset.compute(
            fresh.objects, live
        )
        assert live == before, "planning and diffing modify no live object"
        last = incremental
        server.apply(last.objects)


def test_one_unhealthy_device_rebuilds_one_node_only() -> None:
    """The memo is used: a device event rebuilds its node's slices and reuses the others
    (the same objects), whether the live side is the last plan or a re-list."""
    for relisted in (False, True):
        world = _World()
        memo = planning.Memo()
        server = _Apiserver()
        last = planning.plan(world.desired(), world.observed(), (), memo=memo)
        assert memo.slices.built == _NODES
        server.apply(last.objects)
        live = server.list() if relisted else last.objects
        again = planning.plan(world.desired(), world.observed(), live, memo=memo)
        # The previous plan as live is its own output; a first re-list has new versions.
        assert memo.slices.built == (_NODES if relisted else 0)
        server.apply(again.objects)
        world.unhealthy.add(3)
        live = server.list() if relisted else again.objects
        after = planning.plan(world.desired(), world.observed(), live, memo=memo)
        assert memo.slices.built == 1
        _same(after, planning.plan(world.desired(), world.observed(), live))
        before = {o["metadata"]["name"]: o for o in again.objects if o["kind"] == "ResourceSlice"}
        for obj in after.objects:
            if obj["kind"] != "ResourceSlice":
                continue
            name = obj["metadata"]["name"]
            assert (obj is before[name]) == (obj["spec"]["nodeName"] != "n3"), name
        n3 = next(o for o in after.objects if o["metadata"]["name"].startswith("cu-n3-"))
        assert (
            n3["spec"]["pool"]["generation"]
            == before[n3["metadata"]["name"]]["spec"]["pool"]["generation"] + 1
        )


def test_a_hand_edited_live_slice_is_rebuilt() -> None:
    """A write by someone else changes the resourceVersion: the node is planned again and
    its generation moves past the edit, as without a memo."""
    world = _World()
    memo = planning.Memo()
    server = _Apiserver()
    last = planning.plan(world.desired(), world.observed(), (), memo=memo)
    server.apply(last.objects)
    planning.plan(world.desired(), world.observed(), server.list(), memo=memo)
    key = next(k for k in server.stored if k[-1].startswith("cu-n2-"))
    edited = copy.deepcopy(server.stored[key])
    edited["spec"]["devices"][0]["capacity"]["cu"]["value"] = "9999"
    del edited["metadata"]["uid"], edited["metadata"]["resourceVersion"]
    server.apply([o if safety.object_key(o) != key else edited for o in last.objects])
    live = server.list()
    after = planning.plan(world.desired(), world.observed(), live, memo=memo)
    assert memo.slices.built == 1
    _same(after, planning.plan(world.desired(), world.observed(), live))
    [n2] = [o for o in after.objects if safety.object_key(o) == key]
    assert n2["spec"]["devices"][0]["capacity"]["cu"]["value"] != "9999"
    assert n2["spec"]["pool"]["generation"] == edited["spec"]["pool"]["generation"] + 1


def test_the_changeset_reuses_pairs_in_sync_and_rechecks_a_written_one() -> None:
    """Pairs whose target is the same object and whose live object has the same uid and
    resourceVersion are in sync without being digested again; a write by anyone (a new
    resourceVersion) is checked again, and the result is the one computed without memo."""
    world = _World()
    memo, changes = planning.Memo(), changeset.Memo()
    server = _Apiserver()
    server.apply(planning.plan(world.desired(), world.observed(), ()).objects)
    planned = planning.plan(world.desired(), world.observed(), server.list(), memo=memo)
    live = server.list()
    planned = planning.plan(world.desired(), world.observed(), live, memo=memo)
    first = changeset.compute(planned.objects, live, memo=changes)
    assert changes.reused == 0 and not first.changes
    live = server.list()
    planned = planning.plan(world.desired(), world.observed(), live, memo=memo)
    assert memo.kept == len(planned.objects)
    again = changeset.compute(planned.objects, live, memo=changes)
    assert changes.reused == len(planned.objects) and not again.changes
    # Someone else writes a label onto one slice: a new resourceVersion, our stamp intact.
    key = next(k for k in server.stored if k[-1].startswith("cu-n4-"))
    server.stored[key]["metadata"]["labels"]["team"] = "hand-edit"
    server.stored[key]["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "apiVersion": "resource.k8s.io/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}},
        }
    )
    server.stored[key]["metadata"]["resourceVersion"] = "edited"
    live = server.list()
    planned = planning.plan(world.desired(), world.observed(), live, memo=memo)
    after = changeset.compute(planned.objects, live, memo=changes)
    assert changes.reused == len(planned.objects) - 1
    assert after == changeset.compute(planned.objects, live)
    [changed] = after.changes
    assert changed.key.name.startswith("cu-n4-") and changed.foreign


def test_a_claim_added_in_one_pool_admits_that_pool_only() -> None:
    world = _World()
    memo = planning.Memo()
    last = planning.plan(world.desired(), world.observed(), (), memo=memo)
    assert memo.admission.admitted == 2  # train and infer
    # Against its own output as live: the claims now exist, so both pools are admitted again.
    again = planning.plan(world.desired(), world.observed(), last.objects, memo=memo)
    assert memo.admission.admitted == 2
    again = planning.plan(world.desired(), world.observed(), again.objects, memo=memo)
    assert memo.admission.admitted == 0
    assert memo.claims.built == 0 and memo.kept == len(again.objects)
    _event(world, "claim_added", 1)  # ads, pool infer
    after = planning.plan(world.desired(), world.observed(), again.objects, memo=memo)
    assert memo.admission.admitted == 1
    assert 1 <= memo.claims.built < len(world.claims)
    _same(after, planning.plan(world.desired(), world.observed(), again.objects))
    assert any(d.claim == "new-1" for d in after.report.decisions)
    settled = planning.plan(world.desired(), world.observed(), after.objects, memo=memo)
    assert memo.admission.admitted == 1  # new-1 exists now
    _event(world, "external", 0)  # a hand-made claim on an nvidia device: pool train
    later = planning.plan(world.desired(), world.observed(), settled.objects, memo=memo)
    assert memo.admission.admitted == 1
    _same(later, planning.plan(world.desired(), world.observed(), settled.objects))
    assert later.report != settled.report

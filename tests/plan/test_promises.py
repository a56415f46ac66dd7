"""Promises over generated fleets, tenants and sequences of node losses and returns.

Each step applies the previous plan (its objects become the live side) and then loses or
regains nodes. After every step:

- an existing claim or template of a non-preemptible tenant is still admitted (its object
  stays in the target): a promise is never broken by admission, only reported short;
- one accounting: each pool's capacity = Σ tenants + unaccounted + free + headroom, the
  tenant rows add up to the pool, and each tenant's row is the sum of its decisions;
- a Whole device is given out once;
- a higher priority never loses to a lower one: removing every lower-priority claim that is
  not pinned does not admit a pending claim within its guarantee, and removing the
  lower-priority *borrowers* does not admit it at all;
- the plan is deterministic under shuffled inputs.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import cu_example as ex
from hypothesis import given, settings
from hypothesis import strategies as hs

from reconciler import plan as planning
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.plan import admission

_TENANTS = ("t0", "t1", "t2", "t3")
_NODES = ("n1", "n2", "n3", "n4")


@hs.composite
def fleets(draw: hs.DrawFn) -> tuple[st.DesiredState, list[frozenset[str]]]:
    fractional = draw(hs.booleans())
    spec: dict[str, Any] = {"selector": {"vendors": ["nvidia", "biren"]}}
    if fractional:
        spec["sharing"] = {"mode": "Fractional", "minStep": draw(hs.sampled_from([5, 10, 25]))}
    spec["headroomPercent"] = draw(hs.sampled_from([0, 10]))
    pools = (ex.pool("train", spec), ex.POOLS[1])
    tenants = []
    for i, name in enumerate(_TENANTS):
        tenants.append(
            ex.tenant(
                name,
                {
                    "namespaces": ["lab"],
                    "priority": draw(hs.integers(0, 3)) * 10 + i,
                    "mayBorrow": draw(hs.booleans()),
                    "preemptible": draw(hs.booleans()),
                    "quotas": [
                        {"pool": "train", "guaranteed": draw(hs.sampled_from([0, 100, 200, 300]))},
                        {"pool": "infer", "guaranteed": draw(hs.sampled_from([0, 5, 10]))},
                    ],
                },
            )
        )
    claims = []
    for i in range(draw(hs.integers(1, 10))):
        claim: dict[str, Any] = {
            "tenant": draw(hs.sampled_from(_TENANTS)),
            "pool": draw(hs.sampled_from(["train", "train", "infer"])),
            "namespace": "lab",
            "cu": draw(hs.sampled_from([5, 20, 40, 60, 100, 150])),
            "count": draw(hs.integers(1, 2)),
        }
        if draw(hs.booleans()):
            claim |= {"form": "ResourceClaimTemplate", "replicas": draw(hs.integers(1, 3))}
        claims.append(ex.claim(f"c{i}", claim))
    steps = draw(
        hs.lists(
            hs.frozensets(hs.sampled_from(_NODES)).map(lambda lost: frozenset(_NODES) - lost),
            min_size=1,
            max_size=4,
        )
    )
    desired = ex.desired(pools=pools, tenants=tuple(tenants), claims=tuple(claims))
    return desired, steps


def _observed(
    nodes: frozenset[str], owned: Any, claims: tuple[dict[str, Any], ...] = ()
) -> obs.ObservedState:
    raw = ex.raw(claims=claims)
    kept = tuple(s for s in raw.slices if s["spec"]["nodeName"] in nodes)
    present = tuple(n for n in raw.nodes if n["metadata"]["name"] in nodes)
    built = obs.build(
        obs.RawObjects(nodes=present, slices=kept, claims=raw.claims), ex.adapters(), ex.DRIVER
    )
    return obs.ObservedState(
        nodes=built.nodes,
        devices=built.devices,
        claims=built.claims,
        owned=owned,
        findings=built.findings,
    )


def _in_use(decision: admission.Decision) -> dict[str, Any]:
    """The claim as the cluster shows it once a Pod runs on what admission chose."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": decision.claim, "namespace": decision.namespace},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": f"gpu-{i}/vendor",
                            "driver": d.driver,
                            "pool": d.pool,
                            "device": d.device,
                        }
                        for i, d in enumerate(decision.devices)
                    ]
                }
            },
            "reservedFor": [{"resource": "pods", "name": f"{decision.claim}-pod", "uid": "u"}],
        },
    }


def _check_accounting(result: planning.Plan) -> None:
    report = result.report
    per_tenant: dict[tuple[str, str], int] = defaultdict(int)
    for d in report.decisions:
        per_tenant[(d.tenant, d.pool)] += d.charged_milli
    rows = {(t.tenant, t.pool): t.after_milli for t in report.tenants if t.after_milli}
    assert rows == {k: v for k, v in per_tenant.items() if v}
    for pool in report.pools:
        tenants = sum(t.after_milli for t in report.tenants if t.pool == pool.name)
        assert tenants == pool.admitted_milli
        assert pool.total_milli == (
            pool.admitted_milli + pool.unaccounted_milli + pool.free_milli + pool.headroom_milli
        )
        whole = [
            did
            for d in report.decisions
            if d.pool == pool.name and pool.sharing == "Whole"
            for did in d.devices
        ]
        assert len(whole) == len(set(whole)), "a whole device is given out once"


def _pinned_live(result: planning.Plan, desired: st.DesiredState) -> set[str]:
    """Claims whose object exists and whose tenant is not preemptible."""
    tenants = {t.metadata.name: t for t in desired.tenants}
    names = {
        str(o["metadata"]["name"])
        for o in result.objects
        if o["kind"] in ("ResourceClaim", "ResourceClaimTemplate")
    }
    return {
        c.metadata.name
        for c in desired.claims
        if c.metadata.name in names and not tenants[c.spec.tenant].spec.preemptible
    }


def _without(desired: st.DesiredState, drop: set[str]) -> st.DesiredState:
    reduced: st.DesiredState = ex.desired(
        pools=desired.pools,
        tenants=desired.tenants,
        claims=tuple(c for c in desired.claims if c.metadata.name not in drop),
    )
    return reduced


def _check_priority(
    desired: st.DesiredState, observed: obs.ObservedState, result: planning.Plan
) -> None:
    decisions = {d.claim: d for d in result.report.decisions}
    capacity = (admission.Reason.POOL_FULL, admission.Reason.NO_FREE_DEVICES)
    for c in result.report.decisions:
        if c.status is admission.Status.ADMITTED or c.reason not in capacity:
            continue
        lower = [
            d
            for d in decisions.values()
            if d.pool == c.pool
            and d.priority < c.priority
            and d.status is admission.Status.ADMITTED
            and d.phase is not admission.Phase.PINNED
        ]
        if not lower:
            continue
        again = planning.plan(_without(desired, {d.claim for d in lower}), observed)
        got = {d.claim: d for d in again.report.decisions}[c.claim]
        assert got.phase is not admission.Phase.GUARANTEED, (
            f"{c.claim} (priority {c.priority}) lost its guarantee to lower priorities"
        )
        borrowers = {d.claim for d in lower if d.phase is admission.Phase.BORROWED}
        if borrowers:
            again = planning.plan(_without(desired, borrowers), observed)
            got = {d.claim: d for d in again.report.decisions}[c.claim]
            assert got.status is not admission.Status.ADMITTED, (
                f"{c.claim} (priority {c.priority}) lost to lower-priority borrowers"
            )


def _shuffled(desired: st.DesiredState, seed: int) -> st.DesiredState:
    rng = random.Random(seed)
    claims, tenants = list(desired.claims), list(desired.tenants)
    rng.shuffle(claims)
    rng.shuffle(tenants)
    shuffled: st.DesiredState = ex.desired(
        pools=desired.pools, tenants=tuple(tenants), claims=tuple(claims)
    )
    return shuffled


@settings(max_examples=40, deadline=None)
@given(fleets(), hs.data())
def test_promises_hold_through_node_losses_and_returns(
    scenario: tuple[st.DesiredState, list[frozenset[str]]], data: hs.DataObject
) -> None:
    desired, steps = scenario
    live: tuple[Any, ...] = ()
    previous: planning.Plan | None = None
    used: tuple[dict[str, Any], ...] = ()
    in_use: set[str] = set()
    allocations: dict[str, dict[str, Any]] = {}
    for nodes in (frozenset(_NODES), *steps):
        observed = _observed(nodes, live, used)
        result = planning.plan(desired, observed)
        decisions = {d.claim: d for d in result.report.decisions}
        for name in in_use:
            # In use and allowInUse is false (the default): never preempted.
            assert decisions[name].status is admission.Status.ADMITTED, (name, decisions[name])
        if previous is not None:
            for name in _pinned_live(previous, desired):
                assert decisions[name].status is admission.Status.ADMITTED, (
                    f"non-preemptible {name} was {decisions[name].status} after losing "
                    f"{sorted(set(_NODES) - nodes)}"
                )
                assert decisions[name].phase is admission.Phase.PINNED
        _check_accounting(result)
        _check_priority(desired, observed, result)
        again = planning.plan(_shuffled(desired, len(steps)), observed)
        assert again.objects == result.objects and again.report == result.report
        live = result.objects
        previous = result
        # Pods start on some admitted ResourceClaims (Whole pools: vendor devices); their
        # allocation stays in the claim's status, even when its node is later lost.
        forms = {c.metadata.name: c.spec.form for c in desired.claims}
        fractional = any(
            p.spec.sharing.mode == "Fractional" for p in desired.pools if p.metadata.name == "train"
        )
        candidates = sorted(
            d.claim
            for d in result.report.decisions
            if d.status is admission.Status.ADMITTED
            and d.devices
            and d.pool == "train"
            and forms[d.claim] == "ResourceClaim"
            and d.claim not in in_use
        )
        if candidates and not fractional:
            for name in data.draw(hs.lists(hs.sampled_from(candidates), unique=True)):
                in_use.add(name)
                allocations[name] = _in_use(decisions[name])
            used = tuple(allocations[n] for n in sorted(allocations))


def test_a_non_preemptible_template_survives_a_node_loss_and_is_reported_short() -> None:
    """The reproduced defect: after a node loss, the top-priority non-preemptible tenant's
    template was preempted while a lower-priority tenant got the devices."""
    vip = ex.tenant(
        "vip",
        {
            "namespaces": ["lab"],
            "priority": 1000,
            "preemptible": False,
            "quotas": [{"pool": "train", "guaranteed": 310}],
        },
    )
    low = ex.tenant(
        "low",
        {
            "namespaces": ["lab"],
            "priority": 1,
            "mayBorrow": True,
            "quotas": [{"pool": "train", "guaranteed": 0}],
        },
    )
    template = ex.claim(
        "serve",
        {
            "tenant": "vip",
            "pool": "train",
            "namespace": "lab",
            "cu": 150,
            "form": "ResourceClaimTemplate",
            "replicas": 2,
        },
    )
    greedy = ex.claim("grab", {"tenant": "low", "pool": "train", "namespace": "lab", "cu": 100})
    desired = ex.desired(tenants=(vip, low), claims=(template, greedy))
    first = planning.plan(desired, _observed(frozenset(_NODES), ()))
    assert {d.claim: str(d.status) for d in first.report.decisions} == {
        "serve": "Admitted",
        "grab": "Admitted",
    }
    # n1 (both H100s, the only devices ≥ 150 CU) dies.
    after = planning.plan(desired, _observed(frozenset({"n2", "n3", "n4"}), first.objects))
    got = {d.claim: d for d in after.report.decisions}
    assert got["serve"].status is admission.Status.ADMITTED
    assert got["serve"].reason is admission.Reason.NOT_PREEMPTIBLE
    assert "promise not deliverable: 2 of 2 replicas do not fit" in got["serve"].message
    assert "largest eligible device in pool train has 100 CU" in got["serve"].message
    assert any(o["metadata"]["name"] == "serve" for o in after.objects), "template kept"
    shortfalls = [s.render() for s in after.report.shortfalls]
    assert "tenant vip in pool train: guaranteed 310 CU, deliverable 280 CU" in shortfalls
    assert "tenant vip in pool train: claim lab/serve needs 300 CU, deliverable 0 CU" in (
        shortfalls
    )

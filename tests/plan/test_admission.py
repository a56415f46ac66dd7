"""Claim admission: order, guarantees, borrowing, preemption; hand-checked and properties."""

from __future__ import annotations

from typing import Any

import cu_example as ex
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from reconciler import plan as planning
from reconciler.model import observed as obs
from reconciler.model import units
from reconciler.plan import admission, capacity, slices


def _decisions(desired: Any = None, observed: Any = None) -> dict[str, admission.Decision]:
    result = planning.plan(desired or ex.desired(), observed or ex.observed())
    return {d.claim: d for d in result.report.decisions}


def test_example_decisions_are_hand_checked() -> None:
    got = {
        name: (str(d.status), str(d.reason), d.charged_milli, [str(x) for x in d.devices])
        for name, d in _decisions().items()
    }
    assert got == {
        # search (priority 100, guaranteed 300): best fit = smallest device ≥ the request.
        "search-a": ("Admitted", "WithinGuarantee", 155_000, ["gpu.nvidia.com/n1/gpu-0"]),
        "search-b": ("Admitted", "WithinGuarantee", 100_000, ["gpu.nvidia.com/n2/gpu-0"]),
        "ads-a": ("Admitted", "WithinGuarantee", 100_000, ["gpu.nvidia.com/n2/gpu-1"]),
        "ads-b": (
            "Admitted",
            "WithinGuarantee",
            80_000,
            ["gpu.biren.example.com/n3/gpu-0", "gpu.biren.example.com/n3/gpu-1"],
        ),
        # Fractional: 7 CU rounded up to minStep 5 → 10 CU.
        "ads-infer": ("Admitted", "WithinGuarantee", 10_000, ["dcu.hygon.example.com/n4/dcu-0"]),
        # lab has no guarantee and, under the default policy (allowInUse false), could not
        # be preempted once its Pod runs: the last idle H100 (155 CU) would take 65 CU of
        # search's and ads's idle guarantees (45 + 20), so lab may not borrow it.
        "lab-a": ("Pending", "ReservedForGuarantees", 0, []),
        "lab-b": ("Pending", "ReservedForGuarantees", 0, []),
    }
    message = _decisions()["lab-a"].message
    assert message.startswith("needs 155 CU; 155 CU free in pool train, but 65 CU of it is ")


def test_a_reclaimable_borrower_takes_idle_guarantees() -> None:
    """With allowInUse (and lab preemptible), a guarantee can always take its CU back, so
    lab borrows the idle H100."""
    got = _decisions(ex.desired(policy_doc=ALLOW_IN_USE))
    assert (str(got["lab-a"].status), str(got["lab-a"].reason)) == ("Admitted", "BorrowedIdle")
    assert got["lab-a"].charged_milli == 155_000
    assert (str(got["lab-b"].status), str(got["lab-b"].reason)) == ("Pending", "PoolFull")


ALLOW_IN_USE = ex.policy({"preemption": {"allowInUse": True}, "safety": {"maxDeleteFraction": 1}})


def _without_node(node: str) -> obs.ObservedState:
    raw = ex.raw()
    slices_left = tuple(s for s in raw.slices if s["spec"]["nodeName"] != node)
    return obs.build(obs.RawObjects(nodes=raw.nodes, slices=slices_left), ex.adapters(), ex.DRIVER)


def test_losing_a_node_preempts_lowest_priority_borrowed_first() -> None:
    desired = ex.desired(policy_doc=ALLOW_IN_USE)
    first = planning.plan(desired, ex.observed())
    # Everything of the first plan is live; then node n1 (both H100s) disappears.
    lost = _without_node("n1")
    lost = obs.ObservedState(
        nodes=lost.nodes,
        devices=lost.devices,
        claims=(),
        owned=first.objects,
        findings=lost.findings,
    )
    after = {d.claim: d for d in planning.plan(desired, lost).report.decisions}
    assert after["lab-a"].status is admission.Status.PREEMPTED, "borrowed, lowest priority"
    assert after["search-a"].status is admission.Status.PREEMPTED, "no device ≥ 150 CU left"
    assert after["search-a"].reason is admission.Reason.NO_ELIGIBLE_DEVICE
    assert after["search-b"].status is admission.Status.ADMITTED
    assert after["ads-a"].status is admission.Status.ADMITTED


def _in_use(claim: str, namespace: str, device: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "cu-0",
                            "driver": ex.DRIVER,
                            "pool": node,
                            "device": f"nvidia-{device}",
                        },
                        {
                            "request": "gpu-0/nvidia",
                            "driver": "gpu.nvidia.com",
                            "pool": node,
                            "device": device,
                        },
                    ]
                }
            },
            "reservedFor": [{"resource": "pods", "name": f"{claim}-pod", "uid": "u"}],
        },
    }


VIP = ex.tenant(
    "vip",
    {
        "namespaces": ["search"],
        "priority": 200,
        "quotas": [{"pool": "train", "guaranteed": 200}],
    },
)
URGENT = ex.claim("urgent", {"tenant": "vip", "pool": "train", "cu": 150})


def test_claim_in_use_is_pinned_even_when_a_higher_priority_claim_wants_it() -> None:
    # lab-a borrowed while allowInUse was true; its Pod runs; then allowInUse is turned off.
    first = planning.plan(ex.desired(policy_doc=ALLOW_IN_USE), ex.observed())
    observed = ex.observed(owned=first.objects, claims=[_in_use("lab-a", "lab", "gpu-1", "n1")])
    desired = ex.desired(claims=(*ex.CLAIMS, URGENT), tenants=(*ex.TENANTS, VIP))
    result = planning.plan(desired, observed)
    got = {d.claim: d for d in result.report.decisions}
    assert got["lab-a"].status is admission.Status.ADMITTED
    assert got["lab-a"].phase is admission.Phase.PINNED
    assert got["lab-a"].reason is admission.Reason.IN_USE
    # vip outranks search, so vip gets the free H100 and search-a (not in use) gives way.
    assert got["urgent"].status is admission.Status.ADMITTED
    assert got["search-a"].status is admission.Status.PREEMPTED
    # The pinned borrower holds 155 CU guarantees are owed (and vip's 200 CU overcommit the
    # pool: 700 CU guaranteed, 590 CU): 435 CU are left for guarantees, by priority (vip
    # 200, search 235, ads 0), and ads' line says what it holds until they are claimed.
    assert [s.render() for s in result.report.shortfalls] == [
        "tenant ads in pool train: guaranteed 200 CU, deliverable 0 CU (holds 180 CU now, "
        "which higher-priority guarantees may take)",
        "tenant search in pool train: guaranteed 300 CU, deliverable 235 CU",
    ]


def test_allow_in_use_lets_priority_win_and_says_so_loudly() -> None:
    first = planning.plan(ex.desired(policy_doc=ALLOW_IN_USE), ex.observed())
    observed = ex.observed(owned=first.objects, claims=[_in_use("lab-a", "lab", "gpu-1", "n1")])
    desired = ex.desired(
        claims=(*ex.CLAIMS, URGENT), tenants=(*ex.TENANTS, VIP), policy_doc=ALLOW_IN_USE
    )
    result = planning.plan(desired, observed)
    got = {d.claim: d for d in result.report.decisions}
    assert got["urgent"].status is admission.Status.ADMITTED
    assert got["lab-a"].status is admission.Status.PREEMPTED
    assert any(w.startswith("PREEMPTING IN-USE ResourceClaim lab/lab-a") for w in result.warnings)


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        pytest.param({"tenant": "ghost", "pool": "train", "cu": 1}, "UnknownTenant", id="tenant"),
        pytest.param({"tenant": "lab", "pool": "nope", "cu": 1}, "UnknownPool", id="pool"),
        pytest.param(
            {"tenant": "lab", "pool": "train", "cu": 1, "namespace": "ads"},
            "NamespaceNotAllowed",
            id="namespace",
        ),
        pytest.param({"tenant": "lab", "pool": "train", "cu": 500}, "NoEligibleDevice", id="big"),
        pytest.param(
            {"tenant": "lab", "pool": "train", "cu": 10, "count": 17},
            "TooLargeForOneClaim",
            id="api-limit",
        ),
    ],
)
def test_pending_reasons(claim: dict[str, Any], reason: str) -> None:
    got = _decisions(ex.desired(claims=(ex.claim("x", claim),)))
    assert got["x"].status is admission.Status.PENDING
    assert got["x"].reason == reason


def test_tenant_without_borrowing_stops_at_its_guarantee() -> None:
    ads = ex.tenant(
        "ads",
        {"namespaces": ["ads"], "priority": 50, "quotas": [{"pool": "train", "guaranteed": 100}]},
    )
    claims = (
        ex.claim("a1", {"tenant": "ads", "pool": "train", "cu": 100}),
        ex.claim("a2", {"tenant": "ads", "pool": "train", "cu": 100}),
    )
    got = _decisions(ex.desired(tenants=(ads,), claims=claims))
    assert got["a1"].status is admission.Status.ADMITTED
    assert (got["a2"].status, got["a2"].reason) == (
        admission.Status.PENDING,
        admission.Reason.OVER_LIMIT,
    )


# ---------------------------------------------------------------------------- properties

Phase = admission.Phase
_tenant_names = ("t0", "t1", "t2", "t3")


@hs.composite
def scenarios(draw: hs.DrawFn) -> Any:
    fractional = draw(hs.booleans())
    spec: dict[str, Any] = {"selector": {"vendors": ["nvidia", "biren"]}}
    if fractional:
        spec["sharing"] = {"mode": "Fractional", "minStep": draw(hs.sampled_from([5, 10, 25]))}
    spec["headroomPercent"] = draw(hs.sampled_from([0, 10]))
    pool = ex.pool("train", spec)
    tenants = []
    for i, name in enumerate(_tenant_names):
        quota = {"pool": "train", "guaranteed": draw(hs.sampled_from([0, 50, 100, 200]))}
        tenants.append(
            ex.tenant(
                name,
                {
                    "namespaces": ["lab"],
                    "priority": draw(hs.integers(0, 3)) * 10 + i,
                    "mayBorrow": draw(hs.booleans()),
                    "quotas": [quota],
                },
            )
        )
    claims = []
    for i in range(draw(hs.integers(1, 12))):
        claim: dict[str, Any] = {
            "tenant": draw(hs.sampled_from(_tenant_names)),
            "pool": "train",
            "namespace": "lab",
            "cu": draw(hs.sampled_from([5, 20, 40, 60, 100, 150])),
            "count": draw(hs.integers(1, 3)),
        }
        # Templates for several Pods: each replica is placed like a separate claim.
        replicas = draw(hs.sampled_from([1, 1, 2, 3]))
        if replicas > 1:
            claim |= {"form": "ResourceClaimTemplate", "replicas": replicas}
        claims.append(ex.claim(f"c{i}", claim))
    return ex.desired(pools=(pool,), tenants=tuple(tenants), claims=tuple(claims))


@settings(max_examples=60, deadline=None)
@given(scenarios())
def test_admitted_never_exceed_capacity_and_priority_is_never_inverted(desired: Any) -> None:
    observed = ex.observed()
    pools, _ = capacity.compute(desired, observed)
    pool = pools["train"]
    result = planning.plan(desired, observed)
    admitted = [d for d in result.report.decisions if d.status is admission.Status.ADMITTED]
    total = sum(d.charged_milli for d in admitted)
    assert total <= pool.admittable_milli
    used: dict[obs.DeviceId, int] = {}
    for d in admitted:
        for did in d.devices:
            assert pool.fractional or did not in used, "a whole device is given out once"
            share = d.charged_milli // len(d.devices) if pool.fractional else 0
            used[did] = used.get(did, 0) + share
    members = {m.device.id: m.milli_cu for m in pool.members}
    assert all(used[did] <= members[did] for did in used), "no device over its CU"
    free = pool.admittable_milli - total
    for d in result.report.decisions:
        if d.reason is admission.Reason.POOL_FULL and pool.fractional:
            assert free < d.requested_milli + pool.min_step_milli * 32, "idle CU cannot hold it"
    # Guaranteed before borrowed: in a Fractional pool (no device granularity), a claim that
    # fits its tenant's remaining guarantee is never left pending while borrowers hold CU
    # that would have fitted it.
    if pool.fractional:
        guarantees = {
            t.metadata.name: units.cu_to_milli(t.spec.quotas[0].guaranteed) for t in desired.tenants
        }
        borrowed = sum(d.charged_milli for d in admitted if d.phase is admission.Phase.BORROWED)
        claims_by_name = {c.metadata.name: c for c in desired.claims}
        for d in result.report.decisions:
            if d.reason is not admission.Reason.POOL_FULL:
                continue
            got = sum(a.charged_milli for a in admitted if a.tenant == d.tenant)
            # What the claim is charged: each device's share rounded to the pool's step, for
            # every device and replica (requested_milli is the total, not one device's share).
            claim = claims_by_name[d.claim]
            each = admission.charge_each(pool, units.cu_to_milli(claim.spec.cu))
            need = each * claim.spec.count * claim.spec.replicas
            if got + need <= guarantees[d.tenant]:
                assert free + borrowed < need


def _outcome(result: planning.Plan, tenants: set[str]) -> dict[str, Any]:
    """The capacity each claim of ``tenants`` got: status, phase, CU charged, devices.

    The pending *reason* is left out: it describes the pool as admission left it, so it may
    read PoolFull or Fragmented for the same claim; the capacity outcome is what must hold."""
    return {
        d.claim: (d.status, d.phase, d.charged_milli, d.devices)
        for d in result.report.decisions
        if d.tenant in tenants
    }


def _without(desired: Any, drop: set[str], *, claims_only: bool = False) -> Any:
    claims = tuple(c for c in desired.claims if c.spec.tenant not in drop)
    tenants = (
        desired.tenants
        if claims_only
        else tuple(t for t in desired.tenants if t.metadata.name not in drop)
    )
    return ex.desired(pools=desired.pools, tenants=tenants, claims=claims)


def _no_borrowing(desired: Any, names: set[str]) -> Any:
    tenants = tuple(
        t.model_copy(update={"spec": t.spec.model_copy(update={"may_borrow": False})})
        if t.metadata.name in names
        else t
        for t in desired.tenants
    )
    return ex.desired(pools=desired.pools, tenants=tenants, claims=desired.claims)


@settings(max_examples=60, deadline=None)
@given(scenarios(), hs.sampled_from(_tenant_names))
def test_a_higher_priority_tenant_never_loses_capacity_to_a_lower_one(
    desired: Any, name: str
) -> None:
    """Exact, not heuristic: what lower-priority tenants ask for cannot change what a
    higher-priority tenant gets within its guarantee, and their borrowing cannot change
    anything a higher-priority tenant gets at all (guarantees of anyone still come before
    anyone's borrowing: a guarantee is a promise, borrowing is opportunistic)."""
    observed = ex.observed()
    prio = {t.metadata.name: t.spec.priority for t in desired.tenants}
    higher = {t for t in prio if prio[t] >= prio[name]}
    lower = set(prio) - higher
    full = planning.plan(desired, observed)

    alone = planning.plan(_without(desired, lower, claims_only=True), observed)

    def within_guarantee(result: planning.Plan) -> dict[str, Any]:
        return {c: got for c, got in _outcome(result, higher).items() if got[1] is Phase.GUARANTEED}

    assert within_guarantee(full) == within_guarantee(alone)

    lower_do_not_borrow = planning.plan(_no_borrowing(desired, lower), observed)
    assert _outcome(full, higher) == _outcome(lower_do_not_borrow, higher)


def test_names_by_node_maps_cu_devices_back() -> None:
    pools, _ = capacity.compute(ex.desired(), ex.observed())
    names = slices.names_by_node(pools.values())
    assert names[("n1", "nvidia-gpu-0")] == obs.DeviceId("gpu.nvidia.com", "n1", "gpu-0")


# ------------------------------------------------------------------ template replicas

LAB_ONLY = (ex.tenant("lab", {"namespaces": ["lab"], "priority": 10, "mayBorrow": True}),)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {"pool": "train", "cu": 40, "replicas": 2},
            # Whole: 2 replicas × 1 device; best fit = the two 40-CU BR104s: 2 × 40 = 80 CU.
            (
                "Admitted",
                "BorrowedIdle",
                80_000,
                ["gpu.biren.example.com/n3/gpu-0", "gpu.biren.example.com/n3/gpu-1"],
            ),
            id="whole-one-device-per-replica",
        ),
        pytest.param(
            {"pool": "train", "cu": 100, "count": 2, "replicas": 3},
            # Whole: 3 × 2 = 6 devices ≥ 100 CU needed, the pool has 4 (2 H100, 2 A100).
            ("Pending", "NoEligibleDevice", 0, []),
            id="whole-needs-replicas-times-count-devices",
        ),
        pytest.param(
            {"pool": "infer", "cu": 5, "replicas": 3},
            # Fractional: 3 replicas × 1 × 5 CU (minStep 5) = 15 CU ≤ 18.973 on the one
            # healthy Z100; replicas are separate claims, so they may share it.
            ("Admitted", "BorrowedIdle", 15_000, ["dcu.hygon.example.com/n4/dcu-0"] * 3),
            id="fractional-replicas-share-a-device",
        ),
        pytest.param(
            {"pool": "infer", "cu": 5, "replicas": 4},
            # 4 × 5 = 20 CU > 18.973 admittable.
            ("Pending", "PoolFull", 0, []),
            id="fractional-over-the-pool",
        ),
    ],
)
def test_template_replicas_are_charged_and_placed_like_separate_claims(
    spec: dict[str, Any], expected: tuple[str, str, int, list[str]]
) -> None:
    template = ex.claim("t", {"tenant": "lab", "form": "ResourceClaimTemplate", **spec})
    d = _decisions(ex.desired(tenants=LAB_ONLY, claims=(template,)))["t"]
    assert (str(d.status), str(d.reason), d.charged_milli, [str(x) for x in d.devices]) == expected
    assert (
        d.requested_milli
        == units.cu_to_milli(spec["cu"]) * spec.get("count", 1) * (spec["replicas"])
    )


def test_a_template_that_does_not_fit_leaves_the_ledger_as_it_was() -> None:
    # Two replicas fit on the two H100s (155 CU each), the third does not: all or nothing,
    # so the H100s are given back and the next claim gets the first one.
    big = ex.claim(
        "a-big",
        {
            "tenant": "lab",
            "pool": "train",
            "cu": 150,
            "form": "ResourceClaimTemplate",
            "replicas": 3,
        },
    )
    after = ex.claim("b-after", {"tenant": "lab", "pool": "train", "cu": 150})
    got = _decisions(ex.desired(tenants=LAB_ONLY, claims=(big, after)))
    assert (got["a-big"].status, got["a-big"].reason) == ("Pending", "NoEligibleDevice")
    assert [str(x) for x in got["b-after"].devices] == ["gpu.nvidia.com/n1/gpu-0"]


def _stamped(name: str, template: str, device: str, node: str) -> dict[str, Any]:
    claim = _in_use(name, "lab", device, node)
    claim["metadata"]["labels"] = {
        "cu-reconciler.io/template": template,
        "cu-reconciler.io/tenant": "lab",
        "cu-reconciler.io/pool": "train",
    }
    return claim


def test_running_replicas_are_placed_first_and_claims_beyond_replicas_are_charged() -> None:
    template = ex.claim(
        "lab-t",
        {
            "tenant": "lab",
            "pool": "train",
            "cu": 100,
            "form": "ResourceClaimTemplate",
            "replicas": 2,
        },
    )
    wants_h100 = ex.claim("lab-z", {"tenant": "lab", "pool": "train", "cu": 150})
    stamped = [
        _stamped("pod-c-cu", "lab-t", "gpu-1", "n1"),
        _stamped("pod-a-cu", "lab-t", "gpu-0", "n2"),
        _stamped("pod-b-cu", "lab-t", "gpu-1", "n2"),
    ]
    result = planning.plan(
        ex.desired(tenants=LAB_ONLY, claims=(template, wants_h100)), ex.observed(claims=stamped)
    )
    got = {d.claim: d for d in result.report.decisions}
    # The first two by name are the replicas: pinned on the A100s they hold, 2 × 100 CU.
    t = got["lab-t"]
    assert (str(t.status), str(t.reason), t.phase, t.charged_milli, t.running) == (
        "Admitted",
        "InUse",
        admission.Phase.PINNED,
        200_000,
        2,
    )
    assert [str(x) for x in t.devices] == ["gpu.nvidia.com/n2/gpu-0", "gpu.nvidia.com/n2/gpu-1"]
    # The third holds H100 n1/gpu-1 as an unaccounted claim, so only gpu-0 is left for lab-z.
    assert [str(x) for x in got["lab-z"].devices] == ["gpu.nvidia.com/n1/gpu-0"]
    assert result.warnings == (
        "1 claims stamped from ResourceClaimTemplate lab/lab-t exceed its replicas (2): "
        "lab/pod-c-cu; their CU is charged as unaccounted until their Pods end (raise "
        "spec.replicas or scale the Pods down)",
    )


def test_claims_stamped_from_an_undeclared_template_hold_their_devices() -> None:
    wants_h100 = ex.claim("lab-z", {"tenant": "lab", "pool": "train", "cu": 150, "count": 2})
    result = planning.plan(
        ex.desired(tenants=LAB_ONLY, claims=(wants_h100,)),
        ex.observed(claims=[_stamped("pod-a-cu", "gone", "gpu-0", "n1")]),
    )
    (d,) = result.report.decisions
    # Two H100s are eligible and the pool has room in aggregate, but one H100 is held.
    assert (str(d.status), str(d.reason)) == ("Pending", "NotEnoughFreeDevices")
    assert "needs 2 free devices" in d.message and "1 of 2 eligible are free" in d.message
    assert result.warnings == (
        "1 claims stamped from ResourceClaimTemplate lab/gone, which no CUClaim declares, "
        "hold devices: lab/pod-a-cu; their CU is charged as unaccounted until their Pods end",
    )


def test_running_replicas_of_a_pending_template_are_charged_in_every_table() -> None:
    """Item 2 of the issue: replicas that hold devices count in the pool's "Tenants" figure
    and the tenant's claimed CU, not only inside a message, while their template waits."""
    template = ex.claim(
        "lab-t",
        {
            "tenant": "lab",
            "pool": "train",
            "cu": 150,
            "form": "ResourceClaimTemplate",
            "replicas": 3,
        },
    )
    # One replica runs on an H100 (155 CU); only one more H100 exists: the template waits
    # (its running replica proves it exists; allowInUse lets it be preempted).
    result = planning.plan(
        ex.desired(tenants=LAB_ONLY, claims=(template,), policy_doc=ALLOW_IN_USE),
        ex.observed(claims=[_stamped("pod-a-cu", "lab-t", "gpu-0", "n1")]),
    )
    (d,) = result.report.decisions
    assert d.status is admission.Status.PREEMPTED and d.running == 1
    assert d.charged_milli == 155_000
    assert "1 running replicas keep 155 CU until their Pods end" in d.message
    (row,) = [t for t in result.report.tenants if t.tenant == "lab" and t.pool == "train"]
    assert row.after_milli == 155_000
    (train,) = [p for p in result.report.pools if p.name == "train"]
    assert train.admitted_milli == 155_000
    assert train.free_milli == train.admittable_milli - 155_000


@pytest.mark.parametrize(
    "quota",
    [
        pytest.param({"mayBorrow": True, "limit": 250}, id="over-its-limit"),
        pytest.param({"mayBorrow": False}, id="over-its-guarantee-without-borrowing"),
    ],
)
def test_a_template_over_its_tenants_ceiling_is_over_limit_not_pool_full(
    quota: dict[str, Any],
) -> None:
    """Issue 21, item 8: 3 replicas × 100 CU against a 250 CU ceiling is the tenant's limit,
    whatever the pool's devices; all or nothing (docs/plan.md, templates are gangs)."""
    limit = {"limit": quota["limit"]} if "limit" in quota else {}
    ads = ex.tenant(
        "ads",
        {
            "namespaces": ["ads"],
            "priority": 50,
            "mayBorrow": quota["mayBorrow"],
            "quotas": [{"pool": "train", "guaranteed": 250, **limit}],
        },
    )
    template = ex.claim(
        "fleet",
        {
            "tenant": "ads",
            "pool": "train",
            "cu": 100,
            "form": "ResourceClaimTemplate",
            "replicas": 3,
        },
    )
    got = _decisions(ex.desired(tenants=(ads,), claims=(template,)))
    assert (got["fleet"].status, got["fleet"].reason) == (
        admission.Status.PENDING,
        admission.Reason.OVER_LIMIT,
    ), got["fleet"]
    assert "250 CU" in got["fleet"].message  # charged CU against the ceiling, one unit

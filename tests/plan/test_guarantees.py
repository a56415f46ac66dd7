"""The guarantee model (docs/plan.md, "The guarantee model"), property by property.

Random fleets (nodes of H100 155 CU, A100 100 CU, BR104 40 CU; a Whole or Fractional
pool), random tenants (priority, guarantee, limit, mayBorrow, preemptible), a random
preemption policy, random claims and templates, and a sequence of node losses and returns.
Each step applies the previous plan (its objects become the live side), some admitted
claims get a Pod, then nodes go or come back. After every step:

- a guarantee holds whatever others borrowed: a pending claim within its tenant's
  guarantee is not admitted either when every other tenant's borrowed claims and every
  lower-priority claim that may move are removed;
- a borrower that cannot be preempted later never holds an idle guarantee's CU: on the
  full fleet no guarantee is short while the guarantees fit the pool;
- preemption takes the cheapest victims: removing every admitted borrower cheaper than a
  preempted one does not readmit it;
- work-conserving: no pending claim could be placed on the devices left free, within its
  tenant's ceiling (checked by an oracle written here, not by admission's code);
- a claim in use (allowInUse false) or an existing claim of a non-preemptible tenant is
  never preempted or dropped from the target;
- the report agrees with admission: guarantee shortfalls are exactly the idle guarantees
  the free and yielding CU cannot cover, no tenant is reported below what it holds, and a
  claim pending for CU within its guarantee has a shortfall line for its tenant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cu_example as ex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from reconciler import plan as planning
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.model import units
from reconciler.plan import admission, capacity

_MODELS = {"H100": ("nvidia", 155_000), "A100": ("nvidia", 100_000), "BR104": ("biren", 40_000)}
_CAPACITY = (
    admission.Reason.POOL_FULL,
    admission.Reason.NO_FREE_DEVICES,
    admission.Reason.FRAGMENTED,
    admission.Reason.RESERVED,
)


@dataclass(frozen=True, repr=False)
class Scenario:
    desired: st.DesiredState
    nodes: dict[str, tuple[str, int]]
    """Node → (model, devices)."""
    steps: list[frozenset[str]]
    """The nodes present at each step after the first two (the full fleet)."""
    arrivals: dict[str, int]
    """The step at which each claim is committed to Git (later ones find incumbents)."""

    def __repr__(self) -> str:
        """Short enough to read in a falsifying example."""
        d = self.desired
        pool = d.pools[0].spec
        tenants = [
            f"{t.metadata.name}(p{t.spec.priority} g{t.spec.quotas[0].guaranteed:g}"
            f" l{t.spec.quotas[0].limit} borrow={t.spec.may_borrow} pre={t.spec.preemptible})"
            for t in d.tenants
        ]
        claims = [
            f"{c.metadata.name}({c.spec.tenant} {c.spec.cu:g}x{c.spec.count}"
            f"{' tpl' + str(c.spec.replicas) if c.spec.form == 'ResourceClaimTemplate' else ''})"
            for c in d.claims
        ]
        return (
            f"Scenario({pool.sharing.mode} step={pool.sharing.min_step}"
            f" head={pool.headroom_percent}"
            f" {d.policy.spec.preemption} nodes={self.nodes} tenants={tenants} claims={claims}"
            f" steps={[sorted(x) for x in self.steps]} arrivals={self.arrivals})"
        )


@hs.composite
def scenarios(draw: hs.DrawFn) -> Scenario:
    fractional = draw(hs.booleans())
    spec: dict[str, Any] = {"selector": {"vendors": ["nvidia", "biren"]}}
    if fractional:
        spec["sharing"] = {"mode": "Fractional", "minStep": draw(hs.sampled_from([5, 10, 25]))}
    spec["headroomPercent"] = draw(hs.sampled_from([0, 0, 10]))
    nodes = {
        f"n{i}": (draw(hs.sampled_from(sorted(_MODELS))), draw(hs.integers(1, 3)))
        for i in range(draw(hs.integers(2, 4)))
    }
    names = [f"t{i}" for i in range(draw(hs.integers(2, 4)))]
    tenants = []
    for name in names:
        guaranteed = draw(hs.sampled_from([0, 0, 0, 40, 100, 155, 200]))
        quota: dict[str, Any] = {"pool": "train", "guaranteed": guaranteed}
        if draw(hs.booleans()):
            quota["limit"] = guaranteed + draw(hs.sampled_from([0, 100, 300]))
        tenants.append(
            ex.tenant(
                name,
                {
                    "namespaces": ["lab"],
                    "priority": draw(hs.integers(0, 2)) * 10,
                    "mayBorrow": draw(hs.sampled_from([True, True, False])),
                    "preemptible": draw(hs.booleans()),
                    "quotas": [quota],
                },
            )
        )
    claims = []
    arrivals: dict[str, int] = {}
    for i in range(draw(hs.integers(1, 9))):
        claim: dict[str, Any] = {
            "tenant": draw(hs.sampled_from(names)),
            "pool": "train",
            "namespace": "lab",
            "cu": draw(hs.sampled_from([5, 20, 40, 60, 100, 150])),
            "count": draw(hs.integers(1, 2)),
        }
        if draw(hs.integers(0, 3)) == 0:
            claim |= {"form": "ResourceClaimTemplate", "replicas": draw(hs.integers(1, 3))}
        claims.append(ex.claim(f"c{i}", claim))
        arrivals[f"c{i}"] = draw(hs.integers(0, 3))
    policy = ex.policy(
        {
            "preemption": {
                "enabled": draw(hs.sampled_from([True, True, False])),
                "allowInUse": draw(hs.booleans()),
            },
            "safety": {"maxDeleteFraction": 1, "allowEmpty": True},
        }
    )
    everything = frozenset(nodes)
    steps = draw(
        hs.lists(
            hs.frozensets(hs.sampled_from(sorted(nodes))).map(lambda lost: everything - lost),
            min_size=1,
            max_size=3,
        )
    )
    desired = ex.desired(
        pools=(ex.pool("train", spec),), tenants=tuple(tenants), claims=tuple(claims)
    )
    desired = st.DesiredState(**{**vars_of(desired), "policy": policy})
    return Scenario(desired, nodes, steps, arrivals)


def vars_of(desired: st.DesiredState) -> dict[str, Any]:
    return {f: getattr(desired, f) for f in desired.__dataclass_fields__}


def _observed(
    scenario: Scenario, present: frozenset[str], owned: Any, claims: Sequence[dict[str, Any]]
) -> obs.ObservedState:
    raw = obs.RawObjects(
        nodes=tuple(ex.node(n) for n in sorted(present)),
        slices=tuple(
            ex.vendor_slice(n, _MODELS[model][0], model, count)
            for n, (model, count) in sorted(scenario.nodes.items())
            if n in present
        ),
        claims=tuple(claims),
    )
    built = obs.build(raw, ex.adapters(), ex.DRIVER)
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


def _without(desired: st.DesiredState, drop: set[str]) -> st.DesiredState:
    claims = tuple(c for c in desired.claims if c.metadata.name not in drop)
    return st.DesiredState(**{**vars_of(desired), "claims": claims})


def _by_name(result: planning.Plan) -> dict[str, admission.Decision]:
    return {d.claim: d for d in result.report.decisions}


class Facts:
    """What the checks need to know about one plan, computed from its report alone."""

    def __init__(
        self, desired: st.DesiredState, observed: obs.ObservedState, result: planning.Plan
    ):
        self.desired = desired
        self.result = result
        self.tenants = {t.metadata.name: t for t in desired.tenants}
        self.claims = {c.metadata.name: c for c in desired.claims}
        pools, _ = capacity.compute(desired, observed)
        self.pool = pools["train"]
        self.report_pool = next(p for p in result.report.pools if p.name == "train")
        self.charged: dict[str, int] = defaultdict(int)
        for d in result.report.decisions:
            self.charged[d.tenant] += d.charged_milli
        self.guarantee = {
            name: units.cu_to_milli(t.spec.quotas[0].guaranteed) for name, t in self.tenants.items()
        }

    def least(self, name: str) -> int:
        """The least the claim could be charged (its cheapest eligible devices)."""
        claim = self.claims[name]
        need = admission.charge_each(self.pool, units.cu_to_milli(claim.spec.cu))
        n = claim.spec.count * claim.spec.replicas
        if self.pool.fractional:
            return need * n
        sizes = sorted(
            m.milli_cu for m in self.pool.members if m.device.usable and m.milli_cu >= need
        )
        return sum(sizes[:n]) if len(sizes) >= n else need * n

    def least_reclaimable(self, name: str) -> int:
        """The least the claim could be charged on devices no guarantee or pinned claim
        holds: what a guarantee could still be given (a Whole device is charged whole, so a
        guarantee can be short on devices while the pool has CU)."""
        if self.pool.fractional:
            return self.least(name)
        claim = self.claims[name]
        held = {
            did
            for d in self.result.report.decisions
            if d.phase in (admission.Phase.PINNED, admission.Phase.GUARANTEED)
            or d.status is not admission.Status.ADMITTED
            for did in d.devices
        }
        need = admission.charge_each(self.pool, units.cu_to_milli(claim.spec.cu))
        n = claim.spec.count * claim.spec.replicas
        sizes = sorted(
            m.milli_cu
            for m in self.pool.members
            if m.device.usable and m.milli_cu >= need and m.device.id not in held
        )
        # Too few such devices: no guarantee could be given this claim (infinitely dear).
        return sum(sizes[:n]) if len(sizes) >= n else 10**12

    def within_guarantee(self, name: str) -> bool:
        d = _by_name(self.result)[name]
        return self.charged[d.tenant] + self.least(name) <= self.guarantee[d.tenant]

    def pinned(self, name: str) -> bool:
        return _by_name(self.result)[name].phase is admission.Phase.PINNED


def _check_guarantee_holds(facts: Facts, observed: obs.ObservedState) -> None:
    decisions = _by_name(facts.result)
    for c in decisions.values():
        if c.status is admission.Status.ADMITTED or c.reason not in _CAPACITY:
            continue
        if not facts.within_guarantee(c.claim) or c.running:
            continue
        drop = {
            d.claim
            for d in decisions.values()
            if d.phase is not admission.Phase.PINNED
            and d.status is admission.Status.ADMITTED
            and (
                (d.tenant != c.tenant and d.phase is admission.Phase.BORROWED)
                or d.priority < c.priority
            )
        }
        if not drop:
            continue
        again = _by_name(planning.plan(_without(facts.desired, drop), observed))[c.claim]
        assert again.phase is not admission.Phase.GUARANTEED, (
            f"{c.claim} within {c.tenant}'s guarantee was blocked by borrowers or lower "
            f"priorities {sorted(drop)}"
        )


def _keep(facts: Facts, d: admission.Decision) -> tuple[int, int, str, str]:
    """The documented keep order among borrowers (victims are taken from its end): priority,
    then larger (least charge) before smaller, then tenant and name."""
    return (-d.priority, -facts.least(d.claim), d.tenant, d.claim)


def _check_cheapest_victims(facts: Facts, observed: obs.ObservedState) -> None:
    decisions = _by_name(facts.result)
    for v in decisions.values():
        if v.status is not admission.Status.PREEMPTED or v.reason not in _CAPACITY:
            continue
        if not facts.tenants[v.tenant].spec.may_borrow or v.running:
            continue
        cheaper = {
            d.claim
            for d in decisions.values()
            if d.phase is admission.Phase.BORROWED and _keep(facts, d) > _keep(facts, v)
        }
        if not cheaper:
            continue
        again = _by_name(planning.plan(_without(facts.desired, cheaper), observed))[v.claim]
        assert again.status is not admission.Status.ADMITTED, (
            f"{v.claim} was preempted while cheaper borrowers {sorted(cheaper)} kept their CU"
        )


def _free_devices(facts: Facts) -> dict[obs.DeviceId, int]:
    """CU left per usable device after every decision's devices (the oracle's own ledger)."""
    left = {m.device.id: m.milli_cu for m in facts.pool.members if m.device.usable}
    for d in facts.result.report.decisions:
        if d.pool != "train" or not d.devices:
            continue
        claim = facts.claims[d.claim]
        share = admission.charge_each(facts.pool, units.cu_to_milli(claim.spec.cu))
        for did in d.devices:
            if did in left:
                left[did] = left[did] - share if facts.pool.fractional else 0
    return left


def _check_work_conserving(facts: Facts) -> None:
    decisions = _by_name(facts.result)
    left = _free_devices(facts)
    free = facts.report_pool.free_milli
    policy = facts.desired.policy.spec.preemption
    for c in decisions.values():
        if c.status is admission.Status.ADMITTED or c.reason not in _CAPACITY or c.running:
            continue
        claim = facts.claims[c.claim]
        tenant = facts.tenants[c.tenant]
        need = admission.charge_each(facts.pool, units.cu_to_milli(claim.spec.cu))
        n = claim.spec.count * claim.spec.replicas
        if facts.pool.fractional:
            if n != 1:
                continue  # shares of one claim must sit on distinct devices: not modelled here
            fits = [v for v in left.values() if v >= need]
            charge = need
        else:
            fits = sorted(v for v in left.values() if v >= need)
            charge = sum(fits[:n])
        if len(fits) < n or charge > free:
            continue
        used = facts.charged[c.tenant]
        quota = tenant.spec.quotas[0]
        if used + charge <= facts.guarantee[c.tenant]:
            raise AssertionError(f"{c.claim} within its guarantee is pending with {free} free")
        if not tenant.spec.may_borrow:
            continue
        if quota.limit is not None and used + charge > units.cu_to_milli(quota.limit):
            continue
        reclaimable = policy.enabled and policy.allow_in_use and tenant.spec.preemptible
        if not reclaimable:
            after = dict(facts.charged)
            after[c.tenant] = used + charge
            idle = sum(max(0, g - after.get(t, 0)) for t, g in facts.guarantee.items())
            if free - charge < idle:
                continue
        raise AssertionError(f"{c.claim} could borrow {charge} of {free} free CU but is {c.reason}")


def _check_report_agrees(facts: Facts) -> None:
    """Guarantee shortfalls, re-derived from the decisions: each tenant keeps its pinned CU
    within its guarantee; what may move is given out by priority; nothing else."""
    report = facts.result.report
    shortfalls = {s.tenant: s for s in report.shortfalls if s.subject == "guarantee"}
    pinned: dict[str, int] = defaultdict(int)
    for d in report.decisions:
        if d.phase is admission.Phase.PINNED or d.status is not admission.Status.ADMITTED:
            pinned[d.tenant] += d.charged_milli  # pinned claims, running replicas
    pool = facts.report_pool
    spare = max(0, pool.admittable_milli - pool.unaccounted_milli - sum(pinned.values()))
    expected = {}
    for name in sorted(facts.tenants, key=lambda t: (-facts.tenants[t].spec.priority, t)):
        promised = facts.guarantee[name]
        if not promised:
            continue
        kept = min(promised, pinned[name])
        given = min(promised - kept, spare)
        spare -= given
        if kept + given < promised:
            expected[name] = (promised, kept + given, min(promised, facts.charged[name]))
    got = {t: (s.promised_milli, s.deliverable_milli, s.held_milli) for t, s in shortfalls.items()}
    assert got == expected
    for c in report.decisions:
        if c.status is admission.Status.ADMITTED or c.reason is not admission.Reason.POOL_FULL:
            continue
        if facts.pool.fractional:
            continue  # where shares fit is a device question (the reason says so), not CU
        least = facts.least_reclaimable(c.claim)
        within = facts.charged[c.tenant] + least <= facts.guarantee[c.tenant]
        if within and not c.running:
            s = shortfalls.get(c.tenant)
            assert s is not None and s.deliverable_milli < facts.charged[c.tenant] + least, (
                f"{c.claim} is PoolFull within {c.tenant}'s guarantee, but no shortfall says so"
            )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), hs.data())
def test_the_guarantee_model_holds_through_node_losses_and_returns(
    scenario: Scenario, data: hs.DataObject
) -> None:
    everything = frozenset(scenario.nodes)
    live: tuple[Any, ...] = ()
    allocations: dict[str, dict[str, Any]] = {}
    previous: planning.Plan | None = None
    lost_since_start = False
    # The full fleet twice: what the first plan admitted is live (and may be pinned) in the
    # second, before any node is lost.
    for step, present in enumerate((everything, everything, *scenario.steps)):
        desired = _without(
            scenario.desired, {n for n, at in scenario.arrivals.items() if at > step}
        )
        lost_since_start = lost_since_start or present != everything
        observed = _observed(scenario, present, live, [allocations[n] for n in sorted(allocations)])
        result = planning.plan(desired, observed)
        decisions = _by_name(result)
        kept = {str(o["metadata"]["name"]) for o in result.objects}
        for name in allocations:
            assert decisions[name].status is admission.Status.ADMITTED or (
                desired.policy.spec.preemption.allow_in_use
            ), f"in-use {name} was {decisions[name].status}"
        if previous is not None:
            previously = {str(o["metadata"]["name"]) for o in previous.objects}
            for c in desired.claims:
                tenant = next(t for t in desired.tenants if t.metadata.name == c.spec.tenant)
                untouchable = not tenant.spec.preemptible or not (
                    desired.policy.spec.preemption.enabled
                )
                if c.metadata.name in previously and untouchable:
                    assert c.metadata.name in kept, f"non-preemptible {c.metadata.name} dropped"
        facts = Facts(desired, observed, result)
        if not lost_since_start and sum(facts.guarantee.values()) <= facts.pool.admittable_milli:
            assert not [s for s in result.report.shortfalls if s.subject == "guarantee"], (
                result.report.shortfalls
            )
        _check_report_agrees(facts)
        _check_work_conserving(facts)
        _check_guarantee_holds(facts, observed)
        _check_cheapest_victims(facts, observed)
        live = result.objects
        previous = result
        if not facts.pool.fractional:
            candidates = sorted(
                d.claim
                for d in result.report.decisions
                if d.status is admission.Status.ADMITTED
                and d.devices
                and facts.claims[d.claim].spec.form == "ResourceClaim"
                and d.claim not in allocations
            )
            if candidates:
                for name in data.draw(hs.lists(hs.sampled_from(candidates), unique=True)):
                    allocations[name] = _in_use(decisions[name])


# ------------------------------------------------------------------ the cases, by hand

_A100X3 = {"n0": ("A100", 3)}


def _fleet(nodes: Mapping[str, tuple[str, int]], owned: Any = ()) -> obs.ObservedState:
    return _observed(Scenario(ex.desired(), dict(nodes), [], {}), frozenset(nodes), owned, [])


def _lab(name: str, priority: int, guaranteed: int, **spec: Any) -> Any:
    quota = {"pool": "train", "guaranteed": guaranteed}
    return ex.tenant(name, {"namespaces": ["lab"], "priority": priority, "quotas": [quota], **spec})


def _ask(name: str, tenant: str, cu: int, **spec: Any) -> Any:
    return ex.claim(name, {"tenant": tenant, "pool": "train", "namespace": "lab", "cu": cu, **spec})


_TRAIN = (ex.pool("train", {"selector": {"vendors": ["nvidia", "biren"]}}),)


def test_a_non_preemptible_borrower_takes_only_what_no_guarantee_reclaims() -> None:
    """Issue item 1: a non-preemptible borrower sat on research's guarantee forever."""
    tenants = (
        _lab("research", 100, 100),
        _lab("bulk", 1000, 0, mayBorrow=True, preemptible=False),
    )
    grabs = tuple(_ask(f"bulk-{i}", "bulk", 100) for i in range(3))
    desired = ex.desired(pools=_TRAIN, tenants=tenants, claims=grabs)
    first = planning.plan(desired, _fleet(_A100X3))
    got = _by_name(first)
    # 300 CU, 100 guaranteed to research: bulk may borrow 200 of it, not the third device.
    assert [str(got[f"bulk-{i}"].status) for i in range(3)] == ["Admitted", "Admitted", "Pending"]
    assert got["bulk-2"].reason is admission.Reason.RESERVED
    assert "100 CU of it is other tenants' idle guarantee" in got["bulk-2"].message
    assert not first.report.shortfalls
    # research's claim arrives after bulk's are live (and pinned): it is admitted.
    desired = ex.desired(pools=_TRAIN, tenants=tenants, claims=(*grabs, _ask("r", "research", 100)))
    again = _by_name(planning.plan(desired, _fleet(_A100X3, first.objects)))
    assert again["r"].status is admission.Status.ADMITTED
    assert again["r"].reason is admission.Reason.WITHIN_GUARANTEE
    assert again["bulk-0"].phase is admission.Phase.PINNED


def test_a_borrower_already_holding_a_guarantee_is_reported_short() -> None:
    """A pinned borrower admitted before the rule (or before a guarantee was raised) keeps
    its CU, and the report says whose guarantee it holds, in the claim's own unit."""
    tenants = (_lab("research", 100, 0), _lab("bulk", 1000, 0, mayBorrow=True, preemptible=False))
    grabs = tuple(_ask(f"bulk-{i}", "bulk", 100) for i in range(3))
    first = planning.plan(ex.desired(pools=_TRAIN, tenants=tenants, claims=grabs), _fleet(_A100X3))
    assert all(d.status is admission.Status.ADMITTED for d in first.report.decisions)
    # research is now guaranteed 200 CU and asks for 100 of it.
    tenants = (_lab("research", 100, 200), tenants[1])
    desired = ex.desired(pools=_TRAIN, tenants=tenants, claims=(*grabs, _ask("r", "research", 100)))
    result = planning.plan(desired, _fleet(_A100X3, first.objects))
    got = _by_name(result)
    assert (got["r"].status, got["r"].reason) == (
        admission.Status.PENDING,
        admission.Reason.POOL_FULL,
    )
    assert [s.render() for s in result.report.shortfalls] == [
        "tenant research in pool train: guaranteed 200 CU, deliverable 0 CU"
    ]


def test_a_reclaim_preempts_the_cheapest_borrower_and_no_more() -> None:
    """Issue item 2: reclaiming 100 CU preempted a whole, higher-priority template."""
    policy = ex.policy({"preemption": {"allowInUse": True}, "safety": {"maxDeleteFraction": 1}})
    tenants = (
        _lab("research", 10, 100),
        _lab("ads", 1000, 0, mayBorrow=True),
        _lab("lab", 5, 0, mayBorrow=True),
    )
    borrowers = (
        _ask("a-serve", "ads", 100, form="ResourceClaimTemplate", replicas=2),
        _ask("b-small", "lab", 100),
    )
    pools = (ex.pool("train", {"selector": {"vendors": ["nvidia"]}}),)
    desired = ex.desired(pools=pools, tenants=tenants, claims=borrowers, policy_doc=policy)
    first = planning.plan(desired, _fleet(_A100X3))
    assert all(d.status is admission.Status.ADMITTED for d in first.report.decisions)
    desired = ex.desired(
        pools=pools,
        tenants=tenants,
        claims=(*borrowers, _ask("r", "research", 100)),
        policy_doc=policy,
    )
    got = _by_name(planning.plan(desired, _fleet(_A100X3, first.objects)))
    assert got["r"].status is admission.Status.ADMITTED
    assert got["a-serve"].status is admission.Status.ADMITTED, "the template is not the victim"
    assert got["b-small"].status is admission.Status.PREEMPTED, "the lowest priority is"


def test_among_equal_borrowers_the_smallest_is_preempted() -> None:
    policy = ex.policy({"preemption": {"allowInUse": True}, "safety": {"maxDeleteFraction": 1}})
    tenants = (_lab("research", 10, 100), _lab("lab", 5, 0, mayBorrow=True))
    borrowers = (_ask("a-small", "lab", 100), _ask("z-big", "lab", 100, count=2))
    fleet = {"n0": ("A100", 3)}
    desired = ex.desired(pools=_TRAIN, tenants=tenants, claims=borrowers, policy_doc=policy)
    first = planning.plan(desired, _fleet(fleet))
    assert all(d.status is admission.Status.ADMITTED for d in first.report.decisions)
    desired = ex.desired(
        pools=_TRAIN,
        tenants=tenants,
        claims=(*borrowers, _ask("r", "research", 100)),
        policy_doc=policy,
    )
    got = _by_name(planning.plan(desired, _fleet(fleet, first.objects)))
    # By name, a-small would be placed first and z-big (200 CU) preempted for a 100 CU
    # reclaim, leaving 100 CU idle; the smaller victim frees exactly what is needed.
    assert got["r"].status is admission.Status.ADMITTED
    assert got["z-big"].status is admission.Status.ADMITTED
    assert got["a-small"].status is admission.Status.PREEMPTED
    again = planning.plan(desired, _fleet(fleet, first.objects))
    assert next(p for p in again.report.pools).free_milli == 0


class _Short(tuple):  # type: ignore[type-arg]
    """A scenario tuple that prints as its claims and tenants in a falsifying example."""

    def __repr__(self) -> str:
        after = self[1]
        tenants = [
            (t.metadata.name, t.spec.priority, t.spec.quotas[0].guaranteed) for t in after.tenants
        ]
        claims = [
            (c.metadata.name, c.spec.tenant, c.spec.cu, c.spec.count, c.spec.replicas)
            for c in after.claims
        ]
        return f"Reclaim(devices={self[2]}, tenants={tenants}, claims={claims})"


@hs.composite
def reclaims(draw: hs.DrawFn) -> tuple[st.DesiredState, st.DesiredState, int]:
    """Borrowers fill a uniform A100 pool (every device 100 CU, so aggregate CU decides),
    then claims within a guarantee arrive. Every tenant may be preempted (allowInUse)."""
    devices = draw(hs.integers(2, 8))
    tenants = [_lab("owner", draw(hs.integers(0, 2)), 100 * draw(hs.integers(1, devices)))]
    claims = []
    for i in range(draw(hs.integers(1, 3))):
        tenants.append(_lab(f"b{i}", draw(hs.integers(0, 2)), 0, mayBorrow=True))
    for i in range(draw(hs.integers(1, 8))):
        spec: dict[str, Any] = {"count": draw(hs.integers(1, 2))}
        if draw(hs.booleans()):
            spec |= {"form": "ResourceClaimTemplate", "replicas": draw(hs.integers(1, 2))}
        owner = draw(hs.sampled_from([t.metadata.name for t in tenants[1:]]))
        claims.append(_ask(f"x{i}", owner, draw(hs.sampled_from([20, 60, 100])), **spec))
    policy = ex.policy({"preemption": {"allowInUse": True}, "safety": {"maxDeleteFraction": 1}})
    pools = (ex.pool("train", {"selector": {"vendors": ["nvidia"]}}),)
    before = ex.desired(
        pools=pools, tenants=tuple(tenants), claims=tuple(claims), policy_doc=policy
    )
    wanted = tuple(
        _ask(f"g{i}", "owner", 100, count=draw(hs.integers(1, 2)))
        for i in range(draw(hs.integers(1, 3)))
    )
    after = ex.desired(
        pools=pools, tenants=tuple(tenants), claims=(*claims, *wanted), policy_doc=policy
    )
    return _Short((before, after, devices))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reclaims())
def test_a_reclaim_takes_the_cheapest_victims_and_frees_no_more_than_it_needs(
    scenario: tuple[st.DesiredState, st.DesiredState, int],
) -> None:
    before, after, devices = scenario
    fleet = {"n0": ("A100", devices)}
    first = planning.plan(before, _fleet(fleet))
    result = planning.plan(after, _fleet(fleet, first.objects))
    was = _by_name(first)
    got = _by_name(result)
    free = next(p for p in result.report.pools if p.name == "train").free_milli
    victims = [
        got[n]
        for n, d in was.items()
        if d.status is admission.Status.ADMITTED and got[n].status is not admission.Status.ADMITTED
    ]
    kept = [d for d in got.values() if d.phase is admission.Phase.BORROWED]
    for v in victims:
        size = was[v.claim].charged_milli
        # Not a victim it need not be: what stayed idle could not have held it.
        assert free < size, f"{v.claim} ({size}) preempted while {free} CU sit idle"
        for d in kept:
            cheaper = (d.priority, d.charged_milli) < (v.priority, size)
            assert not (cheaper and free + d.charged_milli >= size), (
                f"{v.claim} (priority {v.priority}, {size}) preempted while {d.claim} "
                f"(priority {d.priority}, {d.charged_milli}) kept its CU"
            )
    for d in got.values():
        if d.tenant == "owner":
            assert d.status is admission.Status.ADMITTED or d.reason in (
                admission.Reason.POOL_FULL,
                admission.Reason.NO_FREE_DEVICES,
                admission.Reason.OVER_LIMIT,
            ), d


def test_a_template_over_its_tenants_limit_in_charged_cu_is_over_limit() -> None:
    """Issue item 8: 3 replicas × 60 CU ask 180 CU, under lab's 200 CU limit, but whole
    devices charge at least 100 + 100 + 155 = 355 CU: OverLimit (was Fragmented/PoolFull)."""
    lab = ex.tenant(
        "lab",
        {
            "namespaces": ["lab"],
            "priority": 10,
            "mayBorrow": True,
            "quotas": [{"pool": "train", "guaranteed": 0, "limit": 200}],
        },
    )
    template = ex.claim(
        "big",
        {
            "tenant": "lab",
            "pool": "train",
            "cu": 60,
            "form": "ResourceClaimTemplate",
            "replicas": 3,
        },
    )
    result = planning.plan(ex.desired(tenants=(lab,), claims=(template,)), ex.observed())
    (d,) = result.report.decisions
    assert (d.status, d.reason) == (admission.Status.PENDING, admission.Reason.OVER_LIMIT)
    assert d.message == "needs 355 CU; tenant uses 0 of its 200 CU limit"


@settings(max_examples=60, deadline=None)
@given(
    guarantees=hs.dictionaries(hs.sampled_from("abcdef"), hs.integers(1, 500), max_size=6),
    changes=hs.lists(hs.tuples(hs.sampled_from("abcdefgh"), hs.integers(-300, 300)), max_size=30),
)
def test_idle_guarantees_kept_per_change_equal_the_sum(
    guarantees: dict[str, int], changes: list[tuple[str, int]]
) -> None:
    """The borrowed pass reads the idle guarantees after every claim; they are kept up to
    date per usage change (admission._Idle) instead of summed over every tenant, and must
    always equal the sum, including for tenants without a guarantee and usage going back."""
    used = admission._Usage()
    idle = admission._Idle(guarantees, used)
    for tenant, delta in changes:
        used[tenant] += delta
        assert idle.total() == admission.idle_guarantees(guarantees, used)
        others = {t: g for t, g in guarantees.items() if t != tenant}
        assert idle.without(tenant) == admission.idle_guarantees(others, used)

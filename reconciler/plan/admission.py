"""Claim admission: which CUClaims get CU, in which order, and who loses when supply shrinks.

Order is total and explicit: priority (descending), tenant name, claim name. Three passes
per pool, each walking that order:

1. **Pinned**: a claim that exists and may not be touched keeps its place first: it is in
   use (``reservedFor`` non-empty) and ``policy.preemption.allowInUse`` is false, or
   preemption is disabled, or its tenant is not preemptible. It is charged where it is
   allocated (a device that vanished charges nothing).
2. **Guaranteed**: a claim fits if its tenant's guaranteed usage plus the claim stays within
   the tenant's ``guaranteed`` for the pool.
3. **Borrowed**: tenants with ``mayBorrow`` take idle CU up to their ``limit`` (no limit =
   the pool).

A claim is placed on concrete devices (best fit: the smallest device or remaining share
that fits, then the device id), so "fits" means the pool has room in aggregate (capacity
minus headroom) *and* on devices that satisfy the claim's constraints. Whole pools charge
the CU of the devices taken; Fractional pools charge the request rounded up to ``minStep``.

A ResourceClaimTemplate serves ``replicas`` Pods, each with its own claim, so it is placed
``replicas`` times, each replica like a separate claim (a Whole pool needs replicas × count
devices), all or nothing. Replicas that already run (claims stamped from the template,
allocated) are placed first in pass 1, on the devices they hold: they belong to Pods, the
reconciler never deletes them, so nothing may be admitted onto their capacity.

Consequences, by construction: the lowest priority loses first, borrowed capacity is lost
before guaranteed capacity, and a pending claim is never blocked by a lower-priority claim
that took capacity in the same or a later pass (the aggregate invariant tested in
tests/plan/test_admission.py). A live claim that is no longer admitted is *preempted*.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import quantity, units
from reconciler.plan import capacity

API_LIMIT_REQUESTS = 32
API_LIMIT_CONSTRAINTS = 32
API_LIMIT_SUBREQUESTS = 8


class Status(StrEnum):
    ADMITTED = "Admitted"
    PENDING = "Pending"
    PREEMPTED = "Preempted"


class Phase(StrEnum):
    PINNED = "Pinned"
    GUARANTEED = "Guaranteed"
    BORROWED = "Borrowed"


class Reason(StrEnum):
    """Why a claim is where it is. Stable strings (documented in docs/plan.md)."""

    IN_USE = "InUse"
    NOT_PREEMPTIBLE = "NotPreemptible"
    WITHIN_GUARANTEE = "WithinGuarantee"
    BORROWED_IDLE = "BorrowedIdle"
    UNKNOWN_TENANT = "UnknownTenant"
    UNKNOWN_POOL = "UnknownPool"
    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    NO_QUOTA = "NoQuota"
    OVER_LIMIT = "OverLimit"
    POOL_FULL = "PoolFull"
    NO_ELIGIBLE_DEVICE = "NoEligibleDevice"
    FRAGMENTED = "Fragmented"
    TOO_LARGE = "TooLargeForOneClaim"


@dataclass(frozen=True, slots=True)
class Decision:
    claim: str
    tenant: str
    pool: str
    namespace: str
    priority: int
    status: Status
    reason: Reason
    requested_milli: int
    """CU per device × count × replicas, as written."""
    charged_milli: int = 0
    phase: Phase | None = None
    devices: tuple[obs.DeviceId, ...] = ()
    """Every replica's devices, sorted (a Fractional device appears once per share)."""
    live: bool = False
    """The claim's object exists on the other side of the diff (live, or the base revision)."""
    in_use: bool = False
    message: str = ""
    replicas: int = 1
    running: int = 0
    """Replicas already running: allocated claims stamped from the template, placed first."""


@dataclass(frozen=True, slots=True)
class LiveClaim:
    """What admission needs to know about a claim that exists in the cluster."""

    in_use: bool
    allocated: tuple[obs.AllocatedDevice, ...] = ()
    template: bool = False
    """A live ResourceClaimTemplate: it exists but holds nothing (its Pods' claims do)."""


@dataclass(slots=True)
class _Group:
    """Usable devices of one pool that look alike (vendor, model, memory, CU).

    Claims filter on exactly these properties, so eligibility is decided once per group, and
    the group keeps its free capacity sorted, ``(left, device)``, for a best-fit lookup by
    bisection instead of a scan of every device (the benchmark's 5,000 claims × 10,000
    devices would otherwise be quadratic).
    """

    device: obs.ObservedDevice
    milli_cu: int
    slots: list[tuple[int, obs.DeviceId]]
    size: int = 0


@dataclass(slots=True)
class _Ledger:
    """Mutable bookkeeping of one pool during admission (local to :func:`admit`)."""

    pool: capacity.PoolCapacity
    remaining: dict[obs.DeviceId, int]
    members: dict[obs.DeviceId, capacity.Member]
    free_aggregate: int
    cu_names: Mapping[tuple[str, str], obs.DeviceId]
    groups: list[_Group] = field(default_factory=list)
    group_of: dict[obs.DeviceId, _Group] = field(default_factory=dict)
    total_used: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def of(
        cls, pool: capacity.PoolCapacity, cu_names: Mapping[tuple[str, str], obs.DeviceId]
    ) -> _Ledger:
        ledger = cls(
            pool=pool,
            remaining={m.device.id: m.milli_cu for m in pool.members},
            members={m.device.id: m for m in pool.members},
            free_aggregate=pool.admittable_milli,
            cu_names=cu_names,
        )
        by_sig: dict[tuple[str, str, int, int], _Group] = {}
        for m in sorted(pool.members, key=lambda m: m.device.id):
            if not m.device.usable:
                continue
            d = m.device
            sig = (d.vendor, d.model, d.memory_bytes, m.milli_cu)
            group = by_sig.get(sig)
            if group is None:
                group = by_sig[sig] = _Group(device=d, milli_cu=m.milli_cu, slots=[])
            group.slots.append((m.milli_cu, d.id))
            group.size += 1
            ledger.group_of[d.id] = group
        ledger.groups = [by_sig[k] for k in sorted(by_sig)]
        for group in ledger.groups:
            group.slots.sort()
        return ledger

    def consume(self, did: obs.DeviceId, amount: int) -> None:
        """Take ``amount`` from a device (a Whole device is always taken entirely)."""
        left = self.remaining[did]
        new = 0 if not self.pool.fractional else left - amount
        self.remaining[did] = new
        group = self.group_of.get(did)
        if group is None:
            return
        i = bisect.bisect_left(group.slots, (left, did))
        if i < len(group.slots) and group.slots[i] == (left, did):
            del group.slots[i]
        if new > 0:
            bisect.insort(group.slots, (new, did))

    def restore(self, did: obs.DeviceId, left: int) -> None:
        """Undo :meth:`consume`: give the device back what it had (``left``)."""
        now = self.remaining[did]
        self.remaining[did] = left
        group = self.group_of.get(did)
        if group is None:
            return
        i = bisect.bisect_left(group.slots, (now, did))
        if now > 0 and i < len(group.slots) and group.slots[i] == (now, did):
            del group.slots[i]
        if left > 0:
            bisect.insort(group.slots, (left, did))


def order_key(claim: docs.CUClaim, tenants: Mapping[str, docs.Tenant]) -> tuple[int, str, str]:
    tenant = tenants.get(claim.spec.tenant)
    priority = tenant.spec.priority if tenant else -1
    return (-priority, claim.spec.tenant, claim.metadata.name)


def charge_each(pool: capacity.PoolCapacity, requested_each: int) -> int:
    """Fractional: the request rounded up to the pool's step (what the scheduler consumes)."""
    step = pool.min_step_milli
    if not pool.fractional or step <= 0:
        return requested_each
    return max(step, math.ceil(requested_each / step) * step)


def vendors_for(claim: docs.CUClaim, pool: capacity.PoolCapacity) -> tuple[str, ...]:
    allowed = claim.spec.constraints.vendors
    return tuple(
        v
        for v in pool.vendors
        if (not allowed.allow or v in allowed.allow) and v not in allowed.deny
    )


def fits_api_limits(claim: docs.CUClaim, pool: capacity.PoolCapacity) -> bool:
    """Can one ResourceClaim express this claim (docs/double-allocation.md, claim shape)?"""
    count = claim.spec.count
    if pool.fractional:
        return count <= API_LIMIT_REQUESTS
    vendors = max(1, len(vendors_for(claim, pool)))
    return (
        2 * count <= API_LIMIT_REQUESTS
        and count * vendors <= API_LIMIT_CONSTRAINTS
        and vendors <= API_LIMIT_SUBREQUESTS
    )


def eligible(claim: docs.CUClaim, device: obs.ObservedDevice) -> bool:
    c = claim.spec.constraints
    if c.vendors.allow and device.vendor not in c.vendors.allow:
        return False
    if device.vendor in c.vendors.deny:
        return False
    if c.models.allow and device.model not in c.models.allow:
        return False
    if device.model in c.models.deny:
        return False
    return not (
        c.min_memory is not None and device.memory_bytes < quantity.parse_quantity(c.min_memory)
    )


def _place(
    ledger: _Ledger,
    claim: docs.CUClaim,
    requested_each: int,
    prefer: Sequence[obs.DeviceId] = (),
) -> tuple[tuple[obs.DeviceId, ...], int] | None:
    """Choose devices for a claim without committing; returns (devices, charge).

    Best fit: devices the claim already holds first, then the smallest remaining share (or
    the smallest whole device) that fits, then the device id.
    """
    pool = ledger.pool
    count = claim.spec.count
    need = charge_each(pool, requested_each) if pool.fractional else requested_each
    candidates: list[tuple[bool, int, obs.DeviceId]] = []
    preferred = set(prefer)
    for did in sorted(preferred):
        group = ledger.group_of.get(did)
        if group is None or not eligible(claim, group.device):
            continue
        left = ledger.remaining[did]
        if (pool.fractional and left >= need) or (
            not pool.fractional and left == group.milli_cu and group.milli_cu >= need
        ):
            candidates.append((False, left, did))
    for group in ledger.groups:
        if group.milli_cu < need or not eligible(claim, group.device):
            continue
        start = bisect.bisect_left(group.slots, (need,)) if pool.fractional else 0
        taken = 0
        for i in range(start, len(group.slots)):
            if taken >= count:
                break
            left, did = group.slots[i]
            if did in preferred:
                continue
            if not pool.fractional and left != group.milli_cu:
                continue
            candidates.append((True, left, did))
            taken += 1
    if len(candidates) < count:
        return None
    chosen = [did for _, _, did in sorted(candidates)[:count]]
    if pool.fractional:
        charge = need * len(chosen)
    else:
        charge = sum(ledger.members[d].milli_cu for d in chosen)
    if charge > ledger.free_aggregate:
        return None
    return tuple(sorted(chosen)), charge


def _commit(ledger: _Ledger, tenant: str, devices: Sequence[obs.DeviceId], charge: int) -> None:
    per_device = charge // len(devices) if devices else 0
    for did in devices:
        ledger.consume(did, per_device)
    ledger.free_aggregate -= charge
    ledger.total_used[tenant] += charge


@dataclass(frozen=True, slots=True)
class _Placement:
    """One committed replica: its devices, its charge, and each device's share before."""

    devices: tuple[obs.DeviceId, ...]
    charge: int
    before: tuple[tuple[obs.DeviceId, int], ...]


def _take(
    ledger: _Ledger, tenant: str, devices: tuple[obs.DeviceId, ...], charge: int
) -> _Placement:
    before = tuple((did, ledger.remaining[did]) for did in devices)
    _commit(ledger, tenant, devices, charge)
    return _Placement(devices, charge, before)


def _undo(ledger: _Ledger, tenant: str, placements: Sequence[_Placement]) -> None:
    """Give back committed replicas, newest first, so the ledger is exactly as before."""
    for placement in reversed(placements):
        for did, left in reversed(placement.before):
            ledger.restore(did, left)
        ledger.free_aggregate += placement.charge
        ledger.total_used[tenant] -= placement.charge


def _place_replicas(
    ledger: _Ledger,
    tenant: str,
    claim: docs.CUClaim,
    requested_each: int,
    replicas: int,
    prefer: Sequence[obs.DeviceId] = (),
) -> list[_Placement] | None:
    """Place and commit ``replicas`` claims one after the other, all or nothing.

    Each replica is a separate ResourceClaim for the scheduler, so it is placed as one:
    committed before the next is placed (a Whole device is never counted twice; Fractional
    replicas may share a device, as separate claims may). If one does not fit, the ones
    already committed are undone and the ledger is unchanged.
    """
    placements: list[_Placement] = []
    for i in range(replicas):
        placed = _place(ledger, claim, requested_each, prefer if i == 0 else ())
        if placed is None:
            _undo(ledger, tenant, placements)
            return None
        placements.append(_take(ledger, tenant, *placed))
    return placements


def _pending_reason(
    ledger: _Ledger, claim: docs.CUClaim, requested_each: int, replicas: int = 1
) -> Reason:
    pool = ledger.pool
    need = charge_each(pool, requested_each)
    # Fractional replicas may share devices; Whole replicas each need their own.
    devices = claim.spec.count if pool.fractional else claim.spec.count * replicas
    sizes: list[int] = []
    for group in ledger.groups:
        if group.milli_cu >= need and eligible(claim, group.device):
            sizes += [group.milli_cu] * min(group.size, devices)
    if len(sizes) < devices:
        return Reason.NO_ELIGIBLE_DEVICE
    smallest = sorted(sizes)[:devices]
    needed = need * claim.spec.count * replicas if pool.fractional else sum(smallest)
    if needed > ledger.free_aggregate:
        return Reason.POOL_FULL
    return Reason.FRAGMENTED


def _quota(tenant: docs.Tenant, pool: str) -> docs.Quota | None:
    for quota in tenant.spec.quotas:
        if quota.pool == pool:
            return quota
    return None


def namespace_of(claim: docs.CUClaim, tenant: docs.Tenant | None) -> str:
    if claim.spec.namespace:
        return claim.spec.namespace
    return tenant.spec.namespaces[0] if tenant else ""


def admit(
    claims: Iterable[docs.CUClaim],
    tenants: Iterable[docs.Tenant],
    pools: Mapping[str, capacity.PoolCapacity],
    policy: docs.Policy,
    managed_namespaces: Iterable[str],
    live: Mapping[tuple[str, str], LiveClaim],
    cu_names: Mapping[tuple[str, str], obs.DeviceId],
    external: Sequence[obs.ObservedClaim] = (),
    running: Mapping[tuple[str, str], Sequence[LiveClaim]] | None = None,
) -> tuple[Decision, ...]:
    """Decide every claim. ``live`` maps (namespace, name) of existing claims to their use;
    ``cu_names`` maps (node, CU device name) to the vendor device behind it; ``external``
    are allocated claims on our devices that no CUClaim accounts for (their CU is taken
    before anything is admitted); ``running`` maps (namespace, template name) to the claims
    stamped from that template that count as its replicas (at most ``replicas``)."""
    tenant_by_name = {t.metadata.name: t for t in tenants}
    managed = set(managed_namespaces)
    preemption = policy.spec.preemption
    ordered = sorted(claims, key=lambda c: order_key(c, tenant_by_name))
    ledgers = {name: _Ledger.of(pool, cu_names) for name, pool in pools.items()}
    decided: dict[str, Decision] = {}
    per_pool: dict[str, list[docs.CUClaim]] = defaultdict(list)
    for other in external:
        for ledger in ledgers.values():
            _take_external(ledger, other)
    stamped = running or {}

    def replicas_running(claim: docs.CUClaim, tenant: docs.Tenant | None) -> list[LiveClaim]:
        """Running replicas: allocated stamped claims, at most ``replicas`` of them."""
        if claim.spec.form is not docs.ClaimForm.TEMPLATE:
            return []
        found = stamped.get((namespace_of(claim, tenant), claim.metadata.name), ())
        return [r for r in found if r.allocated][: claim.spec.replicas]

    def base(claim: docs.CUClaim, tenant: docs.Tenant | None, **kw: object) -> Decision:
        ns = namespace_of(claim, tenant)
        state = live.get((ns, claim.metadata.name))
        return Decision(
            claim=claim.metadata.name,
            tenant=claim.spec.tenant,
            pool=claim.spec.pool,
            namespace=ns,
            priority=tenant.spec.priority if tenant else 0,
            requested_milli=(
                units.cu_to_milli(claim.spec.cu) * claim.spec.count * claim.spec.replicas
            ),
            live=state is not None,
            in_use=state.in_use if state else False,
            replicas=claim.spec.replicas,
            running=len(replicas_running(claim, tenant)),
            **kw,  # type: ignore[arg-type]
        )

    for claim in ordered:
        tenant = tenant_by_name.get(claim.spec.tenant)
        name = claim.metadata.name
        if tenant is None:
            decided[name] = base(claim, None, status=Status.PENDING, reason=Reason.UNKNOWN_TENANT)
        elif claim.spec.pool not in pools:
            decided[name] = base(claim, tenant, status=Status.PENDING, reason=Reason.UNKNOWN_POOL)
        elif (
            namespace_of(claim, tenant) not in tenant.spec.namespaces
            or namespace_of(claim, tenant) not in managed
        ):
            decided[name] = base(
                claim, tenant, status=Status.PENDING, reason=Reason.NAMESPACE_NOT_ALLOWED
            )
        elif not fits_api_limits(claim, pools[claim.spec.pool]):
            decided[name] = base(claim, tenant, status=Status.PENDING, reason=Reason.TOO_LARGE)
        else:
            per_pool[claim.spec.pool].append(claim)
        # Running replicas hold their devices whatever is decided here: charge what lies
        # outside the claim's pool (or everything, for a claim that is not queued) now.
        for replica in replicas_running(claim, tenant):
            for pool_name, ledger in ledgers.items():
                if name in decided or pool_name != claim.spec.pool:
                    _take_held(ledger, replica.allocated)

    pinned_replicas: dict[str, list[_Placement]] = {}

    for pool_name in sorted(per_pool):
        ledger = ledgers[pool_name]
        pool = ledger.pool
        queue = per_pool[pool_name]
        # Pass 1: pinned claims keep their devices; running template replicas come first.
        for claim in queue:
            tenant = tenant_by_name[claim.spec.tenant]
            ns = namespace_of(claim, tenant)
            if claim.spec.form is docs.ClaimForm.TEMPLATE:
                _pin_replicas(
                    ledger, claim, tenant, replicas_running(claim, tenant), pinned_replicas
                )
                runs = pinned_replicas.get(claim.metadata.name, [])
                if runs and len(runs) == claim.spec.replicas:
                    decided[claim.metadata.name] = base(
                        claim,
                        tenant,
                        status=Status.ADMITTED,
                        reason=Reason.IN_USE,
                        charged_milli=sum(p.charge for p in runs),
                        phase=Phase.PINNED,
                        devices=tuple(sorted(d for p in runs for d in p.devices)),
                    )
                continue
            state = live.get((ns, claim.metadata.name))
            if state is None or state.template:
                continue
            untouchable = (
                (state.in_use and not preemption.allow_in_use)
                or not preemption.enabled
                or not tenant.spec.preemptible
            )
            if not untouchable:
                continue
            devices = tuple(d for d in _resolve(ledger, state.allocated) if d is not None)
            each = charge_each(pool, units.cu_to_milli(claim.spec.cu))
            if pool.fractional:
                charge = each * len(devices)
            else:
                charge = sum(ledger.members[d].milli_cu for d in devices)
            _commit(ledger, tenant.metadata.name, devices, charge)
            reason = Reason.IN_USE if state.in_use else Reason.NOT_PREEMPTIBLE
            decided[claim.metadata.name] = base(
                claim,
                tenant,
                status=Status.ADMITTED,
                reason=reason,
                charged_milli=charge,
                phase=Phase.PINNED,
                devices=devices,
                message="" if devices or not state.allocated else "allocated device is gone",
            )
        # Passes 2 and 3.
        for phase in (Phase.GUARANTEED, Phase.BORROWED):
            for claim in queue:
                if claim.metadata.name in decided:
                    continue
                tenant = tenant_by_name[claim.spec.tenant]
                quota = _quota(tenant, pool_name)
                guaranteed = units.cu_to_milli(quota.guaranteed) if quota else 0
                if phase is Phase.BORROWED and not tenant.spec.may_borrow:
                    continue
                ns = namespace_of(claim, tenant)
                state = live.get((ns, claim.metadata.name))
                prefer = tuple(d for d in _resolve(ledger, state.allocated) if d) if state else ()
                requested_each = units.cu_to_milli(claim.spec.cu)
                pinned = pinned_replicas.get(claim.metadata.name, [])
                placements = _place_replicas(
                    ledger,
                    tenant.metadata.name,
                    claim,
                    requested_each,
                    claim.spec.replicas - len(pinned),
                    prefer,
                )
                if placements is None:
                    continue
                charge = sum(p.charge for p in placements)
                # Usage already includes the running replicas (pass 1) and these ones.
                used = ledger.total_used[tenant.metadata.name] - charge
                if phase is Phase.GUARANTEED:
                    ceiling: int | None = guaranteed
                else:
                    ceiling = (
                        units.cu_to_milli(quota.limit)
                        if quota is not None and quota.limit is not None
                        else None
                    )
                if ceiling is not None and used + charge > ceiling:
                    _undo(ledger, tenant.metadata.name, placements)
                    continue
                placements = [*pinned, *placements]
                charge = sum(p.charge for p in placements)
                devices = tuple(sorted(d for p in placements for d in p.devices))
                decided[claim.metadata.name] = base(
                    claim,
                    tenant,
                    status=Status.ADMITTED,
                    reason=(
                        Reason.WITHIN_GUARANTEE
                        if phase is Phase.GUARANTEED
                        else Reason.BORROWED_IDLE
                    ),
                    charged_milli=charge,
                    phase=phase,
                    devices=devices,
                )
        # Everything else is pending (or preempted when it exists).
        for claim in queue:
            if claim.metadata.name in decided:
                continue
            tenant = tenant_by_name[claim.spec.tenant]
            quota = _quota(tenant, pool_name)
            guaranteed = units.cu_to_milli(quota.guaranteed) if quota else 0
            requested_each = units.cu_to_milli(claim.spec.cu)
            pinned = pinned_replicas.get(claim.metadata.name, [])
            replicas = claim.spec.replicas - len(pinned)
            reason = _pending_reason(ledger, claim, requested_each, replicas)
            if reason is not Reason.NO_ELIGIBLE_DEVICE:
                # The least this claim could be charged: what it asks for, step-rounded.
                least = charge_each(pool, requested_each) * claim.spec.count * replicas
                used = ledger.total_used[tenant.metadata.name]
                limit = (
                    units.cu_to_milli(quota.limit)
                    if quota is not None and quota.limit is not None
                    else None
                )
                if not tenant.spec.may_borrow and guaranteed == 0:
                    reason = Reason.NO_QUOTA
                elif (not tenant.spec.may_borrow and used + least > guaranteed) or (
                    limit is not None and used + least > limit
                ):
                    reason = Reason.OVER_LIMIT
            ns = namespace_of(claim, tenant)
            state = live.get((ns, claim.metadata.name))
            held = sum(p.charge for p in pinned)
            decided[claim.metadata.name] = base(
                claim,
                tenant,
                status=Status.PREEMPTED if state is not None else Status.PENDING,
                reason=reason,
                message=(
                    f"{len(pinned)} running replicas keep {units.display_cu(held)} CU until "
                    "their Pods end"
                    if pinned
                    else ""
                ),
            )
    return tuple(sorted(decided.values(), key=lambda d: (-d.priority, d.tenant, d.claim)))


def _pin_replicas(
    ledger: _Ledger,
    claim: docs.CUClaim,
    tenant: docs.Tenant,
    replicas: Sequence[LiveClaim],
    out: dict[str, list[_Placement]],
) -> None:
    """Place the template's running replicas first, each on the devices it holds.

    A running replica is charged like any replica (count × cu, placed on its own devices
    first, then best fit for any it lacks); when even that does not fit (its devices are
    gone or taken), it is charged what it holds, like a pinned claim: it runs regardless.
    """
    placements: list[_Placement] = []
    requested_each = units.cu_to_milli(claim.spec.cu)
    each = charge_each(ledger.pool, requested_each)
    for replica in replicas:
        held = tuple(sorted({d for d in _resolve(ledger, replica.allocated) if d is not None}))
        placed = _place(ledger, claim, requested_each, held)
        if placed is None:
            if ledger.pool.fractional:
                placed = (held, each * len(held))
            else:
                placed = (held, sum(ledger.members[d].milli_cu for d in held))
        placements.append(_take(ledger, tenant.metadata.name, *placed))
    if placements:
        out[claim.metadata.name] = placements


def _take_external(ledger: _Ledger, claim: obs.ObservedClaim) -> None:
    """Charge an unaccounted allocation on our devices to the pool that holds them."""
    _take_held(ledger, claim.allocated)


def _take_held(ledger: _Ledger, allocated: Sequence[obs.AllocatedDevice]) -> None:
    """Charge an allocation on our devices to this pool, where its devices belong to it."""
    for a in allocated:
        did = ledger.cu_names.get((a.pool, a.device))
        if did is None or did not in ledger.members:
            continue
        member = ledger.members[did]
        if ledger.pool.fractional and a.consumed_cu is not None:
            charge = int(quantity.parse_quantity(a.consumed_cu) * units.MILLI)
        else:
            charge = member.milli_cu
        charge = min(charge, ledger.remaining[did])
        ledger.consume(did, charge)
        ledger.free_aggregate -= charge


def _resolve(
    ledger: _Ledger, allocated: Sequence[obs.AllocatedDevice]
) -> list[obs.DeviceId | None]:
    """Map an allocation's CU devices (our driver, node pool, our device name) back to the
    vendor device ids the ledger is keyed by. Vendor results map directly."""
    by_vendor = ledger.members
    out: list[obs.DeviceId | None] = []
    for a in allocated:
        if not a.request.startswith("gpu"):
            continue
        did = obs.DeviceId(a.driver, a.pool, a.device)
        out.append(did if did in by_vendor else None)
    if out:
        return out
    # Fractional claims hold no vendor device: resolve through our device names.
    for a in allocated:
        if a.request.startswith("cu"):
            mapped = ledger.cu_names.get((a.pool, a.device))
            out.append(mapped if mapped is not None and mapped in by_vendor else None)
    return out

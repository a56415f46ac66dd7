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
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter

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
    NO_FREE_DEVICES = "NotEnoughFreeDevices"
    RESERVED = "ReservedForGuarantees"
    """A borrower that could not be preempted later may not take CU an idle guarantee can
    claim back (docs/plan.md, "The guarantee model")."""


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


class _Usage(dict[str, int]):
    """CU charged per tenant in one pool (0 when absent), remembering which tenants changed
    since :class:`_Idle` last looked, so the idle guarantees are kept up to date per change
    instead of summed over every tenant for every borrower (quadratic at 800 tenants)."""

    __slots__ = ("changed",)

    def __init__(self) -> None:
        super().__init__()
        self.changed: set[str] = set()

    def __missing__(self, key: str) -> int:
        return 0

    def __setitem__(self, key: str, value: int) -> None:
        self.changed.add(key)
        super().__setitem__(key, value)


class _Idle:
    """:func:`idle_guarantees` of one pool, maintained incrementally over a :class:`_Usage`."""

    def __init__(self, guarantees: Mapping[str, int], used: _Usage) -> None:
        self._guarantees = guarantees
        self._used = used
        self._part = {t: max(0, g - used.get(t, 0)) for t, g in guarantees.items()}
        self._total = sum(self._part.values())
        used.changed.clear()

    def total(self) -> int:
        for tenant in self._used.changed:
            if tenant in self._guarantees:
                new = max(0, self._guarantees[tenant] - self._used.get(tenant, 0))
                self._total += new - self._part[tenant]
                self._part[tenant] = new
        self._used.changed.clear()
        return self._total

    def without(self, tenant: str) -> int:
        """The idle guarantees of every tenant but ``tenant``."""
        return self.total() - self._part.get(tenant, 0)


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
    total_used: _Usage = field(default_factory=_Usage)
    unaccounted: int = 0
    """CU held by allocations no CUClaim accounts for (charged before admission)."""
    fractional: bool = False
    eligible_of: dict[int, tuple[docs.ClaimConstraints, list[_Group]]] = field(default_factory=dict)
    """The groups each claim's constraints allow (by the constraints object, kept alive)."""
    least_of: dict[tuple[int, int, int], int] = field(default_factory=dict)
    """:func:`least_charge` by (eligible groups, step-rounded request, devices)."""
    taken: list[tuple[obs.DeviceId, int]] = field(default_factory=list)
    """What :func:`_take_held` charged before admission, in order: with the pool, it is
    the ledger admission starts from (:func:`_pool_key`)."""

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
            fractional=pool.fractional,
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

    def eligible_groups(self, claim: docs.CUClaim) -> list[_Group]:
        """The groups whose devices meet the claim's constraints (all, when it has none)."""
        c = claim.spec.constraints
        if c.min_memory is None and not (
            c.vendors.allow or c.vendors.deny or c.models.allow or c.models.deny
        ):
            return self.groups
        found = self.eligible_of.get(id(c))
        if found is None or found[0] is not c:
            allowed = [g for g in self.groups if eligible(claim, g.device)]
            found = self.eligible_of[id(c)] = (c, allowed)
        return found[1]

    def consume(self, did: obs.DeviceId, amount: int) -> None:
        """Take ``amount`` from a device. A Whole device is always taken entirely, so a
        Whole group's slots hold only untouched devices (``left`` is the device's CU)."""
        left = self.remaining[did]
        new = left - amount if self.fractional else 0
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

    def copy(self, cu_names: Mapping[tuple[str, str], obs.DeviceId]) -> _Ledger:
        """A ledger to charge independently of this one (members and devices shared)."""
        groups = [_Group(g.device, g.milli_cu, list(g.slots), g.size) for g in self.groups]
        by_id = {id(old): new for old, new in zip(self.groups, groups, strict=True)}
        return _Ledger(
            pool=self.pool,
            remaining=dict(self.remaining),
            members=self.members,
            free_aggregate=self.free_aggregate,
            cu_names=cu_names,
            groups=groups,
            group_of={did: by_id[id(g)] for did, g in self.group_of.items()},
            total_used=_Usage(),
            unaccounted=self.unaccounted,
            fractional=self.fractional,
        )


def order_key(claim: docs.CUClaim, tenant: docs.Tenant | None) -> tuple[int, str, str]:
    """Admission order: priority (descending; an unknown tenant after every known one),
    tenant name, claim name."""
    priority = tenant.spec.priority if tenant else -1
    return (-priority, claim.spec.tenant, claim.metadata.name)


def reclaimable(tenant: docs.Tenant, policy: docs.Policy) -> bool:
    """Can a guarantee always take this tenant's borrowed CU back?

    Only when its claims may be preempted even once a Pod uses them: the tenant is
    preemptible, preemption is enabled and ``allowInUse`` is true. Any other borrower may
    become untouchable the moment its Pod starts, so it may borrow only what no idle
    guarantee can claim (:func:`idle_guarantees`)."""
    preemption = policy.spec.preemption
    return preemption.enabled and preemption.allow_in_use and tenant.spec.preemptible


def idle_guarantees(guarantees: Mapping[str, int], used: Mapping[str, int]) -> int:
    """CU of the pool's guarantees their tenants do not use now: what they may reclaim."""
    return sum(max(0, g - used.get(t, 0)) for t, g in guarantees.items())


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
    fractional = ledger.fractional
    count = claim.spec.count
    need = charge_each(ledger.pool, requested_each) if fractional else requested_each
    candidates: list[tuple[bool, int, obs.DeviceId]] = []
    preferred = set(prefer)
    for did in sorted(preferred):
        group = ledger.group_of.get(did)
        if group is None or not eligible(claim, group.device):
            continue
        left = ledger.remaining[did]
        if (fractional and left >= need) or (
            not fractional and left == group.milli_cu and group.milli_cu >= need
        ):
            candidates.append((False, left, did))
    for group in ledger.eligible_groups(claim):
        if group.milli_cu < need:
            continue
        slots = group.slots
        # Sorted by what is left: the first ``count`` that fit are the best (a Whole
        # group's slots are all untouched devices, :meth:`_Ledger.consume`).
        start = bisect.bisect_left(slots, (need,)) if fractional else 0
        if not preferred:
            candidates += [(True, left, did) for left, did in slots[start : start + count]]
            continue
        taken = 0
        for i in range(start, len(slots)):
            if taken >= count:
                break
            left, did = slots[i]
            if did not in preferred:
                candidates.append((True, left, did))
                taken += 1
    if len(candidates) < count:
        return None
    chosen = [did for _, _, did in sorted(candidates)[:count]]
    charge = need * count if fractional else sum(ledger.members[d].milli_cu for d in chosen)
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


def _cheapest(
    pool: capacity.PoolCapacity, need: int, devices: int, eligible_counts: Mapping[int, int]
) -> int:
    """The least CU ``devices`` placements of ``need`` each could be charged: step-rounded
    shares (Fractional), else the smallest eligible whole devices; the request itself where
    too few devices are eligible (nothing could hold it, so nothing is charged for it)."""
    if pool.fractional or sum(eligible_counts.values()) < devices:
        return need * devices
    out, left = 0, devices
    for size in sorted(eligible_counts):
        take = min(left, eligible_counts[size])
        out += take * size
        left -= take
        if not left:
            break
    return out


def least_charge(
    ledger: _Ledger, claim: docs.CUClaim, requested_each: int, replicas: int = 1
) -> int:
    """What ``replicas`` replicas of a claim would be charged at the least (docs/plan.md,
    "One accounting"): the unit in which shortfalls and pending messages state a need."""
    pool = ledger.pool
    need = charge_each(pool, requested_each)
    devices = claim.spec.count * replicas
    if ledger.fractional:
        return need * devices
    groups = ledger.eligible_groups(claim)
    key = (id(groups), need, devices)
    found = ledger.least_of.get(key)
    if found is None:
        counts: dict[int, int] = defaultdict(int)
        for group in groups:
            if group.milli_cu >= need:
                counts[group.milli_cu] += group.size
        found = ledger.least_of[key] = _cheapest(pool, need, devices, counts)
    return found


def _pending_reason(
    ledger: _Ledger, claim: docs.CUClaim, requested_each: int, replicas: int = 1
) -> tuple[Reason, str]:
    """The true cause of a claim not fitting, with the numbers that show it.

    Checked from the hardest cause to the softest: no device could ever hold it (eligible
    devices in the pool, whatever is in use), too few eligible devices are free now, the
    CU they would cost exceeds what is free after headroom, else fragmentation.
    """
    pool = ledger.pool
    need = charge_each(pool, requested_each)
    # Fractional replicas may share devices; Whole replicas each need their own.
    devices = claim.spec.count if pool.fractional else claim.spec.count * replicas
    # Counts per device size, not lists of devices: this runs for every pending claim.
    eligible_counts: dict[int, int] = defaultdict(int)
    free_counts: dict[int, int] = defaultdict(int)
    largest = 0
    for group in ledger.eligible_groups(claim):
        largest = max(largest, group.milli_cu)
        if group.milli_cu < need:
            continue
        eligible_counts[group.milli_cu] += group.size
        # Slots are sorted by what is left: the free ones are at the end.
        floor = need if pool.fractional else group.milli_cu
        free_counts[group.milli_cu] += len(group.slots) - bisect.bisect_left(group.slots, (floor,))
    n_eligible = sum(eligible_counts.values())
    n_free = sum(free_counts.values())
    headroom = pool.total_milli - pool.admittable_milli
    free = ledger.free_aggregate
    unit = "share" if pool.fractional else "device"
    if n_eligible < devices:
        if not n_eligible:
            return Reason.NO_ELIGIBLE_DEVICE, (
                f"needs {units.display_cu(need)} CU per {unit}; the largest eligible device "
                f"in pool {pool.name} has {units.display_cu(largest)} CU"
                if largest
                else f"no device in pool {pool.name} meets the claim's constraints"
            )
        return Reason.NO_ELIGIBLE_DEVICE, (
            f"needs {devices} devices of ≥ {units.display_cu(need)} CU; pool {pool.name} "
            f"has {n_eligible} eligible"
        )
    needed = _cheapest(pool, need, claim.spec.count * replicas, eligible_counts)
    if needed > free:
        return Reason.POOL_FULL, (
            f"needs {units.display_cu(needed)} CU; {units.display_cu(max(free, 0))} CU free "
            f"in pool {pool.name} after {units.display_cu(headroom)} CU headroom"
        )
    if n_free < devices:
        return Reason.NO_FREE_DEVICES, (
            f"needs {devices} free {unit}s of ≥ {units.display_cu(need)} CU; "
            f"{n_free} of {n_eligible} eligible are free "
            f"({units.display_cu(max(free, 0))} CU free in pool {pool.name})"
        )
    return Reason.FRAGMENTED, (
        f"needs {devices} {unit}s of {units.display_cu(need)} CU; "
        f"{units.display_cu(free)} CU free but not on devices that meet the constraints together"
    )


_CAPACITY = (Reason.POOL_FULL, Reason.NO_FREE_DEVICES, Reason.FRAGMENTED)


def _quota(tenant: docs.Tenant, pool: str) -> docs.Quota | None:
    for quota in tenant.spec.quotas:
        if quota.pool == pool:
            return quota
    return None


def namespace_of(claim: docs.CUClaim, tenant: docs.Tenant | None) -> str:
    if claim.spec.namespace:
        return claim.spec.namespace
    return tenant.spec.namespaces[0] if tenant else ""


@dataclass(frozen=True, slots=True)
class PoolAccount:
    """One pool's CU, every milli-CU accounted for once (docs/plan.md, "One accounting").

    ``total = Σ tenants + unaccounted + free + headroom``; ``free`` is negative when
    promises (pinned claims, running replicas) hold more than the pool can give.
    """

    pool: str
    total_milli: int
    headroom_milli: int
    tenants: tuple[tuple[str, int], ...]
    """CU charged per tenant: admitted claims, running replicas, sorted by tenant."""
    unaccounted_milli: int
    free_milli: int

    @property
    def charged_milli(self) -> int:
        return sum(m for _, m in self.tenants)


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A promise the devices can no longer keep: a guarantee or a pinned claim."""

    tenant: str
    pool: str
    promised_milli: int
    deliverable_milli: int
    subject: str
    """``guarantee`` or ``claim <namespace>/<name>``."""
    held_milli: int | None = None
    """A guarantee: the CU its tenant holds within it now (None for a claim: ``deliverable``
    is what the claim holds)."""

    def render(self) -> str:
        what = "guaranteed" if self.subject == "guarantee" else f"{self.subject} needs"
        text = (
            f"tenant {self.tenant} in pool {self.pool}: {what} "
            f"{units.display_cu(self.promised_milli)} CU, deliverable "
            f"{units.display_cu(self.deliverable_milli)} CU"
        )
        if self.held_milli is not None and self.held_milli > self.deliverable_milli:
            text += (
                f" (holds {units.display_cu(self.held_milli)} CU now, which higher-priority "
                "guarantees may take)"
            )
        return text


@dataclass(frozen=True, slots=True)
class Admission:
    decisions: tuple[Decision, ...]
    accounts: tuple[PoolAccount, ...]
    shortfalls: tuple[Shortfall, ...]


@dataclass(frozen=True, slots=True)
class _PoolRun:
    """One pool's admission: what it was computed from and what it decided."""

    key: tuple[object, ...]
    decided: tuple[Decision, ...]
    shortfalls: tuple[Shortfall, ...]
    settled: tuple[dict[str, int], int]
    used: dict[str, int]
    free: int


@dataclass(slots=True)
class Memo:
    """Each pool's admission last time, kept by the controller (``planning.Memo``).

    A pool's passes depend only on the pool (its devices and their CU), its ledger before
    them (CU already taken by allocations nobody accounts for and by running replicas
    charged across pools), its queue in order, every tenant (guarantees), the policy, what
    exists of its claims and their running replicas, and the names its devices go by.
    When all of those are equal, the pool's decisions and figures are the same: a claim
    added in one pool, or a node lost in one pool, admits that pool again and reuses the
    others. The result is what :func:`run` gives without it (tests/plan/test_incremental.py).
    """

    pools: dict[str, _PoolRun] = field(default_factory=dict)
    admitted: int = 0
    """Pools admitted again by the last :func:`run` (the rest were reused)."""
    ledgers: dict[str, tuple[capacity.PoolCapacity, _Ledger]] = field(default_factory=dict)
    """Each pool's ledger as built, before anything is charged: copied, not rebuilt, while
    the pool is the same."""
    cu_names: Mapping[tuple[str, str], obs.DeviceId] | None = None
    names: dict[str, dict[tuple[str, str], obs.DeviceId]] = field(default_factory=dict)
    split_for: dict[str, capacity.PoolCapacity] = field(default_factory=dict)
    """``cu_names`` of the last run, the part of it naming each pool's devices, and the
    pools it was split for."""
    entries: dict[str, _Entry] = field(default_factory=dict)
    ordered: list[_Entry] = field(default_factory=list)
    inputs: _Inputs | None = None
    """Each claim's entry, in admission order, and the claims, tenants, pools' traits and
    managed namespaces they were made from."""

    def fresh_ledgers(
        self,
        pools: Mapping[str, capacity.PoolCapacity],
        cu_names: Mapping[tuple[str, str], obs.DeviceId],
    ) -> dict[str, _Ledger]:
        """A fresh ledger per pool: a copy of the one built for it last time if it is the
        same pool, else a new one (kept for next time; pools gone are forgotten)."""
        kept: dict[str, tuple[capacity.PoolCapacity, _Ledger]] = {}
        for name, pool in pools.items():
            known = self.ledgers.get(name)
            if known is None or not (known[0] is pool or known[0] == pool):
                known = (pool, _Ledger.of(pool, cu_names))
            kept[name] = known
        self.ledgers = kept
        return {name: built.copy(cu_names) for name, (_, built) in kept.items()}

    def names_by_pool(
        self,
        pools: Mapping[str, capacity.PoolCapacity],
        cu_names: Mapping[tuple[str, str], obs.DeviceId],
    ) -> dict[str, dict[tuple[str, str], obs.DeviceId]]:
        """The names of each pool's devices (a pool's admission reads only those), split
        again only when the names or the pools changed."""
        same = (
            self.cu_names is not None
            and (self.cu_names is cu_names or self.cu_names == cu_names)
            and len(self.split_for) == len(pools)
            and all(self.split_for.get(n) is p for n, p in pools.items())
        )
        if same:
            return self.names
        pools_of: dict[obs.DeviceId, list[str]] = defaultdict(list)
        for name, pool in pools.items():
            for m in pool.members:
                pools_of[m.device.id].append(name)
        out: dict[str, dict[tuple[str, str], obs.DeviceId]] = {name: {} for name in pools}
        for key, did in cu_names.items():
            for name in pools_of.get(did, ()):
                out[name][key] = did
        self.names, self.split_for = out, dict(pools)
        return out


def _pool_key(
    ledger: _Ledger,
    queue: Sequence[_Entry],
    tenants: Sequence[docs.Tenant],
    policy: docs.Policy,
    names: Mapping[tuple[str, str], obs.DeviceId],
) -> tuple[object, ...]:
    """Everything one pool's passes read (:class:`Memo`), as one comparable value. The
    ledger is its pool's as built, less what was taken before admission (``taken``)."""
    return (
        ledger.pool,
        tuple(ledger.taken),
        dict(ledger.total_used),
        ledger.unaccounted,
        ledger.free_aggregate,
        tuple(e.claim for e in queue),
        tuple(tenants),
        policy,
        tuple(e.state for e in queue),
        tuple(tuple(e.running) for e in queue),
        names,
    )


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
    """The decisions of :func:`run` (kept for callers that need only those)."""
    return run(
        claims, tenants, pools, policy, managed_namespaces, live, cu_names, external, running
    ).decisions


@dataclass(slots=True)
class _Entry:
    """One claim with what every pass reads about it, looked up once: a memo keeps the
    entry while its claim, tenant and pool stay the same, and refreshes only ``state`` and
    ``running`` (what exists in the cluster) on each run."""

    claim: docs.CUClaim
    tenant: docs.Tenant | None
    name: str
    namespace: str
    requested_each: int
    order: tuple[int, str, str]
    verdict: Reason | None
    """Why the claim is not queued in its pool (None: it is)."""
    pool: tuple[object, ...] | None
    """What of its pool the verdict read (:func:`_pool_traits`)."""
    guaranteed: int = 0
    limit: int | None = None
    state: LiveClaim | None = None
    running: list[LiveClaim] = field(default_factory=list)
    """Running replicas: allocated stamped claims, at most ``replicas`` of them."""


def _pool_traits(pool: capacity.PoolCapacity | None) -> tuple[object, ...] | None:
    """What of a pool decides whether a claim can be queued in it (:func:`fits_api_limits`)."""
    return None if pool is None else (pool.sharing, pool.vendors)


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What every claim's entry was made from."""

    claims: tuple[docs.CUClaim, ...]
    tenants: tuple[docs.Tenant, ...]
    traits: Mapping[str, tuple[object, ...] | None]
    managed: Set[str]

    def same(self, other: _Inputs | None) -> bool:
        """Unchanged: the same claims and tenants (by identity, as a reload makes new
        ones), equal pool traits and namespaces."""
        return (
            other is not None
            and self.claims is other.claims
            and len(self.tenants) == len(other.tenants)
            and all(a is b for a, b in zip(self.tenants, other.tenants, strict=True))
            and self.traits == other.traits
            and self.managed == other.managed
        )


def _entry(
    claim: docs.CUClaim,
    tenant: docs.Tenant | None,
    pool: capacity.PoolCapacity | None,
    managed: Set[str],
) -> _Entry:
    name = claim.metadata.name
    ns = claim.spec.namespace or (tenant.spec.namespaces[0] if tenant else "")
    verdict: Reason | None = None
    if tenant is None:
        verdict = Reason.UNKNOWN_TENANT
    elif pool is None:
        verdict = Reason.UNKNOWN_POOL
    elif ns not in tenant.spec.namespaces or ns not in managed:
        verdict = Reason.NAMESPACE_NOT_ALLOWED
    elif not fits_api_limits(claim, pool):
        verdict = Reason.TOO_LARGE
    e = _Entry(
        claim,
        tenant,
        name,
        ns,
        units.cu_to_milli(claim.spec.cu),
        order_key(claim, tenant),
        verdict,
        _pool_traits(pool),
    )
    quota = _quota(tenant, claim.spec.pool) if tenant is not None else None
    if quota is not None:
        e.guaranteed = units.cu_to_milli(quota.guaranteed)
        e.limit = None if quota.limit is None else units.cu_to_milli(quota.limit)
    return e


def run(
    claims: Iterable[docs.CUClaim],
    tenants: Iterable[docs.Tenant],
    pools: Mapping[str, capacity.PoolCapacity],
    policy: docs.Policy,
    managed_namespaces: Iterable[str],
    live: Mapping[tuple[str, str], LiveClaim],
    cu_names: Mapping[tuple[str, str], obs.DeviceId],
    external: Sequence[obs.ObservedClaim] = (),
    running: Mapping[tuple[str, str], Sequence[LiveClaim]] | None = None,
    memo: Memo | None = None,
) -> Admission:
    """Decide every claim. ``live`` maps (namespace, name) of existing claims to their use;
    ``cu_names`` maps (node, CU device name) to the vendor device behind it; ``external``
    are allocated claims on our devices that no CUClaim accounts for (their CU is taken
    before anything is admitted); ``running`` maps (namespace, template name) to the claims
    stamped from that template that count as its replicas (at most ``replicas``); ``memo``
    (:class:`Memo`) reuses the pools whose inputs did not change."""
    tenant_list = list(tenants)
    tenant_by_name = {t.metadata.name: t for t in tenant_list}
    managed = set(managed_namespaces)
    preemption = policy.spec.preemption
    if memo is None:
        ledgers = {name: _Ledger.of(pool, cu_names) for name, pool in pools.items()}
    else:
        ledgers = memo.fresh_ledgers(pools, cu_names)
    decided: dict[str, Decision] = {}
    per_pool: dict[str, list[_Entry]] = defaultdict(list)
    shortfalls: list[Shortfall] = []
    settled: dict[str, tuple[dict[str, int], int]] = {}
    """Per pool, after the pinned pass: CU per tenant that may not move, and the free CU."""
    for other in external:
        for ledger in ledgers.values():
            ledger.unaccounted += _take_held(ledger, other.allocated)
    stamped = running or {}
    template = docs.ClaimForm.TEMPLATE

    inputs = _Inputs(
        tuple(claims),
        tuple(tenant_list),
        {name: _pool_traits(pool) for name, pool in pools.items()},
        managed,
    )
    traits = inputs.traits
    if memo is not None and inputs.same(memo.inputs):
        # Nothing in Git changed (a cluster event): the entries and their order stand.
        ordered = memo.ordered
    else:
        seen: Mapping[str, _Entry] = {}
        if memo is not None and memo.inputs is not None and memo.inputs.managed == managed:
            seen = memo.entries
        entries: dict[str, _Entry] = {}
        for claim in inputs.claims:
            tenant = tenant_by_name.get(claim.spec.tenant)
            name = claim.metadata.name
            e = seen.get(name)
            if (
                e is None
                or e.claim is not claim
                or e.tenant is not tenant
                or e.pool != traits.get(claim.spec.pool)
            ):
                e = _entry(claim, tenant, pools.get(claim.spec.pool), managed)
            entries[name] = e
        ordered = sorted(entries.values(), key=attrgetter("order"))
        if memo is not None:
            memo.entries, memo.ordered, memo.inputs = entries, ordered, inputs
    # What exists in the cluster is read afresh every time.
    for e in ordered:
        e.state = live.get((e.namespace, e.name))
        if e.claim.spec.form is template:
            found = stamped.get((e.namespace, e.name), ())
            e.running = [r for r in found if r.allocated][: e.claim.spec.replicas]
        elif e.running:
            e.running = []

    def base(e: _Entry, **kw: object) -> Decision:
        spec = e.claim.spec
        in_use = (e.state.in_use if e.state else False) or any(r.in_use for r in e.running)
        return Decision(
            claim=e.name,
            tenant=spec.tenant,
            pool=spec.pool,
            namespace=e.namespace,
            priority=e.tenant.spec.priority if e.tenant else 0,
            requested_milli=e.requested_each * spec.count * spec.replicas,
            live=e.state is not None,
            in_use=in_use,
            replicas=spec.replicas,
            running=len(e.running),
            **kw,  # type: ignore[arg-type]
        )

    def untouchable(e: _Entry, tenant: docs.Tenant) -> Reason | None:
        """Why an existing claim or template may not be preempted (None: it may)."""
        if e.state is None:
            return None
        in_use = e.state.in_use or any(r.in_use for r in e.running)
        if in_use and not preemption.allow_in_use:
            return Reason.IN_USE
        if not preemption.enabled or not tenant.spec.preemptible:
            return Reason.NOT_PREEMPTIBLE
        return None

    for e in ordered:
        claim = e.claim
        name = e.name
        if e.verdict is not None:
            decided[name] = base(e, status=Status.PENDING, reason=e.verdict)
        else:
            per_pool[claim.spec.pool].append(e)
        # Running replicas hold their devices whatever is decided here: charge what lies
        # outside the claim's pool (or everything, for a claim that is not queued) now.
        for replica in e.running:
            for pool_name, ledger in ledgers.items():
                if name in decided or pool_name != claim.spec.pool:
                    ledger.total_used[claim.spec.tenant] += _take_held(ledger, replica.allocated)

    def admit_pool(pool_name: str, ledger: _Ledger, queue: Sequence[_Entry]) -> None:
        """Passes 1 to 3 and the pending reasons of one pool's queue."""
        least_of: dict[tuple[str, int], int] = {}

        def least(e: _Entry, replicas: int) -> int:
            """:func:`least_charge`, once per claim and replica count."""
            key = (e.name, replicas)
            found = least_of.get(key)
            if found is None:
                found = least_of[key] = least_charge(ledger, e.claim, e.requested_each, replicas)
            return found

        # Pass 1a: what is held stays held. Running template replicas and pinned claims are
        # charged on the devices they hold (a device that vanished holds nothing), all of
        # them before anything is placed, so nothing is placed onto a held device.
        held: dict[str, list[_Placement]] = {}
        pins: dict[str, Reason] = {}
        for e in queue:
            if e.state is None and not e.running:
                continue
            claim, tenant = e.claim, e.tenant
            assert tenant is not None
            pin = untouchable(e, tenant)
            if pin is not None:
                pins[e.name] = pin
            if claim.spec.form is template:
                sources = [r.allocated for r in e.running]
            elif pin is not None and e.state is not None and e.state.allocated:
                sources = [e.state.allocated]
            else:
                sources = []
            for allocated in sources:
                placement = _hold(ledger, claim, tenant.metadata.name, allocated)
                if placement is not None:
                    held.setdefault(e.name, []).append(placement)
        # Pass 1b: promises without (all their) devices: a pinned claim whose device is gone,
        # the replicas of a pinned template not yet running. Placed best fit in priority
        # order, replica by replica, before any new claim; what does not fit is reported.
        for e in queue:
            runs = held.get(e.name)
            pin = pins.get(e.name)
            if not runs and pin is None:
                continue
            claim, tenant = e.claim, e.tenant
            assert tenant is not None
            if runs:
                held[e.name] = [
                    _complete(ledger, claim, tenant.metadata.name, e.requested_each, run)
                    for run in runs
                ]
            if pin is None:
                continue
            placements: list[_Placement] = list(held.get(e.name, []))
            if claim.spec.form is template:
                wanted = claim.spec.replicas - len(placements)
            else:
                wanted = 0 if placements else 1
            missing = 0
            for _ in range(wanted):
                placed = _place(ledger, claim, e.requested_each)
                if placed is None:
                    missing += 1
                    continue
                placements.append(_take(ledger, tenant.metadata.name, *placed))
            charge = sum(p.charge for p in placements)
            message = ""
            if missing:
                reason_text = _pending_reason(ledger, claim, e.requested_each, missing)[1]
                # Held and missing in one unit: what admission charges.
                promised = charge + least_charge(ledger, claim, e.requested_each, missing)
                what = (
                    f"{missing} of {claim.spec.replicas} replicas do not fit"
                    if claim.spec.form is template
                    else "its devices are gone and it does not fit elsewhere"
                )
                message = f"promise not deliverable: {what} ({reason_text}); kept, not preempted"
                shortfalls.append(
                    Shortfall(
                        tenant.metadata.name,
                        pool_name,
                        promised,
                        charge,
                        f"claim {e.namespace}/{e.name}",
                    )
                )
            decided[e.name] = base(
                e,
                status=Status.ADMITTED,
                reason=pin,
                charged_milli=charge,
                phase=Phase.PINNED,
                devices=tuple(sorted(d for p in placements for d in p.devices)),
                message=message,
            )
        # A template whose every replica runs is admitted as it is.
        for e in queue:
            runs = held.get(e.name, [])
            if (
                runs
                and e.name not in decided
                and e.claim.spec.form is template
                and len(runs) == e.claim.spec.replicas
            ):
                decided[e.name] = base(
                    e,
                    status=Status.ADMITTED,
                    reason=Reason.IN_USE,
                    charged_milli=sum(p.charge for p in runs),
                    phase=Phase.PINNED,
                    devices=tuple(sorted(d for p in runs for d in p.devices)),
                )
        settled[pool_name] = (dict(ledger.total_used), ledger.free_aggregate)
        # Passes 2 and 3. Guarantees first, so a borrower that may be preempted never
        # blocks one; borrowers then in keep order (the reverse of victim order: highest
        # priority, larger before smaller), so what no longer fits is the cheapest victim.
        guarantees = {
            t.metadata.name: units.cu_to_milli(q.guaranteed)
            for t in tenant_list
            if (q := _quota(t, pool_name)) is not None and q.guaranteed > 0
        }
        idle_now = _Idle(guarantees, ledger.total_used)
        reserved: dict[str, tuple[int, int, int]] = {}
        """Borrowers refused only because they would take idle guarantees:
        (charge, free before, idle guarantees)."""

        for phase in (Phase.GUARANTEED, Phase.BORROWED):
            walk = queue
            if phase is Phase.BORROWED:
                walk = sorted(
                    (e for e in queue if e.name not in decided),
                    key=lambda e: _keep_key(e, least(e, e.claim.spec.replicas)),
                )
            for e in walk:
                if e.name in decided:
                    continue
                claim, tenant = e.claim, e.tenant
                assert tenant is not None
                if phase is Phase.BORROWED and not tenant.spec.may_borrow:
                    continue
                pinned = held.get(e.name, [])
                replicas = claim.spec.replicas - len(pinned)
                # Usage already includes the running replicas (pass 1).
                used = ledger.total_used[tenant.metadata.name]
                ceiling = e.guaranteed if phase is Phase.GUARANTEED else e.limit
                # What does not fit under the ceiling even at its least charge is not
                # placed: placing it would only be undone.
                if ceiling is not None and used + least(e, replicas) > ceiling:
                    continue
                prefer = (
                    tuple(d for d in _resolve(ledger, e.state.allocated) if d) if e.state else ()
                )
                fresh = _place_replicas(
                    ledger, tenant.metadata.name, claim, e.requested_each, replicas, prefer
                )
                if fresh is None:
                    continue
                charge = sum(p.charge for p in fresh)
                if ceiling is not None and used + charge > ceiling:
                    _undo(ledger, tenant.metadata.name, fresh)
                    continue
                if phase is Phase.BORROWED and not reclaimable(tenant, policy):
                    idle = idle_now.total()
                    if ledger.free_aggregate < idle:
                        reserved[e.name] = (
                            charge,
                            ledger.free_aggregate + charge,
                            idle_now.without(tenant.metadata.name),
                        )
                        _undo(ledger, tenant.metadata.name, fresh)
                        continue
                everything = [*pinned, *fresh]
                charge = sum(p.charge for p in everything)
                devices = tuple(sorted(d for p in everything for d in p.devices))
                decided[e.name] = base(
                    e,
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
        for e in queue:
            if e.name in decided:
                continue
            claim, tenant = e.claim, e.tenant
            assert tenant is not None
            guaranteed = e.guaranteed
            pinned = held.get(e.name, [])
            replicas = claim.spec.replicas - len(pinned)
            reason, detail = _pending_reason(ledger, claim, e.requested_each, replicas)
            if reason is not Reason.NO_ELIGIBLE_DEVICE:
                # The least this claim could be charged, in the unit of every other figure.
                least_cu = least(e, replicas)
                used = ledger.total_used[tenant.metadata.name]
                limit = e.limit
                if not tenant.spec.may_borrow and guaranteed == 0:
                    reason = Reason.NO_QUOTA
                    detail = f"tenant {tenant.metadata.name} has no guarantee in {pool_name} "
                    detail += "and may not borrow"
                elif not tenant.spec.may_borrow and used + least_cu > guaranteed:
                    reason = Reason.OVER_LIMIT
                    detail = (
                        f"needs {units.display_cu(least_cu)} CU; tenant uses "
                        f"{units.display_cu(used)} of its {units.display_cu(guaranteed)} CU "
                        "guarantee and may not borrow"
                    )
                elif limit is not None and used + least_cu > limit:
                    reason = Reason.OVER_LIMIT
                    detail = (
                        f"needs {units.display_cu(least_cu)} CU; tenant uses "
                        f"{units.display_cu(used)} of its {units.display_cu(limit)} CU limit"
                    )
                if e.name in reserved and reason in _CAPACITY:
                    wanted, free, idle = reserved[e.name]
                    reason = Reason.RESERVED
                    detail = (
                        f"needs {units.display_cu(wanted)} CU; {units.display_cu(free)} CU free "
                        f"in pool {pool_name}, but {units.display_cu(idle)} CU of it is other "
                        "tenants' idle guarantee, which only a borrower that can always be "
                        "preempted may use (tenant preemptible, policy.preemption.allowInUse "
                        "true)"
                    )
            charge = sum(p.charge for p in pinned)
            if pinned:
                detail += (
                    f"; {len(pinned)} running replicas keep {units.display_cu(charge)} CU "
                    "until their Pods end"
                )
            decided[e.name] = base(
                e,
                status=Status.PREEMPTED if e.state is not None else Status.PENDING,
                reason=reason,
                charged_milli=charge,
                devices=tuple(sorted(d for p in pinned for d in p.devices)),
                message=detail,
            )

    names = memo.names_by_pool(pools, cu_names) if memo is not None else {}
    fresh: dict[str, _PoolRun] = {}
    for pool_name in sorted(per_pool):
        ledger = ledgers[pool_name]
        queue = per_pool[pool_name]
        if memo is None:
            admit_pool(pool_name, ledger, queue)
            continue
        key = _pool_key(ledger, queue, tenant_list, policy, names[pool_name])
        known = memo.pools.get(pool_name)
        if known is None or known.key != key:
            first = len(shortfalls)
            admit_pool(pool_name, ledger, queue)
            known = _PoolRun(
                key,
                tuple(decided[e.name] for e in queue),
                tuple(shortfalls[first:]),
                settled[pool_name],
                dict(ledger.total_used),
                ledger.free_aggregate,
            )
        else:
            decided.update((d.claim, d) for d in known.decided)
            shortfalls += known.shortfalls
            settled[pool_name] = known.settled
            ledger.total_used.clear()
            ledger.total_used.update(known.used)
            ledger.free_aggregate = known.free
        fresh[pool_name] = known
    if memo is not None:
        memo.admitted = sum(1 for k, v in fresh.items() if memo.pools.get(k) is not v)
        memo.pools = fresh
        memo.cu_names = cu_names
    if all(e.tenant is not None for e in ordered):
        # The claims' order is the decisions' order when every tenant is known.
        decisions = tuple([decided[e.name] for e in ordered])
    else:
        decisions = tuple(sorted(decided.values(), key=lambda d: (-d.priority, d.tenant, d.claim)))
    accounts = []
    for pool_name in sorted(ledgers):
        ledger = ledgers[pool_name]
        pool = ledger.pool
        accounts.append(
            PoolAccount(
                pool=pool_name,
                total_milli=pool.total_milli,
                headroom_milli=pool.total_milli - pool.admittable_milli,
                tenants=tuple(sorted((t, m) for t, m in ledger.total_used.items() if m)),
                unaccounted_milli=ledger.unaccounted,
                free_milli=ledger.free_aggregate,
            )
        )
        # A pool no claim asks for: everything charged to it is held (running replicas).
        kept_cu, movable = settled.get(pool_name, (dict(ledger.total_used), ledger.free_aggregate))
        shortfalls += _guarantee_shortfalls(ledger, tenant_list, kept_cu, movable)
    return Admission(
        decisions,
        tuple(accounts),
        tuple(sorted(shortfalls, key=lambda s: (s.pool, s.tenant, s.subject))),
    )


def _keep_key(e: _Entry, least: int) -> tuple[int, int, str, str]:
    """Keep order among borrowers, the reverse of victim order: highest priority first, then
    the larger (``least``, what it would be charged at the least: the unit of every other
    figure), then tenant and name.

    Only what every mode knows: not whether the claim exists nor when it was created, which
    a snapshot without our objects cannot say, so ``render`` from it admits exactly what
    ``plan`` and ``apply`` admit (docs/plan.md, "One truth in every mode")."""
    assert e.tenant is not None
    return (-e.tenant.spec.priority, -least, e.claim.spec.tenant, e.name)


def _guarantee_shortfalls(
    ledger: _Ledger, tenants: Sequence[docs.Tenant], pinned: Mapping[str, int], movable: int
) -> list[Shortfall]:
    """Guarantees the pool cannot deliver now, in the unit admission charges.

    ``pinned`` is the CU per tenant that may not move (pinned claims, running replicas),
    ``movable`` what the pool had left after it: its CU after headroom, less unaccounted
    allocations and pinned CU. A tenant is delivered its pinned CU within its guarantee,
    then, by priority (then tenant name), what remains of ``movable``: the guaranteed pass
    places claims in that order, so a higher-priority guarantee would take this CU before a
    lower one, and a borrower never keeps it from a guarantee. Each line also says what the
    tenant holds within its guarantee now (``held_milli``), so a lower-priority tenant that
    holds CU a higher priority may claim is not shown "deliverable 0" without it.
    """
    pool = ledger.pool
    spare = max(0, movable)
    out = []
    for tenant in sorted(tenants, key=lambda t: (-t.spec.priority, t.metadata.name)):
        quota = _quota(tenant, pool.name)
        if quota is None or quota.guaranteed <= 0:
            continue
        name = tenant.metadata.name
        promised = units.cu_to_milli(quota.guaranteed)
        kept = min(promised, pinned.get(name, 0))
        given = min(promised - kept, spare)
        spare -= given
        if kept + given < promised:
            held = min(promised, ledger.total_used.get(name, 0))
            out.append(Shortfall(name, pool.name, promised, kept + given, "guarantee", held))
    return out


def _complete(
    ledger: _Ledger, claim: docs.CUClaim, tenant: str, requested_each: int, held: _Placement
) -> _Placement:
    """A held allocation missing devices (some are gone, or it holds fewer than ``count``)
    is completed: its own devices first, best fit for the rest; kept as it is if that does
    not fit (it runs regardless)."""
    if len(held.devices) >= claim.spec.count:
        return held
    _undo(ledger, tenant, [held])
    placed = _place(ledger, claim, requested_each, held.devices)
    if placed is None:
        return _take(ledger, tenant, held.devices, held.charge)
    return _take(ledger, tenant, *placed)


def _hold(
    ledger: _Ledger, claim: docs.CUClaim, tenant: str, allocated: Sequence[obs.AllocatedDevice]
) -> _Placement | None:
    """Charge an existing allocation where it is: the devices it holds that still exist.

    A Fractional share is charged the claim's step-rounded request (what the scheduler
    consumed); a Whole device its CU. None when none of its devices is left (a lost node):
    what held nothing is placed again like any replica.
    """
    devices = tuple(
        sorted(
            {
                d
                for d in _resolve(ledger, allocated)
                if d is not None and ledger.members[d].device.usable
            }
        )
    )
    if not devices:
        return None
    pool = ledger.pool
    if pool.fractional:
        each = charge_each(pool, units.cu_to_milli(claim.spec.cu))
        charge = each * len(devices)
    else:
        charge = sum(ledger.members[d].milli_cu for d in devices)
    return _take(ledger, tenant, devices, charge)


def _take_held(ledger: _Ledger, allocated: Sequence[obs.AllocatedDevice]) -> int:
    """Charge an allocation on our devices to this pool, where its devices belong to it;
    returns the CU charged."""
    total = 0
    for a in allocated:
        did = ledger.cu_names.get((a.pool, a.device))
        if did is None or did not in ledger.members or not ledger.members[did].device.usable:
            continue
        member = ledger.members[did]
        if ledger.fractional and a.consumed_cu is not None:
            charge = int(quantity.parse_quantity(a.consumed_cu) * units.MILLI)
        else:
            charge = member.milli_cu
        charge = min(charge, ledger.remaining[did])
        ledger.consume(did, charge)
        ledger.free_aggregate -= charge
        ledger.taken.append((did, charge))
        total += charge
    return total


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

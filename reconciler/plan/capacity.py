"""CU arithmetic: factors, the CU of one device, which pool a device belongs to, pool totals.

All amounts are integers in milli-CU (1 CU = 1000), the resolution of a Kubernetes
quantity, so sums are exact and the same inputs give the same bytes. A device's CU is
``factor × reference.cuPerDevice`` rounded *down* to a milli-CU (never publish more than
the hardware is worth). With a workload mix, the factor is the weighted geometric mean of
the per-class factors (a ratio of speeds averages geometrically).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.model import documents as docs
from reconciler.model import factors, selection, units
from reconciler.model import observed as obs
from reconciler.model import state as st


@dataclass(frozen=True, slots=True)
class Member:
    """A device of a pool with its CU."""

    device: obs.ObservedDevice
    milli_cu: int
    factor: float


@dataclass(frozen=True, slots=True)
class CapacityLine:
    """One row of the arithmetic shown in the report: a model's contribution to a pool."""

    model: str
    devices: int
    factor: float
    milli_each: int
    milli_total: int
    unusable: int

    def render(self, cu_per_device: int) -> str:
        text = (
            f"{self.model}: {self.devices} × {self.factor:.4g} × {cu_per_device} CU"
            f" = {units.display_cu(self.milli_total)} CU"
        )
        if self.unusable:
            text += f" ({self.unusable} unhealthy or tainted, not counted)"
        return text


@dataclass(frozen=True, slots=True)
class PoolCapacity:
    name: str
    sharing: docs.SharingMode
    min_step_milli: int
    headroom_percent: float
    members: tuple[Member, ...]
    lines: tuple[CapacityLine, ...]
    total_milli: int
    """Sum over usable devices (what is published as available)."""
    admittable_milli: int
    """Total minus headroom: what claims may take."""
    vendors: tuple[str, ...] = ()
    """Vendors with devices in the pool, sorted."""
    basis: str = "raw"
    """Which factors the pool sells (:meth:`reconciler.model.factors.Basis.describe`)."""

    @property
    def fractional(self) -> bool:
        return self.sharing is docs.SharingMode.FRACTIONAL


def pool_mix(pool: docs.CUPool, policy: docs.Policy) -> Mapping[str, float]:
    return pool.spec.workload_mix or policy.spec.factors.workload_mix


_Outcome = tuple[int | None, Member | None, tuple[obs.Finding, ...]]
"""What :func:`compute` decides for one device: its pool's index (None: no pool), its
member (None: not published) and the findings about it."""


@dataclass(slots=True)
class Memo:
    """Last time's outcome per device and each pool, kept by the controller's planning memo.

    A device's outcome depends on the device, its node's labels, and the pools, factors,
    reference and policy; while those are the same objects, a device planned before (the
    same :class:`~reconciler.model.observed.ObservedDevice`, its node's labels equal) is
    not matched and priced again, and a pool whose members are all the same keeps its
    :class:`PoolCapacity` object, so later stages can tell an unchanged pool by identity.
    The result is the one :func:`compute` gives without it (tests/plan/test_incremental.py).
    """

    inputs: tuple[object, ...] = ()
    devices: dict[obs.DeviceId, tuple[obs.ObservedDevice, Mapping[str, str], _Outcome]] = field(
        default_factory=dict
    )
    pools: dict[str, PoolCapacity] = field(default_factory=dict)


def compute(
    desired: st.DesiredState, observed: obs.ObservedState, memo: Memo | None = None
) -> tuple[dict[str, PoolCapacity], tuple[obs.Finding, ...]]:
    """Assign every observed device to at most one pool and total each pool's CU.

    A device matching several pools goes to the first by name (reported); a device whose
    model has no factor is reported and left out (never guessed).
    """
    reference = desired.settings.spec.reference
    pools = sorted(desired.pools, key=lambda p: p.metadata.name)
    inputs = (reference, desired.factor_tables, *pools, desired.policy)
    if memo is None:
        memo = Memo()
    elif len(inputs) != len(memo.inputs) or any(
        a is not b for a, b in zip(inputs, memo.inputs, strict=False)
    ):
        memo.inputs, memo.devices, memo.pools = inputs, {}, {}
    labels = {n.name: n.labels for n in observed.nodes}
    bases: dict[str, factors.Basis] = {}
    per_model: dict[tuple[str, str], tuple[float | None, int]] = {}
    indexes: list[factors.FactorIndex] = []

    def basis(pool: docs.CUPool) -> factors.Basis:
        """The pool's factors, worked out only when a device or total needs them."""
        name = pool.metadata.name
        found = bases.get(name)
        if found is None:
            if not indexes:
                indexes.append(factors.index_factors(desired.factor_tables, reference.device_model))
            found = bases[name] = factors.pool_basis(indexes[0], pool, desired.policy)
        return found

    def outcome(device: obs.ObservedDevice, indexes: list[int]) -> _Outcome:
        matching = [pools[i] for i in indexes]
        if not matching:
            return None, None, ()
        pool = matching[0]
        found: list[obs.Finding] = []
        if len(matching) > 1:
            found.append(
                obs.Finding(
                    obs.FindingCode.AMBIGUOUS_POOL,
                    str(device.id),
                    "matches pools "
                    + ", ".join(p.metadata.name for p in matching)
                    + f"; assigned to {pool.metadata.name}",
                )
            )
        # One factor per (pool, model), not per device: 40,000 devices, a dozen models.
        known = per_model.get((pool.metadata.name, device.model))
        if known is None:
            factor = factors.blended_factor(
                basis(pool).index,
                device.model,
                pool_mix(pool, desired.policy),
                reference.workload_class,
            )
            milli = 0 if factor is None else units.to_milli(factor, reference.cu_per_device)
            known = per_model[(pool.metadata.name, device.model)] = (factor, milli)
        factor, milli = known
        if factor is None:
            found.append(
                obs.Finding(
                    obs.FindingCode.NO_FACTOR,
                    str(device.id),
                    f"no factor for model {device.model} in pool {pool.metadata.name}'s "
                    "workload mix; the device is not published",
                )
            )
            return indexes[0], None, tuple(found)
        step = units.cu_to_milli(pool.spec.sharing.min_step or 0)
        if pool.spec.sharing.mode is docs.SharingMode.FRACTIONAL and milli < step:
            found.append(
                obs.Finding(
                    obs.FindingCode.BELOW_MIN_STEP,
                    str(device.id),
                    f"{units.display_cu(milli)} CU is below pool {pool.metadata.name}'s minStep",
                )
            )
            return indexes[0], None, tuple(found)
        return indexes[0], Member(device, milli, factor), tuple(found)

    known = memo.devices
    fresh: dict[obs.DeviceId, tuple[obs.ObservedDevice, Mapping[str, str], _Outcome]] = {}
    missed: list[obs.ObservedDevice] = []
    for device in observed.devices:
        hit = known.get(device.id)
        if hit is None or hit[0] is not device or hit[1] != labels.get(device.node, {}):
            missed.append(device)
        else:
            fresh[device.id] = hit
    selectors = [p.spec.selector for p in pools]
    for device, taken in selection.matching(selectors, missed, labels):
        fresh[device.id] = (device, labels.get(device.node, {}), outcome(device, taken))
    memo.devices = fresh
    findings: list[obs.Finding] = []
    members: dict[int, list[Member]] = defaultdict(list)
    for device in observed.devices:
        index, member, found = fresh[device.id][2]
        findings += found
        if member is not None:
            assert index is not None
            members[index].append(member)
    out: dict[str, PoolCapacity] = {}
    for i, pool in enumerate(pools):
        name = pool.metadata.name
        pool_members = tuple(members.get(i, ()))
        before = memo.pools.get(name)
        if before is not None and before.members == pool_members:
            out[name] = before
            continue
        mix = pool_mix(pool, desired.policy) or {reference.workload_class: 1.0}
        described = basis(pool).describe({m.device.model for m in pool_members}, mix)
        out[name] = _total(pool, pool_members, described)
    memo.pools = out
    return out, tuple(findings)


def _total(pool: docs.CUPool, pool_members: tuple[Member, ...], basis: str = "raw") -> PoolCapacity:
    groups: dict[tuple[str, int], list[Member]] = defaultdict(list)
    for m in pool_members:
        groups[(m.device.model, m.milli_cu)].append(m)
    lines = []
    for (model, milli), group in sorted(groups.items()):
        usable = [m for m in group if m.device.usable]
        lines.append(
            CapacityLine(
                model=model,
                devices=len(usable),
                factor=group[0].factor,
                milli_each=milli,
                milli_total=milli * len(usable),
                unusable=len(group) - len(usable),
            )
        )
    total = sum(line.milli_total for line in lines)
    return PoolCapacity(
        name=pool.metadata.name,
        sharing=pool.spec.sharing.mode,
        min_step_milli=units.cu_to_milli(pool.spec.sharing.min_step or 0),
        headroom_percent=pool.spec.headroom_percent,
        members=pool_members,
        lines=tuple(lines),
        total_milli=total,
        admittable_milli=units.after_headroom(total, pool.spec.headroom_percent),
        vendors=tuple(sorted({m.device.vendor for m in pool_members})),
        basis=basis,
    )

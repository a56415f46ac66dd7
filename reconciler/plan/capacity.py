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
from dataclasses import dataclass

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


def compute(
    desired: st.DesiredState, observed: obs.ObservedState
) -> tuple[dict[str, PoolCapacity], tuple[obs.Finding, ...]]:
    """Assign every observed device to at most one pool and total each pool's CU.

    A device matching several pools goes to the first by name (reported); a device whose
    model has no factor is reported and left out (never guessed).
    """
    reference = desired.settings.spec.reference
    index = factors.index_factors(desired.factor_tables, reference.device_model)
    labels = {n.name: n.labels for n in observed.nodes}
    pools = sorted(desired.pools, key=lambda p: p.metadata.name)
    findings: list[obs.Finding] = []
    members: dict[str, list[Member]] = defaultdict(list)
    bases = {p.metadata.name: factors.pool_basis(index, p, desired.policy) for p in pools}
    selectors = [p.spec.selector for p in pools]
    per_model: dict[tuple[str, str], tuple[float | None, int]] = {}
    for device, indexes in selection.matching(selectors, observed.devices, labels):
        matching = [pools[i] for i in indexes]
        if not matching:
            continue
        pool = matching[0]
        if len(matching) > 1:
            findings.append(
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
                bases[pool.metadata.name].index,
                device.model,
                pool_mix(pool, desired.policy),
                reference.workload_class,
            )
            milli = 0 if factor is None else units.to_milli(factor, reference.cu_per_device)
            known = per_model[(pool.metadata.name, device.model)] = (factor, milli)
        factor, milli = known
        if factor is None:
            findings.append(
                obs.Finding(
                    obs.FindingCode.NO_FACTOR,
                    str(device.id),
                    f"no factor for model {device.model} in pool {pool.metadata.name}'s "
                    "workload mix; the device is not published",
                )
            )
            continue
        step = units.cu_to_milli(pool.spec.sharing.min_step or 0)
        if pool.spec.sharing.mode is docs.SharingMode.FRACTIONAL and milli < step:
            findings.append(
                obs.Finding(
                    obs.FindingCode.BELOW_MIN_STEP,
                    str(device.id),
                    f"{units.display_cu(milli)} CU is below pool {pool.metadata.name}'s minStep",
                )
            )
            continue
        members[pool.metadata.name].append(Member(device, milli, factor))
    out: dict[str, PoolCapacity] = {}
    for pool in pools:
        name = pool.metadata.name
        pool_members = tuple(members.get(name, ()))
        mix = pool_mix(pool, desired.policy) or {reference.workload_class: 1.0}
        basis = bases[name].describe({m.device.model for m in pool_members}, mix)
        out[name] = _total(pool, pool_members, basis)
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

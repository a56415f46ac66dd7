"""CU arithmetic: factors, the CU of one device, which pool a device belongs to, pool totals.

All amounts are integers in milli-CU (1 CU = 1000), the resolution of a Kubernetes
quantity, so sums are exact and the same inputs give the same bytes. A device's CU is
``factor × reference.cuPerDevice`` rounded *down* to a milli-CU (never publish more than
the hardware is worth). With a workload mix, the factor is the weighted geometric mean of
the per-class factors (a ratio of speeds averages geometrically).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import quantity
from reconciler.model import state as st

MILLI = 1000


@dataclass(frozen=True, slots=True)
class FactorIndex:
    """Factors by (model, workload class or None), merged over every FactorTable.

    Merge rule (tables may overlap): a learned factor beats a spec factor; between equals the
    table whose name sorts last wins. The reference model is 1.0 unless a table says otherwise.
    """

    values: Mapping[tuple[str, str | None], float]
    reference_model: str

    def lookup(self, model: str, workload_class: str | None) -> float | None:
        if workload_class is not None and (model, workload_class) in self.values:
            return self.values[(model, workload_class)]
        if (model, None) in self.values:
            return self.values[(model, None)]
        if model == self.reference_model:
            return 1.0
        return None


def index_factors(tables: Iterable[docs.FactorTable], reference_model: str) -> FactorIndex:
    ranked: dict[tuple[str, str | None], tuple[tuple[int, str], float]] = {}
    for table in tables:
        for factor in table.spec.factors:
            key = (factor.device_model, factor.workload_class)
            rank = (int(factor.source is docs.FactorSource.LEARNED), table.metadata.name)
            if key not in ranked or rank >= ranked[key][0]:
                ranked[key] = (rank, factor.value)
    return FactorIndex(
        values={k: v for k, (_, v) in sorted(ranked.items(), key=lambda kv: str(kv[0]))},
        reference_model=reference_model,
    )


def blended_factor(
    index: FactorIndex, model: str, mix: Mapping[str, float], default_class: str
) -> float | None:
    """One factor for a device: the weighted geometric mean over ``mix`` (or the default class).

    Returns None when any class in the mix has no factor for the model: never guess.
    """
    if not mix:
        return index.lookup(model, default_class)
    total = 0.0
    for workload_class, weight in sorted(mix.items()):
        value = index.lookup(model, workload_class)
        if value is None:
            return None
        total += weight * math.log(value)
    weights = math.fsum(mix.values())
    return math.exp(total / weights)


def to_milli(factor: float, cu_per_device: int) -> int:
    """``factor × cuPerDevice`` in milli-CU, rounded down; exact for decimal factors."""
    return math.floor(Fraction(repr(factor)) * cu_per_device * MILLI)


@functools.lru_cache(maxsize=4096)
def format_cu(milli: int) -> str:
    """Milli-CU as a Kubernetes quantity: ``260`` or ``12500m``."""
    return quantity.format_decimal(Fraction(milli, MILLI))


def display_cu(milli: int) -> str:
    """Milli-CU for humans: ``260`` or ``12.5``."""
    value = Fraction(milli, MILLI)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.3f}".rstrip("0").rstrip(".")


def cu_to_milli(amount: float) -> int:
    """A CU amount from a document (a float with ≤ 3 decimals, ≤ 1e9) in milli-CU, exactly.

    ``amount × 1000`` is below 2**53 and off by far less than 0.5, so rounding is exact.
    """
    return round(amount * MILLI)


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
            f" = {display_cu(self.milli_total)} CU"
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

    @property
    def fractional(self) -> bool:
        return self.sharing is docs.SharingMode.FRACTIONAL


def _match_expression(req: docs.LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    if req.operator == "In":
        return labels.get(req.key) in req.values
    if req.operator == "NotIn":
        return labels.get(req.key) not in req.values
    if req.operator == "Exists":
        return req.key in labels
    return req.key not in labels


def _labels_match(selector: docs.LabelSelector | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    return all(_match_expression(r, labels) for r in selector.match_expressions)


def _common_field(device: obs.ObservedDevice, name: str) -> str | None:
    return {
        "vendor": device.vendor,
        "model": device.model,
        "driverVersion": device.driver_version,
        "pcieRoot": device.pcie_root,
        "node": device.node,
        "uuid": device.uuid,
    }.get(name)


def selects(
    selector: docs.DeviceSelector, device: obs.ObservedDevice, node_labels: Mapping[str, str]
) -> bool:
    if selector.vendors and device.vendor not in selector.vendors:
        return False
    if selector.models and device.model not in selector.models:
        return False
    if selector.min_memory is not None and device.memory_bytes < quantity.parse_quantity(
        selector.min_memory
    ):
        return False
    if any(_common_field(device, k) != v for k, v in selector.attributes.items()):
        return False
    return _labels_match(selector.node_selector, node_labels)


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
    index = index_factors(desired.factor_tables, reference.device_model)
    labels = {n.name: n.labels for n in observed.nodes}
    pools = sorted(desired.pools, key=lambda p: p.metadata.name)
    findings: list[obs.Finding] = []
    members: dict[str, list[Member]] = defaultdict(list)
    for device in observed.devices:
        node_labels = labels.get(device.node, {})
        matching = [p for p in pools if selects(p.spec.selector, device, node_labels)]
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
        factor = blended_factor(
            index, device.model, pool_mix(pool, desired.policy), reference.workload_class
        )
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
        milli = to_milli(factor, reference.cu_per_device)
        step = cu_to_milli(pool.spec.sharing.min_step or 0)
        if pool.spec.sharing.mode is docs.SharingMode.FRACTIONAL and milli < step:
            findings.append(
                obs.Finding(
                    obs.FindingCode.BELOW_MIN_STEP,
                    str(device.id),
                    f"{display_cu(milli)} CU is below pool {pool.metadata.name}'s minStep",
                )
            )
            continue
        members[pool.metadata.name].append(Member(device, milli, factor))
    out: dict[str, PoolCapacity] = {}
    for pool in pools:
        name = pool.metadata.name
        pool_members = tuple(members.get(name, ()))
        out[name] = _total(pool, pool_members)
    return out, tuple(findings)


def _total(pool: docs.CUPool, pool_members: tuple[Member, ...]) -> PoolCapacity:
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
    headroom = math.ceil(Fraction(repr(pool.spec.headroom_percent)) * total / 100)
    return PoolCapacity(
        name=pool.metadata.name,
        sharing=pool.spec.sharing.mode,
        min_step_milli=cu_to_milli(pool.spec.sharing.min_step or 0),
        headroom_percent=pool.spec.headroom_percent,
        members=pool_members,
        lines=tuple(lines),
        total_milli=total,
        admittable_milli=total - headroom,
        vendors=tuple(sorted({m.device.vendor for m in pool_members})),
    )

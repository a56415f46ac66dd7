"""The plan report: CU arithmetic per pool, CU per tenant before → after, claim decisions.

"Before" is read from objects (the live side, or the base revision's target), "after" from
the target objects, with the same functions, so `plan` and `plan --base` agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from reconciler.model import observed as obs
from reconciler.model import ownership, quantity, units
from reconciler.plan import admission, capacity, slices


@dataclass(frozen=True, slots=True)
class PoolReport:
    name: str
    sharing: str
    lines: tuple[capacity.CapacityLine, ...]
    cu_per_device: int
    devices: int
    total_milli: int
    admittable_milli: int
    headroom_percent: float
    admitted_milli: int
    before_milli: int
    after_milli: int


@dataclass(frozen=True, slots=True)
class TenantReport:
    tenant: str
    pool: str
    priority: int
    guaranteed_milli: int
    limit_milli: int | None
    before_milli: int
    after_milli: int


@dataclass(frozen=True, slots=True)
class Report:
    revision: str
    pools: tuple[PoolReport, ...]
    tenants: tuple[TenantReport, ...]
    decisions: tuple[admission.Decision, ...]
    findings: tuple[obs.Finding, ...]
    warnings: tuple[str, ...]


def _milli(text: Any) -> int:
    value = str(text)
    if value.isdigit():
        return int(value) * units.MILLI
    if value.endswith("m") and value[:-1].isdigit():
        return int(value[:-1])
    try:
        return int(quantity.parse_quantity(str(text)) * units.MILLI)
    except ValueError:
        return 0


def published_cu(objects: Iterable[Mapping[str, Any]], driver: str) -> dict[str, int]:
    """CU per pool published in our slices, not counting tainted devices."""
    out: dict[str, int] = defaultdict(int)
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") != "ResourceSlice" or spec.get("driver") != driver:
            continue
        for device in spec.get("devices") or ():
            if any(
                t.get("effect") in ("NoSchedule", "NoExecute") for t in device.get("taints") or ()
            ):
                continue
            pool = ((device.get("attributes") or {}).get("pool") or {}).get("string")
            cu = ((device.get("capacity") or {}).get(slices.CU_CAPACITY) or {}).get("value")
            if pool and cu is not None:
                out[str(pool)] += _milli(cu)
    return dict(out)


def claimed_cu(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """CU requested by our claims and templates, per (tenant, pool)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for obj in objects:
        kind = obj.get("kind")
        if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
            continue
        labels = (obj.get("metadata") or {}).get("labels") or {}
        tenant, pool = labels.get(ownership.TENANT_LABEL), labels.get(ownership.POOL_LABEL)
        if not tenant or not pool:
            continue
        spec = obj.get("spec") or {}
        if kind == "ResourceClaimTemplate":
            spec = spec.get("spec") or {}
        for request in (spec.get("devices") or {}).get("requests") or ():
            exactly = request.get("exactly") or {}
            cu = ((exactly.get("capacity") or {}).get("requests") or {}).get(slices.CU_CAPACITY)
            if cu is not None:
                out[(str(tenant), str(pool))] += _milli(cu) * int(exactly.get("count", 1) or 1)
    return dict(out)


def milli_text(milli: int | None) -> str:
    return "∞" if milli is None else units.display_cu(milli)


def fraction_text(value: Fraction) -> str:
    return units.display_cu(int(value * units.MILLI))

"""The plan report: CU arithmetic per pool, CU per tenant before → after, claim decisions.

"Before" is read from objects (the live side, or the base revision's target), "after" from
the target objects, with the same functions, so `plan` and `plan --base` agree: published CU
from slices, quotas from the pool classes' annotations, claimed CU from claims and
templates (× their replicas). One difference is deliberate: on a live cluster a template
holds nothing by itself, so "before" counts what the live claims hold (our claims, and the
claims Pods stamped from our templates) instead (docs/plan.md).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from reconciler.model import observed as obs
from reconciler.model import ownership, quantity, units
from reconciler.plan import admission, capacity, claims, classes, schedule, slices


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
    """CU charged to tenants: admitted claims and running replicas (Σ of the tenant rows)."""
    before_milli: int
    after_milli: int
    unaccounted_milli: int = 0
    """CU held by allocations no CUClaim accounts for."""
    free_milli: int = 0
    """Admittable − charged − unaccounted (negative: promises exceed what is left)."""
    guaranteed_milli: int = 0
    """Σ of the tenants' guarantees in the pool."""
    basis: str = "raw"
    """Which factors the pool sells, with the latency targets (atSLO) or ``raw``."""

    @property
    def overcommit_milli(self) -> int:
        """How far the guarantees exceed what the pool can give now (0: they fit)."""
        return max(0, self.guaranteed_milli - self.admittable_milli)

    @property
    def headroom_milli(self) -> int:
        return self.total_milli - self.admittable_milli


@dataclass(frozen=True, slots=True, order=True)
class QuotaFigures:
    """A tenant's quota in one pool, in milli-CU (``limit_milli`` None: no limit)."""

    guaranteed_milli: int
    limit_milli: int | None


@dataclass(frozen=True, slots=True)
class TenantReport:
    """One tenant in one pool, before → after.

    ``quota_before``/``quota_after`` are None where the tenant has no quota in the pool (or,
    before, where none was recorded: a first apply). ``before_milli``/``after_milli`` are
    the claimed CU.
    """

    tenant: str
    pool: str
    priority: int
    quota_before: QuotaFigures | None
    quota_after: QuotaFigures | None
    before_milli: int
    after_milli: int

    @property
    def guaranteed_milli(self) -> int:
        return self.quota_after.guaranteed_milli if self.quota_after else 0

    @property
    def limit_milli(self) -> int | None:
        return self.quota_after.limit_milli if self.quota_after else None

    @property
    def changed(self) -> tuple[str, ...]:
        """Which figures differ before → after: ``guaranteed``, ``limit``, ``claimed``."""
        before, after = self.quota_before, self.quota_after
        out = []
        # None (no quota) differs from every figure, including a limit of None (no limit).
        if (None if before is None else (before.guaranteed_milli,)) != (
            None if after is None else (after.guaranteed_milli,)
        ):
            out.append("guaranteed")
        if (None if before is None else (before.limit_milli,)) != (
            None if after is None else (after.limit_milli,)
        ):
            out.append("limit")
        if self.before_milli != self.after_milli:
            out.append("claimed")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Report:
    revision: str
    pools: tuple[PoolReport, ...]
    tenants: tuple[TenantReport, ...]
    decisions: tuple[admission.Decision, ...]
    findings: tuple[obs.Finding, ...]
    warnings: tuple[str, ...]
    shortfalls: tuple[admission.Shortfall, ...] = ()
    """Promises the devices cannot keep now (guarantees, pinned claims): exit 1."""
    windows: schedule.Schedule = schedule.NONE
    """The guarantee windows and which is in force at the plan's instant."""


def _milli(text: Any) -> int:
    """A quantity the apiserver validated (capacities, requests) in milli-CU, rounded down.

    Never a silent 0: the full quantity grammar is accepted (``1e3``, ``5n``), and anything
    else raises, naming the value."""
    try:
        if isinstance(text, int) and not isinstance(text, bool):
            return int(quantity.parse_quantity(text) * units.MILLI)
        return _milli_of_text(str(text))
    except ValueError as exc:
        raise ValueError(f"unreadable CU quantity {text!r}: {exc}") from exc


@functools.lru_cache(maxsize=1024)
def _milli_of_text(text: str) -> int:
    """Cached: 40,000 published devices repeat a handful of CU quantities."""
    return int(quantity.parse_quantity(text) * units.MILLI)


def _recorded_milli(text: Any) -> int | None:
    """A figure from one of our annotations, which anyone with write access may edit:
    None when unreadable, so the caller falls back to what the object itself says."""
    try:
        value = _milli(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def published_cu(
    objects: Iterable[Mapping[str, Any]],
    driver: str,
    per_object: Callable[[Mapping[str, Any]], SliceCU] | None = None,
) -> dict[str, int]:
    """CU per pool published in our slices, not counting tainted devices. ``per_object``
    is :func:`slice_cu` (None), or the same remembered per object."""
    of = per_object or slice_cu
    out: dict[str, int] = defaultdict(int)
    for obj in objects:
        found = of(obj)
        if found is not None and found[0] == driver:
            for pool, milli in found[1]:
                out[pool] += milli
    return dict(out)


SliceCU = tuple[str, tuple[tuple[str, int], ...]] | None
"""A ResourceSlice's driver and the CU it publishes per pool (None: not a slice)."""


def slice_cu(obj: Mapping[str, Any]) -> SliceCU:
    """What one object adds to :func:`published_cu`, for any driver."""
    spec = obj.get("spec") or {}
    if obj.get("kind") != "ResourceSlice":
        return None
    out: dict[str, int] = defaultdict(int)
    for device in spec.get("devices") or ():
        if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in device.get("taints") or ()):
            continue
        pool = ((device.get("attributes") or {}).get("pool") or {}).get("string")
        cu = ((device.get("capacity") or {}).get(slices.CU_CAPACITY) or {}).get("value")
        if pool and cu is not None:
            out[str(pool)] += _milli(cu)
    return str(spec.get("driver")), tuple(out.items())


def _replicas(metadata: Mapping[str, Any]) -> int:
    text = str((metadata.get("annotations") or {}).get(claims.REPLICAS_ANNOTATION, "1"))
    return int(text) if text.isdigit() and int(text) > 0 else 1


def claimed_cu(
    objects: Iterable[Mapping[str, Any]],
    *,
    templates: bool = True,
    per_object: Callable[[Mapping[str, Any]], Charge] | None = None,
) -> dict[tuple[str, str], int]:
    """CU charged to our claims and templates, per (tenant, pool): their charged annotation
    (what admission charged), else the request (× replicas) for objects written without it.

    ``templates=False`` counts only ResourceClaims: on a live cluster a template holds
    nothing, the claims stamped from it do (:func:`held_cu`). ``per_object`` is
    :func:`charge`, or the same remembered per object.
    """
    of = per_object or charge
    out: dict[tuple[str, str], int] = defaultdict(int)
    for obj in objects:
        found = of(obj)
        if found is not None and (templates or not found[0]):
            out[found[1]] += found[2]
    return dict(out)


Charge = tuple[bool, tuple[str, str], int] | None
"""What one object adds to :func:`claimed_cu`: (a template?, (tenant, pool), milli-CU);
None for anything else."""


def charge(obj: Mapping[str, Any]) -> Charge:
    """One claim's or template's part of :func:`claimed_cu`."""
    kind = obj.get("kind")
    if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
        return None
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    tenant, pool = labels.get(ownership.TENANT_LABEL), labels.get(ownership.POOL_LABEL)
    if not tenant or not pool:
        return None
    template = kind == "ResourceClaimTemplate"
    who = (str(tenant), str(pool))
    charged = _recorded_milli((metadata.get("annotations") or {}).get(claims.CHARGED_ANNOTATION))
    if charged is not None:
        return template, who, charged
    spec = obj.get("spec") or {}
    replicas = 1
    if template:
        spec = spec.get("spec") or {}
        replicas = _replicas(metadata)
    total: int | None = None  # None: no CU request (nothing counted, not even 0)
    for request in (spec.get("devices") or {}).get("requests") or ():
        exactly = request.get("exactly") or {}
        cu = ((exactly.get("capacity") or {}).get("requests") or {}).get(slices.CU_CAPACITY)
        if cu is not None:
            count = int(exactly.get("count", 1) or 1)
            total = (total or 0) + _milli(cu) * count * replicas
    return None if total is None else (template, who, total)


def held_cu(
    stamped: Iterable[obs.ObservedClaim],
    pools: Iterable[capacity.PoolCapacity],
    cu_names: Mapping[tuple[str, str], obs.DeviceId],
    driver: str,
) -> dict[tuple[str, str], int]:
    """CU held by claims stamped from our templates, per (tenant, pool), from allocations.

    A Fractional share counts what it consumed; a Whole device its CU.
    """
    member_cu = {m.device.id: m.milli_cu for p in pools for m in p.members}
    out: dict[tuple[str, str], int] = defaultdict(int)
    for claim in stamped:
        tenant = claim.labels.get(ownership.TENANT_LABEL)
        pool = claim.labels.get(ownership.POOL_LABEL)
        if not tenant or not pool:
            continue
        for a in claim.allocated:
            if a.driver != driver:
                continue
            if a.consumed_cu is not None:
                out[(tenant, pool)] += _milli(a.consumed_cu)
            else:
                did = cu_names.get((a.pool, a.device))
                out[(tenant, pool)] += member_cu.get(did, 0) if did is not None else 0
    return dict(out)


def _quota_figures(text: str) -> QuotaFigures | None:
    parts = dict(p.partition("=")[::2] for p in text.split(","))
    if "guaranteed" not in parts:
        return None
    limit = parts.get("limit")
    guaranteed = _recorded_milli(parts["guaranteed"])
    limit_milli = None if limit is None else _recorded_milli(limit)
    if guaranteed is None or (limit is not None and limit_milli is None):
        return None  # edited by hand into something unreadable: shown as not recorded
    return QuotaFigures(guaranteed, limit_milli)


def recorded_quotas(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], QuotaFigures]:
    """Quotas recorded on our pool DeviceClasses, per (tenant, pool)."""
    out: dict[tuple[str, str], QuotaFigures] = {}
    for obj in objects:
        if obj.get("kind") != "DeviceClass":
            continue
        metadata = obj.get("metadata") or {}
        pool = (metadata.get("labels") or {}).get(ownership.POOL_LABEL)
        if not pool:
            continue
        for key, value in (metadata.get("annotations") or {}).items():
            if not str(key).startswith(classes.QUOTA_ANNOTATION_PREFIX):
                continue
            figures = _quota_figures(str(value))
            if figures is not None:
                tenant = str(key)[len(classes.QUOTA_ANNOTATION_PREFIX) :]
                out[(tenant, str(pool))] = figures
    return out


def recorded_settings(
    objects: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, str]]:
    """Every ``key=value`` part of the quota annotations on our pool DeviceClasses, per
    (tenant, pool): the quota and the tenant's admission settings last applied."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for obj in objects:
        if obj.get("kind") != "DeviceClass":
            continue
        metadata = obj.get("metadata") or {}
        pool = (metadata.get("labels") or {}).get(ownership.POOL_LABEL)
        if not pool:
            continue
        for key, value in (metadata.get("annotations") or {}).items():
            if str(key).startswith(classes.QUOTA_ANNOTATION_PREFIX):
                tenant = str(key)[len(classes.QUOTA_ANNOTATION_PREFIX) :]
                parts = (p.partition("=") for p in str(value).split(","))
                out[(tenant, str(pool))] = {k: v for k, _, v in parts if k}
    return out


def milli_text(milli: int | None) -> str:
    return "∞" if milli is None else units.display_cu(milli)


def fraction_text(value: Fraction) -> str:
    return units.display_cu(int(value * units.MILLI))

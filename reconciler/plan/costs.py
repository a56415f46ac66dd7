"""Showback: what a pool's devices cost, what a CU-hour costs, what each tenant pays.

The desired state's ``DeviceCosts`` document prices each device model, owned (purchase over a
lifetime, plus power) or rented (per hour), optionally per site through a node selector. From
the devices each pool takes (:func:`reconciler.plan.capacity.compute`, the same membership the
planner uses) this module derives:

- per pool: the devices' cost per hour, and the **cost per CU-hour** = that cost divided by the
  CU the pool can sell (published capacity minus headroom: the headroom is bought to keep
  promises, so its cost is carried by the CU that is sold);
- per tenant and pool, per month (730 h): the cost of its **guaranteed** CU and of the CU it has
  **in use** (charged to it by admission), at the pool's rate;
- per tenant, pool and workload class with a latency target, the **cost per million tokens**:
  the pool's cost per CU-hour / the tokens one CU-hour serves at the target. 1 CU is
  ``1 / cuPerDevice`` of the reference device, and the reference's atSLO row in the factor
  table carries its learned throughput at the target (tokens/s, for the served model named),
  so a CU-hour serves ``throughput × 3600 / cuPerDevice`` tokens while p99 meets the target.
  Shown only where that is known: a pool that sells raw factors, a class without a target or
  without a learned reference throughput in tokens/s has no figure (the records do not allow
  one), never a guessed one.

A device no entry prices is counted as unpriced, and the pool's rate covers only what is
priced (said in the output, never silently zero). Pure and deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import factors, selection
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.plan import capacity
from reconciler.plan import report as rpt


@dataclass(frozen=True, slots=True)
class PoolCost:
    pool: str
    devices: int
    unpriced: int
    cost_per_hour: float
    sellable_cu: float
    cost_per_cu_hour: float | None
    """None when the pool sells no CU."""


@dataclass(frozen=True, slots=True)
class TenantCost:
    tenant: str
    pool: str
    guaranteed_cu: float
    in_use_cu: float
    guaranteed_per_month: float
    in_use_per_month: float


@dataclass(frozen=True, slots=True)
class TokenCost:
    """What a million tokens of one class cost a tenant in one pool, at the SLO."""

    tenant: str
    pool: str
    workload_class: str
    per_million: float
    tokens_per_cu_hour: float
    target_ms: float
    served_model: str


@dataclass(frozen=True, slots=True)
class CostReport:
    currency: str
    pools: tuple[PoolCost, ...]
    tenants: tuple[TenantCost, ...]
    tokens: tuple[TokenCost, ...] = ()

    def monthly(self) -> dict[str, tuple[float, float]]:
        """Tenant → (guaranteed, in use) per month over every pool."""
        out: dict[str, tuple[float, float]] = {}
        for t in self.tenants:
            g, u = out.get(t.tenant, (0.0, 0.0))
            out[t.tenant] = (g + t.guaranteed_per_month, u + t.in_use_per_month)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "pools": [
                {
                    "pool": p.pool,
                    "devices": p.devices,
                    "unpricedDevices": p.unpriced,
                    "costPerHour": round(p.cost_per_hour, 4),
                    "sellableCU": round(p.sellable_cu, 3),
                    "costPerCUHour": None
                    if p.cost_per_cu_hour is None
                    else round(p.cost_per_cu_hour, 6),
                }
                for p in self.pools
            ],
            "tenants": [
                {
                    "tenant": t.tenant,
                    "pool": t.pool,
                    "guaranteedCU": t.guaranteed_cu,
                    "inUseCU": t.in_use_cu,
                    "guaranteedPerMonth": round(t.guaranteed_per_month, 2),
                    "inUsePerMonth": round(t.in_use_per_month, 2),
                }
                for t in self.tenants
            ],
            "perMillionTokens": {
                "unit": f"{self.currency} per million tokens, at the class's p99 target, "
                "the CU fully used",
                "rows": [
                    {
                        "tenant": c.tenant,
                        "pool": c.pool,
                        "workloadClass": c.workload_class,
                        "costPerMillionTokens": round(c.per_million, 6),
                        "tokensPerCUHour": round(c.tokens_per_cu_hour, 1),
                        "p99TargetMs": c.target_ms,
                        "servedModel": c.served_model,
                    }
                    for c in self.tokens
                ],
            },
        }


def _price(
    costs: docs.DeviceCosts, device: obs.ObservedDevice, labels: Mapping[str, str]
) -> float | None:
    for entry in costs.spec.devices:
        if entry.device_model == device.model and selection.labels_match(
            entry.node_selector, labels
        ):
            return entry.cost_per_hour
    return None


def compute(
    desired: st.DesiredState, observed: obs.ObservedState, report: rpt.Report
) -> CostReport | None:
    """The cost figures of one plan; None when the desired state declares no DeviceCosts."""
    costs = desired.device_costs
    if costs is None:
        return None
    pools, _ = capacity.compute(desired, observed)
    labels = {n.name: n.labels for n in observed.nodes}
    rate: dict[str, float | None] = {}
    out_pools = []
    for name in sorted(pools):
        pool = pools[name]
        priced = [_price(costs, m.device, labels.get(m.device.node, {})) for m in pool.members]
        hourly = math.fsum(p for p in priced if p is not None)
        sellable = pool.admittable_milli / 1000
        rate[name] = hourly / sellable if sellable > 0 else None
        out_pools.append(
            PoolCost(
                name,
                len(priced),
                sum(1 for p in priced if p is None),
                hourly,
                sellable,
                rate[name],
            )
        )
    out_tenants = []
    for t in sorted(report.tenants, key=lambda t: (t.tenant, t.pool)):
        per_cu = rate.get(t.pool) or 0.0
        guaranteed = t.guaranteed_milli / 1000
        in_use = t.after_milli / 1000
        out_tenants.append(
            TenantCost(
                t.tenant,
                t.pool,
                guaranteed,
                in_use,
                guaranteed * per_cu * docs.HOURS_PER_MONTH,
                in_use * per_cu * docs.HOURS_PER_MONTH,
            )
        )
    return CostReport(
        costs.spec.currency,
        tuple(out_pools),
        tuple(out_tenants),
        _token_costs(desired, report, rate),
    )


def unit_throughput(desired: st.DesiredState) -> dict[str, tuple[float, float, str]]:
    """Class → (tokens/s of the reference at the target, the target in ms, served model), from
    the reference's atSLO rows learned at the class's current target."""
    reference = desired.settings.spec.reference.device_model
    targets = desired.policy.latency_targets()
    out: dict[str, tuple[float, float, str]] = {}
    for m in factors.merge_factors(desired.factor_tables, docs.FactorBasis.AT_SLO):
        f = m.factor
        cls = f.workload_class
        if (
            f.device_model == reference
            and cls in targets
            and f.throughput is not None
            and f.throughput_unit == "tokens/s"
            and f.latency_target is not None
            and math.isclose(f.latency_target.p99_ms, targets[cls])
        ):
            out[cls] = (f.throughput, targets[cls], f.served_model or "")
    return out


def _token_costs(
    desired: st.DesiredState, report: rpt.Report, rate: Mapping[str, float | None]
) -> tuple[TokenCost, ...]:
    per_unit = unit_throughput(desired)
    if not per_unit:
        return ()
    cu_per_device = desired.settings.spec.reference.cu_per_device
    pools = {p.metadata.name: p for p in desired.pools}
    out: list[TokenCost] = []
    seen: set[tuple[str, str]] = set()
    for t in sorted(report.tenants, key=lambda t: (t.tenant, t.pool)):
        pool = pools.get(t.pool)
        per_cu = rate.get(t.pool)
        if pool is None or per_cu is None or (t.tenant, t.pool) in seen:
            continue
        seen.add((t.tenant, t.pool))
        if pool.spec.factor_basis is docs.FactorBasis.RAW:
            continue  # its CU is a raw throughput ratio: no tokens at the SLO behind it
        mix = capacity.pool_mix(pool, desired.policy) or per_unit
        for cls in sorted(set(mix) & set(per_unit)):
            tput, target, served = per_unit[cls]
            tokens = tput * 3600 / cu_per_device
            out.append(
                TokenCost(t.tenant, t.pool, cls, per_cu / tokens * 1e6, tokens, target, served)
            )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PaysChange:
    tenant: str
    before: tuple[float, float]
    after: tuple[float, float]


def compare(before: CostReport | None, after: CostReport | None) -> tuple[PaysChange, ...]:
    """Tenants whose monthly cost (guaranteed or in use) changes by at least one cent."""
    old = before.monthly() if before is not None else {}
    new = after.monthly() if after is not None else {}
    out = []
    for tenant in sorted(set(old) | set(new)):
        a, b = old.get(tenant, (0.0, 0.0)), new.get(tenant, (0.0, 0.0))
        if abs(a[0] - b[0]) >= 0.01 or abs(a[1] - b[1]) >= 0.01:
            out.append(PaysChange(tenant, a, b))
    return tuple(out)


def markdown(report: CostReport, changes: tuple[PaysChange, ...] = ()) -> str:
    """The cost section of a Markdown preview: the bills that change in the open, the figures
    per pool and tenant folded (the PR action's short comment keeps only the changes)."""
    lines = [f"#### Costs ({report.currency}; a month is {docs.HOURS_PER_MONTH} h)", ""]
    if changes:
        lines.append("What tenants pay changes (guaranteed, in use per month):")
        lines.append("")
        lines += [
            f"- {c.tenant}: {c.before[0]:,.2f} → {c.after[0]:,.2f}, "
            f"{c.before[1]:,.2f} → {c.after[1]:,.2f}"
            for c in changes
        ]
    else:
        lines.append("No tenant's bill changes.")
    body = text(report).split("\n", 1)[1]  # the figures without text()'s title line
    lines += ["", "<details><summary>Costs per pool and tenant</summary>", "", "```"]
    lines += [body.rstrip("\n"), "```", "", "</details>", ""]
    return "\n".join(lines)


def text(report: CostReport, changes: tuple[PaysChange, ...] = ()) -> str:
    """The cost section of a preview (plain text; the markdown form wraps it in a block)."""
    cur = report.currency
    lines = [f"Costs ({cur}; a month is {docs.HOURS_PER_MONTH} h):"]
    for p in report.pools:
        rate = "no CU to sell" if p.cost_per_cu_hour is None else f"{p.cost_per_cu_hour:.6g}/CU-h"
        note = f" ({p.unpriced} of {p.devices} devices unpriced)" if p.unpriced else ""
        lines.append(f"  pool {p.pool}: {p.cost_per_hour:,.2f}/h, {rate}{note}")
    for tenant, (g, u) in sorted(report.monthly().items()):
        lines.append(f"  tenant {tenant}: guaranteed {g:,.2f}/month, in use {u:,.2f}/month")
    if report.tokens:
        lines.append(
            f"Cost per million tokens ({cur} per 10⁶ tokens at the class's p99 target, "
            "the CU fully used):"
        )
        for tc in report.tokens:
            lines.append(
                f"  tenant {tc.tenant} in {tc.pool}, {tc.workload_class}: "
                f"{tc.per_million:.4g}/M tokens (1 CU-hour = {tc.tokens_per_cu_hour:,.0f} "
                f"tokens of {tc.served_model} at p99 ≤ {tc.target_ms:g} ms)"
            )
    if changes:
        lines.append("What tenants pay changes (guaranteed, in use per month):")
        for c in changes:
            lines.append(
                f"  ~ {c.tenant}: {c.before[0]:,.2f} → {c.after[0]:,.2f}, "
                f"{c.before[1]:,.2f} → {c.after[1]:,.2f}"
            )
    return "\n".join(lines) + "\n"

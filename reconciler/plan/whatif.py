"""What-if scenarios: hypothetical changes to the inputs of a plan, never to the world.

``cuctl plan --what-if 'lose node n7' --what-if 'add 16 x L40S to pool batch'`` plans the
desired state and the observed devices as they are, then again with the scenarios applied,
and previews the difference: capacity per pool, tenants before → after, admission and
preemption, objects that would change. Nothing is written anywhere: a scenario only edits
the in-memory inputs (:func:`apply`), and the planner is the same pure function.

Grammar (keywords are case-insensitive; ``x``, ``×`` and ``*`` are the same)::

    lose node NODE
    add COUNT x MODEL [vendor VENDOR] [memory QUANTITY] to pool POOL
    factor MODEL[/CLASS] (+|-)PERCENT%
    price MODEL (+|-)PERCENT% | price MODEL AMOUNT/h

``add`` puts the devices on new nodes (8 per node) labelled so the pool's node selector
takes them; the vendor, DRA driver and memory come from a device of that model already
observed, else from the adapter that maps the model (then ``memory`` is needed when the pool
has a ``minMemory``). ``factor`` scales the factor the planner uses for that model (every
class when none is given), as if a learned row said so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from reconciler.model import documents as docs
from reconciler.model import factors as fac
from reconciler.model import observed as obs
from reconciler.model import quantity, selection
from reconciler.model import state as st

DEVICES_PER_NODE = 8
WHAT_IF_TABLE = "zz-what-if"
"""Sorts after every real table name, so its learned rows win the merge (model/factors.py)."""

USAGE = (
    "a scenario is one of: 'lose node NODE'; 'add COUNT x MODEL [vendor VENDOR] "
    "[memory QUANTITY] to pool POOL'; 'factor MODEL[/CLASS] -10%'; 'price MODEL +20%' or "
    "'price MODEL 3.5/h'"
)


class WhatIfError(ValueError):
    """A scenario that cannot be read or does not fit the inputs; the message says why."""


@dataclass(frozen=True, slots=True)
class LoseNode:
    node: str

    def __str__(self) -> str:
        return f"lose node {self.node}"


@dataclass(frozen=True, slots=True)
class AddDevices:
    count: int
    model: str
    pool: str
    vendor: str | None = None
    memory: str | None = None

    def __str__(self) -> str:
        extra = (f" vendor {self.vendor}" if self.vendor else "") + (
            f" memory {self.memory}" if self.memory else ""
        )
        return f"add {self.count} x {self.model}{extra} to pool {self.pool}"


@dataclass(frozen=True, slots=True)
class ScaleFactor:
    model: str
    workload_class: str | None
    percent: float

    def __str__(self) -> str:
        klass = f"/{self.workload_class}" if self.workload_class else ""
        return f"factor {self.model}{klass} {self.percent:+g}%"


@dataclass(frozen=True, slots=True)
class Price:
    model: str
    percent: float | None = None
    per_hour: float | None = None

    def __str__(self) -> str:
        change = f"{self.percent:+g}%" if self.percent is not None else f"{self.per_hour:g}/h"
        return f"price {self.model} {change}"


Scenario = LoseNode | AddDevices | ScaleFactor | Price

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_LOSE = re.compile(rf"lose\s+node\s+(?P<node>{_NAME})", re.IGNORECASE)
_ADD = re.compile(
    rf"add\s+(?P<count>\d+)\s*(?:x|×|\*)\s*(?P<model>{_NAME})"
    rf"(?:\s+vendor\s+(?P<vendor>{_NAME}))?(?:\s+memory\s+(?P<memory>\S+))?"
    rf"\s+to\s+pool\s+(?P<pool>{_NAME})",
    re.IGNORECASE,
)
_FACTOR = re.compile(
    rf"factor\s+(?P<model>{_NAME})(?:/(?P<klass>{_NAME}))?\s+(?P<pct>[+-]\d+(?:\.\d+)?)\s*%",
    re.IGNORECASE,
)


_PRICE = re.compile(
    rf"price\s+(?P<model>{_NAME})\s+(?:(?P<pct>[+-]\d+(?:\.\d+)?)\s*%|"
    r"(?P<amount>\d+(?:\.\d+)?)\s*/\s*h)",
    re.IGNORECASE,
)


def parse(text: str) -> Scenario:
    """One scenario from its text; :class:`WhatIfError` with the grammar otherwise."""
    text = " ".join(text.split())
    if m := _LOSE.fullmatch(text):
        return LoseNode(m["node"])
    if m := _ADD.fullmatch(text):
        count = int(m["count"])
        if not 1 <= count <= 100_000:
            raise WhatIfError(f"{text!r}: COUNT must be between 1 and 100000")
        memory = m["memory"]
        if memory is not None and not re.fullmatch(quantity.QUANTITY_PATTERN, memory):
            raise WhatIfError(f"{text!r}: memory {memory!r} is not a quantity such as 48Gi")
        return AddDevices(count, m["model"], m["pool"], m["vendor"], memory)
    if m := _FACTOR.fullmatch(text):
        pct = float(m["pct"])
        if pct <= -100 or pct > 1000:
            raise WhatIfError(f"{text!r}: the change must be above -100% and at most +1000%")
        return ScaleFactor(m["model"], m["klass"], pct)
    if m := _PRICE.fullmatch(text):
        if m["pct"] is not None:
            pct = float(m["pct"])
            if pct <= -100 or pct > 1000:
                raise WhatIfError(f"{text!r}: the change must be above -100% and at most +1000%")
            return Price(m["model"], percent=pct)
        return Price(m["model"], per_hour=float(m["amount"]))
    raise WhatIfError(f"cannot read {text!r}: {USAGE}")


@dataclass(frozen=True, slots=True)
class Applied:
    desired: st.DesiredState
    observed: obs.ObservedState
    notes: tuple[str, ...]
    """What each scenario did, in words (devices removed, factors before → after)."""


def apply(
    scenarios: Sequence[Scenario], desired: st.DesiredState, observed: obs.ObservedState
) -> Applied:
    """The inputs with every scenario applied, in order. Pure: new values, nothing mutated."""
    notes: list[str] = []
    for scenario in scenarios:
        if isinstance(scenario, LoseNode):
            observed, note = _lose(scenario, observed)
        elif isinstance(scenario, AddDevices):
            observed, note = _add(scenario, desired, observed)
        elif isinstance(scenario, ScaleFactor):
            desired, note = _scale(scenario, desired)
        else:
            desired, note = _price(scenario, desired)
        notes.append(f"{scenario}: {note}")
    return Applied(replace(desired, revision=st.Revision("what-if")), observed, tuple(notes))


def _lose(scenario: LoseNode, observed: obs.ObservedState) -> tuple[obs.ObservedState, str]:
    known = {n.name for n in observed.nodes} | {d.node for d in observed.devices}
    if scenario.node not in known:
        raise WhatIfError(
            f"{scenario}: no node {scenario.node!r} among the observed devices "
            f"({len(known)} nodes observed)"
        )
    gone = [d for d in observed.devices if d.node == scenario.node]
    kept = tuple(d for d in observed.devices if d.node != scenario.node)
    nodes = tuple(n for n in observed.nodes if n.name != scenario.node)
    return replace(observed, nodes=nodes, devices=kept), f"{len(gone)} devices removed"


def _node_labels(pool: docs.CUPool) -> dict[str, str]:
    """Labels a new node needs for the pool's node selector to take it."""
    selector = pool.spec.selector.node_selector
    if selector is None:
        return {}
    labels = dict(selector.match_labels)
    for req in selector.match_expressions:
        if req.operator == "In" and req.values:
            labels.setdefault(req.key, req.values[0])
        elif req.operator == "Exists":
            labels.setdefault(req.key, "true")
    return labels


def _template(
    scenario: AddDevices, desired: st.DesiredState, observed: obs.ObservedState
) -> tuple[str, str, int, str]:
    """(vendor, driver, memory bytes, uuid attribute) for the new devices."""
    seen = [
        d
        for d in observed.devices
        if d.model == scenario.model and scenario.vendor in (None, d.vendor)
    ]
    memory = int(quantity.parse_quantity(scenario.memory)) if scenario.memory is not None else None
    if seen:
        d = min(seen, key=lambda d: d.id)
        return (
            d.vendor,
            d.id.driver,
            memory if memory is not None else d.memory_bytes,
            (d.uuid_attribute),
        )
    adapters = [
        a
        for a in desired.adapters
        if scenario.model in a.spec.mapping.model.values.values()
        and scenario.vendor in (None, a.spec.vendor)
    ]
    if not adapters:
        raise WhatIfError(
            f"{scenario}: no observed device and no VendorAdapter value map names model "
            f"{scenario.model!r}; check the spelling (it is the model name of the factor tables)"
        )
    if len(adapters) > 1:
        raise WhatIfError(
            f"{scenario}: model {scenario.model!r} is mapped by several vendors "
            f"({', '.join(sorted(a.spec.vendor for a in adapters))}); add 'vendor NAME'"
        )
    adapter = adapters[0]
    attribute = adapter.spec.mapping.uuid.attribute or "uuid"
    if "/" not in attribute:
        attribute = f"{adapter.spec.driver}/{attribute}"
    return adapter.spec.vendor, adapter.spec.driver, memory or 0, attribute


def _add(
    scenario: AddDevices, desired: st.DesiredState, observed: obs.ObservedState
) -> tuple[obs.ObservedState, str]:
    pools = {p.metadata.name: p for p in desired.pools}
    pool = pools.get(scenario.pool)
    if pool is None:
        raise WhatIfError(
            f"{scenario}: no pool {scenario.pool!r}; pools: {', '.join(sorted(pools)) or 'none'}"
        )
    vendor, driver, memory, uuid_attribute = _template(scenario, desired, observed)
    if pool.spec.selector.min_memory is not None and scenario.memory is None and memory == 0:
        raise WhatIfError(
            f"{scenario}: pool {scenario.pool} needs {pool.spec.selector.min_memory} per device "
            "and no observed device tells this model's memory; add 'memory QUANTITY'"
        )
    labels = _node_labels(pool)
    taken = {n.name for n in observed.nodes} | {d.node for d in observed.devices}
    nodes: list[obs.ObservedNode] = []
    devices: list[obs.ObservedDevice] = []
    serial = 0
    for i in range(scenario.count):
        if i % DEVICES_PER_NODE == 0:
            while f"what-if-{scenario.pool}-{serial}" in taken:
                serial += 1
            name = f"what-if-{scenario.pool}-{serial}"
            taken.add(name)
            nodes.append(obs.ObservedNode(name, dict(labels)))
        uuid = f"WHAT-IF-{name}-{i % DEVICES_PER_NODE}"
        devices.append(
            obs.ObservedDevice(
                id=obs.DeviceId(driver, name, f"dev-{i % DEVICES_PER_NODE}"),
                node=name,
                vendor=vendor,
                model=scenario.model,
                memory_bytes=memory,
                uuid=uuid,
                uuid_attribute=uuid_attribute,
                uuid_raw=(("string", uuid),),
            )
        )
    if not selection.selects(pool.spec.selector, devices[0], labels):
        raise WhatIfError(
            f"{scenario}: pool {scenario.pool}'s selector would not take these devices "
            "(vendors, models, minMemory or attributes); adjust the scenario or the pool"
        )
    return (
        replace(
            observed,
            nodes=(*observed.nodes, *nodes),
            devices=(*observed.devices, *devices),
        ),
        f"{scenario.count} devices on {len(nodes)} new node(s)",
    )


def _scale(scenario: ScaleFactor, desired: st.DesiredState) -> tuple[st.DesiredState, str]:
    reference = desired.settings.spec.reference.device_model
    index = fac.index_factors(desired.factor_tables, reference)
    classes: list[str | None]
    if scenario.workload_class is not None:
        classes = [scenario.workload_class]
    else:
        classes = sorted(
            {klass for model, klass in index.values if model == scenario.model},
            key=lambda k: k or "",
        )
        if not classes and scenario.model == reference:
            classes = [None]
    rows, changes = [], []
    for klass in classes:
        before = index.lookup(scenario.model, klass)
        if before is None:
            continue
        after = round(before * (1 + scenario.percent / 100), 6)
        if not 0 < after <= 1000:
            raise WhatIfError(f"{scenario}: factor {before} would become {after}, out of range")
        rows.append(
            docs.Factor(
                device_model=scenario.model,
                workload_class=klass,
                value=after,
                source=docs.FactorSource.LEARNED,
                reference="what-if",
            )
        )
        changes.append(f"{klass or 'every class'} {before:g} → {after:g}")
        slo_row = index.at_slo.get((scenario.model, klass)) if klass is not None else None
        if slo_row is not None:  # a pool selling atSLO factors must see the change too
            slo_after = round(slo_row[0] * (1 + scenario.percent / 100), 6)
            if not 0 < slo_after <= 1000:
                raise WhatIfError(
                    f"{scenario}: factor {slo_row[0]} would become {slo_after}, out of range"
                )
            rows.append(
                docs.Factor(
                    device_model=scenario.model,
                    workload_class=klass,
                    value=slo_after,
                    source=docs.FactorSource.LEARNED,
                    reference="what-if",
                    basis=docs.FactorBasis.AT_SLO,
                    latency_target=docs.LatencyTarget(p99_ms=slo_row[1]),
                )
            )
            changes.append(f"{klass} at the SLO {slo_row[0]:g} → {slo_after:g}")
    if not rows:
        raise WhatIfError(
            f"{scenario}: no factor for {scenario.model}"
            + (f"/{scenario.workload_class}" if scenario.workload_class else "")
            + " in the factor tables"
        )
    table = docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": WHAT_IF_TABLE},
            "spec": {"schemaVersion": 2, "referenceModel": reference, "factors": rows},
        }
    )
    kept = tuple(t for t in desired.factor_tables if t.metadata.name != WHAT_IF_TABLE)
    previous = next((t for t in desired.factor_tables if t.metadata.name == WHAT_IF_TABLE), None)
    if previous is not None:  # several factor scenarios: one table, the later rows win
        merged = {(f.device_model, f.workload_class, f.basis): f for f in previous.spec.factors}
        merged.update({(f.device_model, f.workload_class, f.basis): f for f in rows})
        table = table.model_copy(
            update={"spec": table.spec.model_copy(update={"factors": list(merged.values())})}
        )
    return replace(desired, factor_tables=(*kept, table)), ", ".join(changes)


def _price(scenario: Price, desired: st.DesiredState) -> tuple[st.DesiredState, str]:
    costs = desired.device_costs
    rows = (
        [] if costs is None else [d for d in costs.spec.devices if d.device_model == scenario.model]
    )
    if costs is None or not rows:
        raise WhatIfError(
            f"{scenario}: no DeviceCosts entry prices {scenario.model}; declare what devices "
            "cost in a DeviceCosts document (docs/costs.md)"
        )
    changed = []
    devices = []
    for entry in costs.spec.devices:
        if entry.device_model != scenario.model:
            devices.append(entry)
            continue
        before = entry.cost_per_hour
        if scenario.per_hour is not None:
            new = entry.model_copy(
                update={"owned": None, "rented": docs.RentedCost(price_per_hour=scenario.per_hour)}
            )
        elif entry.rented is not None:
            scaled = entry.rented.price_per_hour * (1 + (scenario.percent or 0) / 100)
            new = entry.model_copy(update={"rented": docs.RentedCost(price_per_hour=scaled)})
        else:
            assert entry.owned is not None
            factor = 1 + (scenario.percent or 0) / 100
            owned = entry.owned.model_copy(
                update={
                    "purchase_price": entry.owned.purchase_price * factor,
                    "energy_price_per_kwh": entry.owned.energy_price_per_kwh * factor,
                }
            )
            new = entry.model_copy(update={"owned": owned})
        devices.append(new)
        changed.append(f"{before:.4g} → {new.cost_per_hour:.4g}/h")
    spec = costs.spec.model_copy(update={"devices": devices})
    return (
        replace(desired, device_costs=costs.model_copy(update={"spec": spec})),
        ", ".join(changed),
    )

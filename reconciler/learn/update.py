"""The update rule: when a learned factor may replace the published one.

Capacity is a promise to tenants, so it moves only on evidence and only so far at a time.
The rule comes from the Policy in Git (``spec.factors``), applied per (device, class):

0. the published value is a learned one from the same records window (``recordsRevision``)
   → **unchanged**: the cap below applies once per evidence window, never compounds;
1. no identified data, fewer than ``minSamples`` records or ``minNodes`` nodes, or an
   interval wider than ``maxIntervalWidth`` (relative) → **held**: keep the published value;
2. the published value lies inside the learned interval at ``confidence`` → **unchanged**
   (hysteresis: noise never moves capacity);
3. otherwise move to the learned value, but by at most ``maxRelativeChange`` → **updated**
   or **clamped** (the next update continues the move if the evidence persists).

A (device, class) with nothing published gets its learned value when the evidence suffices,
else its spec prior (**new**). Pure: tables and estimates in, a new table and the list of
changes out; :mod:`reconciler.learn.writeback` commits them.

"Published" is whatever table the caller passes; ``cuctl factors fit`` passes the merged view
of every FactorTable (:func:`reconciler.model.factors.merged_table`), so the rule compares
against the value the planner actually publishes. With a :class:`Target` the moves are also
written into a bot-owned table that holds learned rows only: spec tables are curated by
people, with a source comment per row, and are never rewritten by the learner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from reconciler.learn import combine, drift, specs
from reconciler.model import documents as docs

Key = tuple[str, specs.WorkloadClass]


class Decision(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    CLAMPED = "clamped"
    UNCHANGED = "unchanged"
    HELD = "held"

    @property
    def changes_value(self) -> bool:
        return self in (Decision.NEW, Decision.UPDATED, Decision.CLAMPED)


@dataclass(frozen=True, slots=True)
class FactorChange:
    device_model: str
    workload_class: specs.WorkloadClass
    old: float | None
    new: float
    learned: float | None  # the posterior value behind the decision
    interval: tuple[float, float] | None
    samples: int
    nodes: int
    decision: Decision
    reason: str
    alarms: tuple[drift.Alarm, ...] = ()

    @property
    def subject(self) -> str:
        return f"{self.device_model}/{self.workload_class.value}"

    def render(self) -> str:
        old = "—" if self.old is None else f"{self.old:.4g}"
        ev = ""
        if self.learned is not None and self.interval is not None:
            lo, hi = self.interval
            ev = (
                f" learned {self.learned:.4g} [{lo:.4g}, {hi:.4g}],"
                f" n={self.samples}, nodes={self.nodes};"
            )
        if self.decision is Decision.HELD and self.old is None:  # nothing published, nothing set
            return f"{self.subject}: — ({self.decision.value};{ev} {self.reason})"
        return f"{self.subject}: {old} → {self.new:.4g} ({self.decision.value};{ev} {self.reason})"


@dataclass(frozen=True, slots=True)
class Target:
    """The bot-owned FactorTable that learned rows are written to.

    ``table`` is its current content, None before the first write (the table is then created
    under ``name``). It must hold learned rows only: a table with spec rows is curated by
    people and the learner never rewrites it.
    """

    name: str
    table: docs.FactorTable | None = None


@dataclass(frozen=True, slots=True)
class Proposal:
    table: docs.FactorTable
    changes: tuple[FactorChange, ...]
    alarms: tuple[drift.Alarm, ...] = ()
    slow_nodes: tuple[drift.SlowNode, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    target: docs.FactorTable | None = None
    """With a :class:`Target`: the bot-owned table to write (learned rows only), while
    ``table`` stays the whole proposed view (published rows with the changes applied)."""

    @property
    def changed(self) -> tuple[FactorChange, ...]:
        return tuple(c for c in self.changes if c.decision.changes_value)


def published(table: docs.FactorTable | None, key: Key) -> docs.Factor | None:
    """The entry that applies to a (device, class): class-specific first, then class-less."""
    if table is None:
        return None
    generic = None
    for f in table.spec.factors:
        if f.device_model != key[0] or f.basis is not docs.FactorBasis.RAW:
            continue
        if f.workload_class == key[1].value:
            return f
        if f.workload_class is None:
            generic = f
    return generic


def decide(
    post: combine.Posterior,
    old: docs.Factor | None,
    policy: docs.FactorPolicy,
    alarms: Sequence[drift.Alarm] = (),
    evidence: str = "",
    hold: str | None = None,
) -> FactorChange:
    """The rule for one (device, class); ``evidence`` identifies the records window.

    A published learned value that came from this very evidence is kept as it is: the
    ``maxRelativeChange`` cap applies once per evidence window, relative to the last
    published value, so re-running on the same records never walks a factor further.
    """
    est = post.estimate
    samples = est.samples if est is not None else 0
    nodes = est.nodes if est is not None else 0
    interval = post.interval() if post.learned else None
    old_value = old.value if old is not None else None

    def held(reason: str) -> FactorChange:
        if old_value is None:  # nothing published yet: publish the prior, marked as such
            return FactorChange(
                post.device_model,
                post.workload_class,
                None,
                _prior_value(post),
                post.value if post.learned else None,
                interval,
                samples,
                nodes,
                Decision.NEW,
                f"spec prior; {reason}",
                tuple(alarms),
            )
        return FactorChange(
            post.device_model,
            post.workload_class,
            old_value,
            old_value,
            post.value if post.learned else None,
            interval,
            samples,
            nodes,
            Decision.HELD,
            reason,
            tuple(alarms),
        )

    if hold:  # the reference of this class is in doubt: nothing in it moves
        return held(hold)
    if not post.learned:
        return held("no identified records")
    if samples < policy.min_samples:
        return held(f"{samples} samples < minSamples {policy.min_samples}")
    if nodes < policy.min_nodes:
        return held(f"{nodes} nodes < minNodes {policy.min_nodes}")
    width = post.relative_width()
    if width > policy.max_interval_width:
        return held(f"interval width {width:.3f} > maxIntervalWidth {policy.max_interval_width}")
    assert interval is not None
    lo, hi = interval
    if old_value is None:
        return FactorChange(
            post.device_model,
            post.workload_class,
            None,
            post.value,
            post.value,
            interval,
            samples,
            nodes,
            Decision.NEW,
            "learned",
            tuple(alarms),
        )
    if (
        evidence
        and old is not None
        and old.source is docs.FactorSource.LEARNED
        and old.records_revision == evidence
    ):
        return FactorChange(
            post.device_model,
            post.workload_class,
            old_value,
            old_value,
            post.value,
            interval,
            samples,
            nodes,
            Decision.UNCHANGED,
            "already published from these records (same recordsRevision)",
            tuple(alarms),
        )
    if lo <= old_value <= hi:
        return FactorChange(
            post.device_model,
            post.workload_class,
            old_value,
            old_value,
            post.value,
            interval,
            samples,
            nodes,
            Decision.UNCHANGED,
            "published value inside the interval",
            tuple(alarms),
        )
    cap = policy.max_relative_change
    target = min(max(post.value, old_value * (1 - cap)), old_value * (1 + cap))
    if math.isclose(target, post.value, rel_tol=1e-12):
        return FactorChange(
            post.device_model,
            post.workload_class,
            old_value,
            post.value,
            post.value,
            interval,
            samples,
            nodes,
            Decision.UPDATED,
            f"{post.value / old_value - 1:+.1%}",
            tuple(alarms),
        )
    return FactorChange(
        post.device_model,
        post.workload_class,
        old_value,
        target,
        post.value,
        interval,
        samples,
        nodes,
        Decision.CLAMPED,
        f"{target / old_value - 1:+.1%}, capped by maxRelativeChange {cap}",
        tuple(alarms),
    )


def _prior_value(post: combine.Posterior) -> float:
    return post.prior.value if post.prior is not None else post.value


def propose(
    table: docs.FactorTable | None,
    posteriors: Mapping[Key, combine.Posterior],
    policy: docs.FactorPolicy,
    *,
    reference_model: str = specs.REFERENCE_MODEL,
    alarms: Sequence[drift.Alarm] = (),
    slow_nodes: Sequence[drift.SlowNode] = (),
    records_revision: str = "",
    name: str = "default",
    target: Target | None = None,
    held_classes: Mapping[specs.WorkloadClass, str] | None = None,
) -> Proposal:
    """Apply the rule to every posterior; return the new table and every decision.

    ``table`` is the published view the rule compares against. With ``target``, the
    proposal also carries the target table with the learned moves written into it; a spec
    prior for a (device, class) nothing publishes is then not written (it belongs in a spec
    table, with its source) and is reported as held instead.
    """
    if target is not None and target.table is not None:
        curated = [
            f for f in target.table.spec.factors if f.source is not docs.FactorSource.LEARNED
        ]
        if curated:
            raise ValueError(
                f"FactorTable {target.name} holds {len(curated)} non-learned rows: it is curated "
                "by people and the learner does not rewrite it"
            )
    ref = table.spec.reference_model if table is not None else reference_model
    by_key: dict[Key, list[drift.Alarm]] = {}
    for a in alarms:
        by_key.setdefault((a.device_model, a.workload_class), []).append(a)
    changes: list[FactorChange] = []
    for key, post in sorted(posteriors.items()):
        if key[0] == ref:
            continue  # the reference is 1 by definition
        changes.append(
            decide(
                post,
                published(table, key),
                policy,
                by_key.get(key, ()),
                records_revision,
                hold=(held_classes or {}).get(key[1]),
            )
        )

    new_entries: dict[Key, docs.Factor] = {}
    for ch in changes:
        key = (ch.device_model, ch.workload_class)
        post = posteriors[key]
        existing = published(table, key)
        if not ch.decision.changes_value:
            continue
        learned = ch.learned is not None and not ch.reason.startswith("spec prior")
        interval = ch.interval if learned and ch.interval else None
        if interval is not None and not (interval[0] <= ch.new <= interval[1]):
            interval = None  # a clamped value lies outside the learned interval
        value = _round(ch.new)
        bounds = (_round_down(interval[0]), _round_up(interval[1])) if interval else None
        if bounds is not None and not (bounds[0] <= value <= bounds[1]):
            bounds = None
        new_entries[key] = docs.Factor(
            device_model=ch.device_model,
            workload_class=ch.workload_class.value,
            value=value,
            source=docs.FactorSource.LEARNED if learned else docs.FactorSource.SPEC,
            samples=ch.samples if learned else 0,
            interval=bounds,
            records_revision=(records_revision or None) if learned else None,
            reference=None
            if learned
            else (
                post.prior.reference
                if post.prior is not None
                else existing.reference
                if existing is not None
                else None
            ),
        )

    if target is not None:  # the target holds learned rows only: spec priors are not moved
        unwritten = {k for k, e in new_entries.items() if e.source is not docs.FactorSource.LEARNED}
        changes = [
            _not_written(c) if (c.device_model, c.workload_class) in unwritten else c
            for c in changes
        ]
        new_entries = {k: e for k, e in new_entries.items() if k not in unwritten}

    factors: list[docs.Factor] = []
    seen: set[Key] = set()
    for f in table.spec.factors if table is not None else []:
        cls = specs.parse_class(f.workload_class)
        if cls is not None and f.basis is docs.FactorBasis.RAW:
            key = (f.device_model, cls)
            if key in new_entries:
                factors.append(new_entries[key])
                seen.add(key)
                continue
        factors.append(f)
    factors += [e for k, e in sorted(new_entries.items()) if k not in seen]
    doc = docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": table.metadata.name if table is not None else name},
            "spec": {
                "schemaVersion": table.spec.schema_version if table is not None else 1,
                "referenceModel": ref,
                "factors": [
                    f.model_dump(by_alias=True, exclude_none=True, mode="json") for f in factors
                ],
            },
        }
    )
    return Proposal(
        doc,
        tuple(changes),
        tuple(alarms),
        tuple(slow_nodes),
        target=None if target is None else _target_table(target, ref, new_entries),
    )


def _not_written(change: FactorChange) -> FactorChange:
    """A spec prior the learner may not publish: the target holds learned rows only."""
    return FactorChange(
        change.device_model,
        change.workload_class,
        None,
        change.new,
        change.learned,
        change.interval,
        change.samples,
        change.nodes,
        Decision.HELD,
        f"nothing published and {change.reason.removeprefix('spec prior; ')}; spec prior "
        f"{change.new:.4g} not written (spec rows belong in a curated spec table)",
        change.alarms,
    )


def _target_table(
    target: Target, reference_model: str, learned: Mapping[Key, docs.Factor]
) -> docs.FactorTable:
    """The target's rows with each learned move replacing its (device, class) row, or added.

    Rows are kept in their order and new ones appended sorted, so a commit's diff shows only
    what moved.
    """
    rows: list[docs.Factor] = []
    seen: set[Key] = set()
    for f in target.table.spec.factors if target.table is not None else []:
        cls = specs.parse_class(f.workload_class)
        raw = f.basis is docs.FactorBasis.RAW  # atSLO rows are written by reconciler.learn.slo
        key = (f.device_model, cls) if cls is not None and raw else None
        if key is not None and key in learned:
            rows.append(learned[key])
            seen.add(key)
        else:
            rows.append(f)
    rows += [e for k, e in sorted(learned.items()) if k not in seen]
    metadata = (
        target.table.metadata.model_dump(by_alias=True, exclude_none=True, mode="json")
        if target.table is not None
        else {"name": target.name}
    )
    return docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": metadata,
            "spec": {
                "schemaVersion": target.table.spec.schema_version if target.table else 1,
                "referenceModel": reference_model,
                "factors": [
                    f.model_dump(by_alias=True, exclude_none=True, mode="json") for f in rows
                ],
            },
        }
    )


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def _round_down(v: float) -> float:
    return math.floor(v * 1e4) / 1e4


def _round_up(v: float) -> float:
    return math.ceil(v * 1e4) / 1e4


__all__ = ["Decision", "FactorChange", "Proposal", "Target", "decide", "propose", "published"]

"""The planning function: desired × observed (× live) → target objects + report.

This is glue, like gitops-engine's engine.go: capacity → admission → objects → report →
safety. Every step is a pure function of its arguments; the live objects are an input (for
pool generations and the immutable-claim rule), never read here.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, fields
from typing import Any

from reconciler import _gc
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import ownership, units
from reconciler.model import state as st
from reconciler.plan import (
    admission,
    audit,
    capacity,
    claims,
    classes,
    facts,
    fence,
    managed,
    quota,
    report,
    safety,
    schedule,
    slices,
)

JsonObject = Mapping[str, Any]

KIND_ORDER: tuple[str, ...] = (
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "DeviceTaintRule",
    "DeviceClass",
    "ResourceSlice",
    "ResourceQuota",
    "ResourceClaimTemplate",
    "ResourceClaim",
)
"""Apply order: the fence stands before CU is published; classes before slices and claims."""


@dataclass(frozen=True, slots=True)
class Plan:
    revision: str
    objects: tuple[dict[str, Any], ...]
    """The target: every object that should exist, in apply order."""
    live: tuple[JsonObject, ...]
    """The owned live objects this plan was computed against (the diff's other side)."""
    report: report.Report
    refusal: str | None
    """Set when the safety rule refuses the plan; apply must not run it."""

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.report.warnings


_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}


def kind_rank(kind: str) -> int:
    """A kind's place in :data:`KIND_ORDER` (unknown kinds last)."""
    return _RANK.get(kind, len(KIND_ORDER))


def sort_key(obj: JsonObject) -> tuple[int, str, str]:
    meta = obj.get("metadata") or {}
    rank = kind_rank(str(obj.get("kind", "")))
    return (rank, str(meta.get("namespace", "")), str(meta.get("name", "")))


def _live_claims(
    observed: obs.ObservedState, live: Sequence[JsonObject]
) -> dict[tuple[str, str], admission.LiveClaim]:
    """What exists of our claims and templates: the live objects, and what the observed
    ResourceClaims prove exists even when the live side lacks it (a snapshot made with
    ``kubectl get nodes,resourceslices,resourceclaims`` holds no templates and, in render,
    stands in for the live side): a claim carrying our label, and the template a claim was
    stamped from. Without them, render would treat an in-use claim or a non-preemptible
    template as new, and drop it when it no longer fits (docs/plan.md, "One truth")."""
    status = {(c.namespace, c.name): c for c in observed.claims}
    out: dict[tuple[str, str], admission.LiveClaim] = {}
    for found in observed.claims:
        key = (found.namespace, found.name)
        if found.labels.get(ownership.MANAGED_BY_KEY) == ownership.MANAGED_BY_VALUE:
            out[key] = admission.LiveClaim(in_use=found.in_use, allocated=found.allocated)
        template = found.labels.get(ownership.TEMPLATE_LABEL)
        if template:
            out.setdefault(
                (found.namespace, template), admission.LiveClaim(in_use=False, template=True)
            )
    for obj in live:
        kind = obj.get("kind")
        if kind not in ("ResourceClaim", "ResourceClaimTemplate"):
            continue
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        if kind == "ResourceClaimTemplate":
            # Exists (so a template no longer admitted is preempted), holds nothing.
            out[key] = admission.LiveClaim(in_use=False, template=True)
            continue
        seen = status.get(key)
        out[key] = admission.LiveClaim(
            in_use=seen.in_use if seen else False,
            allocated=seen.allocated if seen else (),
        )
    return out


def _subjects(claims: Sequence[obs.ObservedClaim], limit: int = 5) -> str:
    names = [f"{c.namespace}/{c.name}" for c in claims[:limit]]
    more = f" and {len(claims) - limit} more" if len(claims) > limit else ""
    return ", ".join(names) + more


def _ours(
    desired: st.DesiredState, observed: obs.ObservedState, live: Sequence[JsonObject]
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The claims that are ours: (created by us, stamped from our templates).

    Created: the live claim with that uid is ours (the inventory). Stamped: it wears our
    template label *and* its spec is the live template's, which only kube-controller-manager
    stamping that template (or a claim exactly as fenced as ours) produces. Without an
    inventory (a snapshot) the names and labels decide, as nothing better is known.
    """
    if observed.inventory is None:
        return _claim_keys(desired), {
            (c.namespace, c.name) for c in observed.claims if ownership.TEMPLATE_LABEL in c.labels
        }
    uids = {
        str((o.get("metadata") or {}).get("uid") or "")
        for o in live
        if o.get("kind") == "ResourceClaim"
    }
    templates = {
        (str(meta.get("namespace", "")), str(meta.get("name", ""))): obs.spec_digest(
            ((o.get("spec") or {}).get("spec")) or {}
        )
        for o in live
        if o.get("kind") == "ResourceClaimTemplate"
        for meta in [o.get("metadata") or {}]
    }
    created = {(c.namespace, c.name) for c in observed.claims if c.uid and c.uid in uids}
    stamped = {
        (c.namespace, c.name)
        for c in observed.claims
        if templates.get((c.namespace, c.labels.get(ownership.TEMPLATE_LABEL, ""))) == c.spec_digest
    }
    return created, stamped


def _stamped(
    desired: st.DesiredState, observed: obs.ObservedState, genuine: Set[tuple[str, str]]
) -> tuple[
    dict[tuple[str, str], tuple[admission.LiveClaim, ...]],
    tuple[obs.ObservedClaim, ...],
    list[str],
]:
    """Sort the claims stamped from our templates into replicas and the unaccounted rest.

    Every claim carrying the template label belongs to a Pod. Up to ``replicas`` of them
    per template are its running replicas (allocated ones first, then by name): admission
    places them first, on their devices. The others still hold devices until their Pods
    end, so those allocated on our driver are charged as unaccounted (before admission) and
    reported: claims beyond ``replicas``, and claims of a template no CUClaim declares.
    """
    driver = desired.settings.spec.driver_name
    tenants = {t.metadata.name: t for t in desired.tenants}
    templates = {
        (admission.namespace_of(c, tenants.get(c.spec.tenant)), c.metadata.name): c
        for c in desired.claims
        if c.spec.form is docs.ClaimForm.TEMPLATE
    }
    groups: dict[tuple[str, str], list[obs.ObservedClaim]] = defaultdict(list)
    for claim in observed.claims:
        template = claim.labels.get(ownership.TEMPLATE_LABEL)
        if template and (claim.namespace, claim.name) in genuine:
            groups[(claim.namespace, template)].append(claim)
    running: dict[tuple[str, str], tuple[admission.LiveClaim, ...]] = {}
    unaccounted: list[obs.ObservedClaim] = []
    warnings: list[str] = []
    for key in sorted(groups):
        holding = sorted(
            groups[key],
            key=lambda c: (not any(a.driver == driver for a in c.allocated), c.name),
        )
        subject = f"ResourceClaimTemplate {key[0]}/{key[1]}"
        declared = templates.get(key)
        replicas = declared.spec.replicas if declared is not None else 0
        mine, rest = holding[:replicas], holding[replicas:]
        if mine:
            running[key] = tuple(
                admission.LiveClaim(
                    in_use=c.in_use,
                    allocated=c.allocated if any(a.driver == driver for a in c.allocated) else (),
                )
                for c in mine
            )
        extra = [c for c in rest if any(a.driver == driver for a in c.allocated)]
        unaccounted += extra
        if declared is not None and rest:
            warnings.append(
                f"{len(rest)} claims stamped from {subject} exceed its replicas "
                f"({replicas}): {_subjects(rest)}; their CU is charged as unaccounted until "
                "their Pods end (raise spec.replicas or scale the Pods down)"
            )
        elif declared is None and extra:
            warnings.append(
                f"{len(extra)} claims stamped from {subject}, which no CUClaim declares, hold "
                f"devices: {_subjects(extra)}; their CU is charged as unaccounted until their "
                "Pods end"
            )
    return running, tuple(unaccounted), warnings


def _claim_keys(desired: st.DesiredState) -> set[tuple[str, str]]:
    """(namespace, name) of every ResourceClaim a CUClaim may render."""
    tenants = {t.metadata.name: t for t in desired.tenants}
    return {
        (admission.namespace_of(c, tenants.get(c.spec.tenant)), c.metadata.name)
        for c in desired.claims
        if c.spec.form is docs.ClaimForm.CLAIM
    }


def _external_claims(
    desired: st.DesiredState, observed: obs.ObservedState, ours: Set[tuple[str, str]]
) -> tuple[obs.ObservedClaim, ...]:
    """Allocated claims on our driver that are not ours (:func:`_ours`).

    Claims stamped from our templates are sorted by :func:`_stamped`; everything else
    holding our devices (hand-made claims, whatever their labels or names) takes its CU
    before admission, so nothing is admitted onto capacity that is in use.
    """
    driver = desired.settings.spec.driver_name
    out = []
    for claim in observed.claims:
        if (claim.namespace, claim.name) in ours:
            continue
        if any(a.driver == driver for a in claim.allocated):
            out.append(claim)
    return tuple(out)


def _orphans(
    desired: st.DesiredState,
    observed: obs.ObservedState,
    live: Sequence[JsonObject],
    target: Sequence[JsonObject],
    key_of: Callable[[JsonObject], tuple[str, str, str, str]] = safety.object_key,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Owned live claims with no target: in use ones are kept unless allowInUse says not."""
    wanted = {key_of(o) for o in target}
    users = {(c.namespace, c.name): c.reserved_for for c in observed.claims}
    allow = desired.policy.spec.preemption.allow_in_use
    kept: list[dict[str, Any]] = []
    warnings: list[str] = []
    for obj in live:
        if obj.get("kind") != "ResourceClaim" or key_of(obj) in wanted:
            continue
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        used_by = users.get(key, ())
        if not used_by:
            continue
        subject = f"ResourceClaim {key[0]}/{key[1]}"
        if allow:
            warnings.append(
                f"DELETING IN-USE {subject} (used by {', '.join(used_by)}): no CUClaim "
                "renders it any more (policy.preemption.allowInUse is true)"
            )
            continue
        warnings.append(
            f"{subject} is no longer rendered but is in use by {', '.join(used_by)}; it is "
            "kept until no pod uses it (policy.preemption.allowInUse is false)"
        )
        kept.append(
            {
                "apiVersion": obj.get("apiVersion", "resource.k8s.io/v1"),
                "kind": "ResourceClaim",
                "metadata": {
                    k: copy.deepcopy(v)
                    for k, v in meta.items()
                    if k in ("name", "namespace", "labels", "annotations")
                },
                "spec": copy.deepcopy(dict(obj.get("spec") or {})),
            }
        )
    return kept, warnings


def _uuid_attribute_by_vendor(
    pools: Iterable[capacity.PoolCapacity], memo: claims.Memo | None = None
) -> dict[str, str]:
    """Each vendor's uuid attribute: its device with the lowest id in the first pool (by
    name) that has one. Remembered per pool object (an unchanged pool is the same object)."""
    out: dict[str, str] = {}
    for pool in pools:
        known = memo.uuid_attributes.get(pool.name) if memo is not None else None
        if known is None or known[0] is not pool:
            first: dict[str, obs.ObservedDevice] = {}
            for m in pool.members:
                d = m.device
                if d.vendor not in first or d.id < first[d.vendor].id:
                    first[d.vendor] = d
            own = {v: d.uuid_attribute for v, d in sorted(first.items())}
            known = (pool, own)
            if memo is not None:
                memo.uuid_attributes[pool.name] = known
        for vendor, attribute in known[1].items():
            out.setdefault(vendor, attribute)
    return out


def _claim_objects(
    desired: st.DesiredState,
    observed: obs.ObservedState,
    decisions: Sequence[admission.Decision],
    pools: Mapping[str, capacity.PoolCapacity],
    live: Sequence[JsonObject],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    memo: claims.Memo | None = None,
    key_of: Callable[[JsonObject], tuple[str, str, str, str]] = safety.object_key,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Claims for admitted decisions; immutable-spec changes become replaces (or are refused)."""
    settings = desired.settings.spec
    allow_in_use = desired.policy.spec.preemption.allow_in_use
    by_name = {c.metadata.name: c for c in desired.claims}
    uuid_attrs = _uuid_attribute_by_vendor((pools[n] for n in sorted(pools)), memo)
    live_by_key: dict[tuple[str, str, str, str], JsonObject] = {}
    users: dict[tuple[str, str], tuple[str, ...]] = {}
    if any(d.in_use for d in decisions):
        live_by_key = {key_of(o): o for o in live}
        users = {(c.namespace, c.name): c.reserved_for for c in observed.claims}
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    specs: dict[tuple[object, ...], dict[str, Any]] = {}
    for decision in decisions:
        if decision.status is not admission.Status.ADMITTED:
            if decision.status is admission.Status.PREEMPTED and decision.in_use:
                used_by = ", ".join(users.get((decision.namespace, decision.claim), ()))
                warnings.append(
                    f"PREEMPTING IN-USE ResourceClaim {decision.namespace}/{decision.claim} "
                    f"(used by {used_by}; reason {decision.reason}): its pods lose their "
                    "devices (policy.preemption.allowInUse is true)"
                )
            continue
        claim = by_name[decision.claim]
        obj = claims.build(
            claim,
            decision,
            pools[decision.pool],
            settings.driver_name,
            settings.fence,
            uuid_attrs,
            labels,
            annotations,
            memo,
            specs,
        )
        current = live_by_key.get(key_of(obj)) if decision.in_use else None
        if current is not None and obj["kind"] == "ResourceClaim":
            live_spec = managed.owned_view(current, obj).get("spec")
            if live_spec != obj["spec"]:
                used_by = ", ".join(users.get((decision.namespace, decision.claim), ()))
                subject = f"ResourceClaim {decision.namespace}/{decision.claim}"
                if allow_in_use:
                    warnings.append(
                        f"REPLACING IN-USE {subject} (used by {used_by}): the spec is "
                        "immutable, so it is deleted and re-created and its pods lose their "
                        "devices (policy.preemption.allowInUse is true)"
                    )
                else:
                    warnings.append(
                        f"{subject} changed in Git but is in use by {used_by}; it is kept "
                        "unchanged until no pod uses it (policy.preemption.allowInUse is false)"
                    )
                    obj = {**obj, "spec": copy.deepcopy(dict(current.get("spec") or {}))}
        out.append(obj)
    return out, warnings


def _tenant_rows(
    desired: st.DesiredState,
    before: Mapping[tuple[str, str], int],
    after: Mapping[tuple[str, str], int],
    quotas_before: Mapping[tuple[str, str], report.QuotaFigures],
) -> tuple[report.TenantReport, ...]:
    """One row per (tenant, pool) with a quota or claimed CU on either side."""
    pools_of: dict[str, set[str]] = defaultdict(set)
    for tenant in desired.tenants:
        for q in tenant.spec.quotas:
            pools_of[tenant.metadata.name].add(q.pool)
    for tenant_name, pool in (*before, *after, *quotas_before):
        pools_of[tenant_name].add(pool)
    tenants = {t.metadata.name: t for t in desired.tenants}
    rows = []
    for tenant_name in sorted(pools_of):
        known = tenants.get(tenant_name)
        for pool in sorted(pools_of[tenant_name]):
            quota = next((q for q in known.spec.quotas if q.pool == pool), None) if known else None
            rows.append(
                report.TenantReport(
                    tenant=tenant_name,
                    pool=pool,
                    priority=known.spec.priority if known else 0,
                    quota_before=quotas_before.get((tenant_name, pool)),
                    quota_after=(
                        report.QuotaFigures(
                            units.cu_to_milli(quota.guaranteed),
                            None if quota.limit is None else units.cu_to_milli(quota.limit),
                        )
                        if quota is not None
                        else None
                    ),
                    before_milli=before.get((tenant_name, pool), 0),
                    after_milli=after.get((tenant_name, pool), 0),
                )
            )
    return tuple(sorted(rows, key=lambda r: (-r.priority, r.tenant, r.pool)))


def _live_order(obj: JsonObject) -> tuple[tuple[int, str, str], str]:
    return (sort_key(obj), str(obj.get("apiVersion", "")))


@dataclass(frozen=True, slots=True)
class Facts:
    """What the stages that walk every object compute about each one: computed each time
    (:data:`PLAIN`), or remembered per object by a memo (:meth:`remembered`)."""

    keys: Callable[[JsonObject], tuple[str, str, str, str]] = safety.object_key
    owned: Callable[[JsonObject], bool] = ownership.is_owned
    order: Callable[[JsonObject], tuple[int, str, str]] = sort_key
    live_order: Callable[[JsonObject], tuple[tuple[int, str, str], str]] = _live_order
    counted: Callable[[JsonObject], bool] = safety.counts_as_owned
    published: Callable[[JsonObject], report.SliceCU] = report.slice_cu
    requested: Callable[[JsonObject], quota.Requested] = quota.requested
    charged: Callable[[JsonObject], report.Charge] = report.charge
    records: facts.Records | None = None
    """Where :meth:`remembered` facts are kept (None: computed each time)."""

    @classmethod
    def remembered(cls) -> Facts:
        """Each fact remembered per object, one record per object
        (:class:`reconciler.plan.facts.Records`)."""
        names = [f.name for f in fields(cls) if f.name != "records"]
        plain = cls()
        records = facts.Records([getattr(plain, n) for n in names])
        remembered: dict[str, Any] = {n: records.fact(i) for i, n in enumerate(names)}
        return cls(**remembered, records=records)

    def turn(self) -> None:
        """One plan done: remembered facts forget the objects it did not meet."""
        if self.records is not None:
            self.records.turn()


PLAIN = Facts()


@dataclass(slots=True)
class Memo:
    """What a plan computed last time, kept by a long-lived caller (the controller) so the
    next plan recomputes only what its inputs changed. It saves work and never changes a
    result: a plan with a memo equals the plan without one (tests/plan/test_incremental.py).
    It holds each device's pool and CU (:class:`reconciler.plan.capacity.Memo`), the
    ResourceSlices node by node (:class:`reconciler.plan.slices.Memo`), each
    pool's admission (:class:`reconciler.plan.admission.Memo`), the claim bodies
    (:class:`reconciler.plan.claims.Memo`) and every object of the last plan, so an
    unchanged object is the same Python object in both.
    """

    capacity: capacity.Memo = field(default_factory=capacity.Memo)
    fence: fence.Memo = field(default_factory=fence.Memo)
    slices: slices.Memo = field(default_factory=slices.Memo)
    admission: admission.Memo = field(default_factory=admission.Memo)
    claims: claims.Memo = field(default_factory=claims.Memo)
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    """The last plan's objects by key: an object planned again with the same content is
    replaced by the one planned before (:func:`_intern`), so unchanged objects keep their
    identity from plan to plan and later stages (the ChangeSet) can recognise them."""
    kept: int = 0
    """Objects of the last plan carried over from the one before."""
    facts: Facts = field(default_factory=lambda: Facts.remembered())
    """Per object (planned or live), what the stages that walk every object compute."""

    def planned(self, obj: JsonObject) -> dict[str, Any] | None:
        """The last plan's object with ``obj``'s key (None: none): the twin a watch store
        shares an equal spec with (:attr:`reconciler.observe.informer.Store.twin`)."""
        return self.objects.get(safety.object_key(obj))


def _intern(objects: list[dict[str, Any]], memo: Memo) -> None:
    """Replace each object equal to the last plan's object of that key by that object."""
    previous = memo.objects
    fresh: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    kept = 0
    for i, obj in enumerate(objects):
        key = memo.facts.keys(obj)
        before = previous.get(key)
        if before is not None and (before is obj or before == obj):
            objects[i] = obj = before
            kept += 1
        fresh[key] = obj
    memo.objects = fresh
    memo.kept = kept


def plan(
    desired: st.DesiredState,
    observed: obs.ObservedState,
    live: Iterable[JsonObject] | None = None,
    *,
    now: dt.datetime | None = None,
    memo: Memo | None = None,
) -> Plan:
    """Compute the target objects and the report. Pure and deterministic.

    ``live`` defaults to the owned objects of ``observed``; ``plan --base`` passes the base
    revision's target instead, so the generation rule and the diff compare revisions.
    ``now`` is the instant planned for: it picks the guarantee windows in force
    (:mod:`reconciler.plan.schedule`); None gives every scheduled quota its base guarantee.
    ``memo`` (:class:`Memo`) carries work over from the caller's previous plan; the objects
    of a plan made with one may be shared with the next, so they must not be modified.
    """
    with _gc.paused():
        planned = _plan(desired, observed, live, now, memo)
    if memo is not None:
        memo.facts.turn()
    return planned


def _plan(
    desired: st.DesiredState,
    observed: obs.ObservedState,
    live: Iterable[JsonObject] | None,
    now: dt.datetime | None = None,
    memo: Memo | None = None,
) -> Plan:
    desired, windows = schedule.in_force(desired, now)
    settings = desired.settings.spec
    driver = settings.driver_name
    # Ours: what the inventory lists (a live cluster), else what wears our label.
    known = memo.facts if memo is not None else PLAIN
    mine = (
        (o for o in observed.owned if observed.ours(o))
        if live is None
        else (o for o in live if known.owned(o))
    )
    live_objs = tuple(sorted(mine, key=known.live_order))
    pools, findings = capacity.compute(
        desired, observed, memo.capacity if memo is not None else None
    )
    created, genuine = _ours(desired, observed, live_objs)
    running, unaccounted, stamp_warnings = _stamped(desired, observed, genuine)
    cu_names = slices.names_by_node(pools.values(), memo.slices if memo is not None else None)
    bypass, bypass_holders = audit.audit(
        observed.claims,
        settings.fence.taint_key,
        {m.device.id for p in pools.values() for m in p.members},
        created | genuine,
        cu_names,
        driver,
        {classes.pool_class_name(p) for p in pools},
    )
    external = (
        *_external_claims(desired, observed, created | genuine),
        *unaccounted,
        *bypass_holders,
    )
    admitted_run = admission.run(
        desired.claims,
        desired.tenants,
        pools,
        desired.policy,
        settings.managed_namespaces,
        _live_claims(observed, live_objs),
        cu_names,
        external,
        running,
        memo=memo.admission if memo is not None else None,
    )
    decisions = admitted_run.decisions
    accounts = {a.pool: a for a in admitted_run.accounts}
    labels = dict(ownership.MANAGED_BY)
    annotations = {
        ownership.REVISION_ANNOTATION: str(desired.revision),
        ownership.SOURCE_ANNOTATION: desired.settings.metadata.name,
    }
    pool_names = sorted(pools)
    objects: list[dict[str, Any]] = []
    objects += fence.admission_policy(settings, labels, annotations)
    managed = [m.device for p in pools.values() for m in p.members]
    objects += fence.taint_rules(
        managed,
        observed.devices,
        settings.fence,
        labels,
        annotations,
        memo.fence if memo is not None else None,
    )
    whole_vendors = {m.device.vendor for p in pools.values() if not p.fractional for m in p.members}
    adapters: dict[str, docs.VendorAdapter] = {}
    for adapter in sorted(desired.adapters, key=lambda a: a.metadata.name):
        if adapter.spec.vendor in whole_vendors:
            adapters.setdefault(adapter.spec.vendor, adapter)
    objects += classes.build(
        pool_names, adapters.values(), driver, labels, annotations, desired.tenants
    )
    objects += slices.build(
        pools.values(),
        driver,
        labels,
        annotations,
        live_objs,
        skip_node_operations=observed.skip_node_operations,
        memo=memo.slices if memo is not None else None,
    )
    claim_memo = memo.claims if memo is not None else None
    if claim_memo is not None:
        claim_memo.built = 0
    claim_objects, warnings = _claim_objects(
        desired, observed, decisions, pools, live_objs, labels, annotations, claim_memo, known.keys
    )
    if claim_memo is not None:
        claim_memo.turn()
    objects += claim_objects
    # Only a claim can be a live claim's target (the key holds the kind).
    kept, orphan_warnings = _orphans(desired, observed, live_objs, claim_objects, known.keys)
    objects += kept
    objects += quota.build(
        objects,
        settings.managed_namespaces,
        [classes.pool_class_name(p) for p in pool_names],
        labels,
        annotations,
        known.requested,
    )
    warnings += orphan_warnings
    warnings += stamp_warnings
    objects.sort(key=known.order)
    if memo is not None:
        _intern(objects, memo)

    before_cu = report.published_cu(live_objs, driver, known.published)
    after_cu = report.published_cu(objects, driver, known.published)
    pool_reports = tuple(
        report.PoolReport(
            name=p.name,
            sharing=str(p.sharing),
            lines=p.lines,
            basis=p.basis,
            cu_per_device=settings.reference.cu_per_device,
            devices=len(p.members),
            total_milli=p.total_milli,
            admittable_milli=p.admittable_milli,
            headroom_percent=p.headroom_percent,
            admitted_milli=accounts[p.name].charged_milli,
            before_milli=before_cu.get(p.name, 0),
            after_milli=after_cu.get(p.name, 0),
            unaccounted_milli=accounts[p.name].unaccounted_milli,
            free_milli=accounts[p.name].free_milli,
            guaranteed_milli=sum(
                units.cu_to_milli(q.guaranteed)
                for t in desired.tenants
                for q in t.spec.quotas
                if q.pool == p.name
            ),
        )
        for p in (pools[n] for n in pool_names)
    )
    refusal = safety.check(
        live_objs,
        objects,
        desired.policy,
        known.keys,
        known.counted,
        remembered=known.records is not None,
    )
    all_findings = tuple(sorted({*observed.findings, *findings, *bypass}))
    # One accounting on both sides: what admission charged (the charged annotation our
    # claims and templates carry), live or the base revision's target.
    claimed_before = report.claimed_cu(live_objs, per_object=known.charged)
    claimed_after: dict[tuple[str, str], int] = {
        (tenant, a.pool): milli for a in accounts.values() for tenant, milli in a.tenants
    }
    the_report = report.Report(
        revision=str(desired.revision),
        pools=pool_reports,
        tenants=_tenant_rows(
            desired,
            claimed_before,
            claimed_after,
            report.recorded_quotas(live_objs),
        ),
        decisions=decisions,
        findings=all_findings,
        warnings=tuple(warnings),
        shortfalls=admitted_run.shortfalls,
        windows=windows,
    )
    return Plan(
        revision=str(desired.revision),
        objects=tuple(objects),
        live=live_objs,
        report=the_report,
        refusal=refusal,
    )

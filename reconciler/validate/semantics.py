"""Semantic validation: documents that are each valid but do not fit together.

Pure: typed documents (with the loaded source for positions) in, diagnostics out. Two tiers:

- *static* checks need only the documents: references, duplicates, namespaces, claim
  constraints that contradict themselves or their pool, factors for unknown models, pools
  whose selectors may overlap (a warning: it depends on the devices);
- *device* checks run when observed devices are available (the repository's committed
  snapshot, or a given :class:`~reconciler.model.observed.ObservedState`): pools that
  actually overlap on a device, guarantees above what a pool can hold, claims no device can
  satisfy. Pool membership is :func:`reconciler.model.selection.selects`, the planner's rule.

Each message says what to change. Positions point at the field at fault, not the document.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from reconciler.model import codes, factors, identities, quantity, selection, timewindows, units
from reconciler.model import diagnostics as diag
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.validate import syntax

D = TypeVar("D", bound=docs.Document)
_MILLI = 1000


@dataclass(frozen=True, slots=True)
class Entry(Generic[D]):
    """A validated document and where it was written."""

    document: D
    source: syntax.LoadedDocument

    @property
    def name(self) -> str:
        return self.document.metadata.name

    def at(
        self,
        path: syntax.Path,
        code: codes.Code,
        message: str,
        severity: diag.Severity = diag.Severity.ERROR,
        *,
        key: bool = False,
    ) -> diag.Diagnostic:
        pos = self.source.locate(path, key=key)
        return diag.Diagnostic(self.source.file, pos.line, pos.column, code, message, severity)

    @property
    def where(self) -> str:
        return f"{self.source.file}:{self.source.start.line}"


_NAME = ("metadata", "name")
_WARN = diag.Severity.WARNING


@dataclass(frozen=True, slots=True)
class Documents:
    """The valid documents of one revision, by kind, in file order."""

    settings: Sequence[Entry[docs.ClusterSettings]]
    policies: Sequence[Entry[docs.Policy]]
    adapters: Sequence[Entry[docs.VendorAdapter]]
    pools: Sequence[Entry[docs.CUPool]]
    tenants: Sequence[Entry[docs.Tenant]]
    claims: Sequence[Entry[docs.CUClaim]]
    factor_tables: Sequence[Entry[docs.FactorTable]]
    device_costs: Sequence[Entry[docs.DeviceCosts]] = ()

    def all(self) -> Iterable[Entry[docs.Document]]:
        for group in (
            self.settings,
            self.policies,
            self.adapters,
            self.pools,
            self.tenants,
            self.claims,
            self.factor_tables,
            self.device_costs,
        ):
            yield from group  # type: ignore[misc]


def check(found: Documents, observed: obs.ObservedState | None) -> list[diag.Diagnostic]:
    out: list[diag.Diagnostic] = []
    out += _duplicates(found)
    out += _singletons(found)
    out += _shared_engine_identities(found.settings)
    settings = found.settings[0].document if found.settings else None
    pools = _first_by_name(found.pools)
    tenants = _first_by_name(found.tenants)
    adapters = _first_by_name(found.adapters)
    vendors = {a.document.spec.vendor for a in adapters.values()}
    models = _known_models(adapters.values(), observed)
    out += _adapters(found.adapters)
    out += _pools(found.pools, vendors, models)
    out += _tenants(found.tenants, pools, settings)
    out += _claims(found.claims, tenants, pools, vendors, models, _workload_classes(found))
    out += _factors(found.factor_tables, settings, models)
    if settings is not None and models is not None:
        reference = settings.spec.reference.device_model
        if reference not in models:
            out.append(
                found.settings[0].at(
                    ("spec", "reference", "deviceModel"),
                    codes.Code.UNKNOWN_MODEL,
                    f"reference model {reference!r} is not produced by any VendorAdapter "
                    f"(known: {_list(models)}); use a canonical model name",
                    _WARN,
                )
            )
    if settings is not None:
        out += _never_fits(found, settings)
    out += _rest_pools(found.pools)
    if observed is None:
        out += _static_overlaps(found.pools)
    elif settings is not None:
        out += _device_checks(found, settings, observed)
    return out


# ------------------------------------------------------------------------------ helpers


def _first_by_name(entries: Sequence[Entry[D]]) -> dict[str, Entry[D]]:
    out: dict[str, Entry[D]] = {}
    for entry in entries:
        out.setdefault(entry.name, entry)
    return out


def _list(names: Iterable[str]) -> str:
    items = sorted(names)
    return ", ".join(items[:12]) + (", ..." if len(items) > 12 else "") if items else "none"


def _known_models(
    adapters: Iterable[Entry[docs.VendorAdapter]], observed: obs.ObservedState | None
) -> set[str] | None:
    """Canonical model names that can ever appear; None when unknowable statically.

    An adapter with a value map produces only the map's values (unmapped devices are
    reported, not guessed); one without a map passes vendor values through, so then only a
    snapshot can tell.
    """
    models: set[str] = set()
    for adapter in adapters:
        values = adapter.document.spec.mapping.model.values
        if not values:
            if observed is None:
                return None
            models |= {
                d.model for d in observed.devices if d.vendor == adapter.document.spec.vendor
            }
        models |= set(values.values())
    return models


def _workload_classes(found: Documents) -> set[str]:
    classes: set[str] = set()
    for s in found.settings:
        classes.add(s.document.spec.reference.workload_class)
    for t in found.factor_tables:
        classes |= {f.workload_class for f in t.document.spec.factors if f.workload_class}
    for p in found.pools:
        classes |= set(p.document.spec.workload_mix)
    for pol in found.policies:
        classes |= set(pol.document.spec.factors.workload_mix)
        classes |= set(pol.document.spec.workload_classes)
    return classes


# ---------------------------------------------------------------------------- structure


def _duplicates(found: Documents) -> list[diag.Diagnostic]:
    """Every document whose kind and name another document shares, each naming the others.

    All copies are reported, not "all but the first": which copy is first depends only on
    file names, and the pull request that added the second copy should see the error.
    """
    groups: dict[tuple[str, str], list[Entry[docs.Document]]] = defaultdict(list)
    for entry in found.all():
        groups[(entry.document.kind, entry.name)].append(entry)
    out = []
    for (kind, name), entries in groups.items():
        if len(entries) < 2:
            continue
        for entry in entries:
            others = ", ".join(e.where for e in entries if e is not entry)
            out.append(
                entry.at(
                    _NAME,
                    codes.Code.DUPLICATE_NAME,
                    f"{kind} {name!r} is also defined at {others}; rename or remove one",
                )
            )
    return out


def _duplicated(
    entries: Sequence[Entry[Any]], kind: str, code: codes.Code, keep: str
) -> list[diag.Diagnostic]:
    """A kind allowed once per repository, written more than once: one error at each."""
    if len(entries) < 2:
        return []
    return [
        entry.at(
            ("kind",),
            code,
            f"{kind} is also defined at "
            f"{', '.join(e.where for e in entries if e is not entry)}; keep {keep} one",
        )
        for entry in entries
    ]


def _singletons(found: Documents) -> list[diag.Diagnostic]:
    out = []
    if not found.settings:
        out.append(
            diag.Diagnostic(
                ".",
                1,
                1,
                codes.Code.NO_SETTINGS,
                "no ClusterSettings document found; add one (cluster.yaml) with the driver "
                "name, the reference unit and the managed namespaces",
            )
        )
    out += _duplicated(found.settings, "ClusterSettings", codes.Code.MULTIPLE_SETTINGS, "exactly")
    out += _duplicated(found.policies, "Policy", codes.Code.MULTIPLE_POLICIES, "at most")
    out += _duplicated(found.device_costs, "DeviceCosts", codes.Code.MULTIPLE_POLICIES, "at most")
    return out


def _shared_engine_identities(
    settings: Sequence[Entry[docs.ClusterSettings]],
) -> list[diag.Diagnostic]:
    """An engine's own controller identity admitted: every Application inherits it."""
    out = []
    for entry in settings:
        for i, name in enumerate(entry.document.spec.admitted_identities):
            if identities.is_engine_controller(name):
                out.append(
                    entry.at(
                        ("spec", "admittedIdentities", i),
                        codes.Code.SHARED_ENGINE_IDENTITY,
                        f"{name!r} is a GitOps engine's own controller: every Application "
                        "or Kustomization it syncs would pass the fence; sync the CU objects as "
                        "a dedicated ServiceAccount (Argo CD sync impersonation, Flux "
                        "serviceAccountName) and admit that one (docs/gitops.md)",
                        _WARN,
                    )
                )
    return out


def _adapters(adapters: Sequence[Entry[docs.VendorAdapter]]) -> list[diag.Diagnostic]:
    out = []
    by_driver: dict[str, Entry[docs.VendorAdapter]] = {}
    for entry in adapters:
        driver = entry.document.spec.driver
        if driver in by_driver:
            out.append(
                entry.at(
                    ("spec", "driver"),
                    codes.Code.DUPLICATE_ADAPTER,
                    f"driver {driver!r} already has VendorAdapter "
                    f"{by_driver[driver].name!r} ({by_driver[driver].where}); one adapter "
                    "per driver",
                )
            )
        else:
            by_driver[driver] = entry
    return out


def _pools(
    pools: Sequence[Entry[docs.CUPool]], vendors: set[str], models: set[str] | None
) -> list[diag.Diagnostic]:
    out = []
    for entry in pools:
        selector = entry.document.spec.selector
        for i, vendor in enumerate(selector.vendors):
            if vendor not in vendors:
                out.append(
                    entry.at(
                        ("spec", "selector", "vendors", i),
                        codes.Code.UNKNOWN_VENDOR,
                        f"vendor {vendor!r} has no VendorAdapter (known: {_list(vendors)}); "
                        "add an adapter or fix the name",
                    )
                )
        if models is not None:
            for i, model in enumerate(selector.models):
                if model not in models:
                    out.append(
                        entry.at(
                            ("spec", "selector", "models", i),
                            codes.Code.UNKNOWN_MODEL,
                            f"model {model!r} is not produced by any VendorAdapter "
                            f"(known: {_list(models)}); the pool can never select it",
                        )
                    )
        for key in selector.attributes:
            if key not in selection.COMMON_FIELDS:
                out.append(
                    entry.at(
                        ("spec", "selector", "attributes", key),
                        codes.Code.IMPOSSIBLE_CONSTRAINT,
                        f"attribute {key!r} is not a field of the common device description "
                        f"({_list(selection.COMMON_FIELDS)}); no device can match",
                        key=True,
                    )
                )
    return out


def _tenants(
    tenants: Sequence[Entry[docs.Tenant]],
    pools: Mapping[str, Entry[docs.CUPool]],
    settings: docs.ClusterSettings | None,
) -> list[diag.Diagnostic]:
    out = []
    managed = set(settings.spec.managed_namespaces) if settings is not None else None
    owners: dict[str, list[Entry[docs.Tenant]]] = defaultdict(list)
    for entry in tenants:
        for ns in dict.fromkeys(entry.document.spec.namespaces):
            owners[ns].append(entry)
    for entry in tenants:
        spec = entry.document.spec
        for i, ns in enumerate(spec.namespaces):
            path = ("spec", "namespaces", i)
            if managed is not None and ns not in managed:
                out.append(
                    entry.at(
                        path,
                        codes.Code.NAMESPACE_NOT_MANAGED,
                        f"namespace {ns!r} is not in ClusterSettings.spec.managedNamespaces; "
                        "add it there or remove it here",
                    )
                )
            others = [o.name for o in owners[ns] if o is not entry]
            if others:
                out.append(
                    entry.at(
                        path,
                        codes.Code.NAMESPACE_SHARED,
                        f"namespace {ns!r} also belongs to tenant(s) {_list(others)}; "
                        "a namespace has exactly one tenant",
                    )
                )
        seen: set[str] = set()
        for i, quota in enumerate(spec.quotas):
            if quota.pool not in pools:
                out.append(
                    entry.at(
                        ("spec", "quotas", i, "pool"),
                        codes.Code.UNKNOWN_POOL,
                        f"unknown pool {quota.pool!r}{_suggest(quota.pool, pools)}; "
                        "define a CUPool with this name or fix the reference",
                    )
                )
            if quota.pool in seen:
                out.append(
                    entry.at(
                        ("spec", "quotas", i, "pool"),
                        codes.Code.DUPLICATE_QUOTA,
                        f"a second quota for pool {quota.pool!r}; merge them into one",
                    )
                )
            seen.add(quota.pool)
    return out


def _suggest(name: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _claims(
    claims: Sequence[Entry[docs.CUClaim]],
    tenants: Mapping[str, Entry[docs.Tenant]],
    pools: Mapping[str, Entry[docs.CUPool]],
    vendors: set[str],
    models: set[str] | None,
    classes: set[str],
) -> list[diag.Diagnostic]:
    out = []
    for entry in claims:
        spec = entry.document.spec
        tenant = tenants.get(spec.tenant)
        pool = pools.get(spec.pool)
        if tenant is None:
            out.append(
                entry.at(
                    ("spec", "tenant"),
                    codes.Code.UNKNOWN_TENANT,
                    f"unknown tenant {spec.tenant!r}{_suggest(spec.tenant, tenants)}; "
                    "define a Tenant with this name or fix the reference",
                )
            )
        if pool is None:
            out.append(
                entry.at(
                    ("spec", "pool"),
                    codes.Code.UNKNOWN_POOL,
                    f"unknown pool {spec.pool!r}{_suggest(spec.pool, pools)}; "
                    "define a CUPool with this name or fix the reference",
                )
            )
        if tenant is not None:
            tspec = tenant.document.spec
            if spec.namespace is not None and spec.namespace not in tspec.namespaces:
                out.append(
                    entry.at(
                        ("spec", "namespace"),
                        codes.Code.NAMESPACE_NOT_TENANTS,
                        f"namespace {spec.namespace!r} is not one of tenant {spec.tenant!r}'s "
                        f"namespaces ({_list(tspec.namespaces)})",
                    )
                )
            quota = next((q for q in tspec.quotas if q.pool == spec.pool), None)
            # A template is charged once per Pod that uses it (replicas), a claim once.
            total = units.cu_to_milli(spec.cu) * spec.count * spec.replicas
            if pool is not None and quota is None:
                out.append(
                    entry.at(
                        ("spec", "pool"),
                        codes.Code.NO_QUOTA_IN_POOL,
                        f"tenant {spec.tenant!r} has no quota in pool {spec.pool!r}; add one "
                        "to the tenant (guaranteed: 0 with mayBorrow: true to only borrow)",
                    )
                )
            elif quota is not None:
                ceiling = (
                    quota.limit
                    if quota.limit is not None
                    else (None if tspec.may_borrow else quota.guaranteed)
                )
                bound = "limit" if quota.limit is not None else "guarantee"
                replicas = f"{spec.replicas} replicas × " if spec.replicas > 1 else ""
                if ceiling is not None and total > units.cu_to_milli(ceiling):
                    out.append(
                        entry.at(
                            ("spec", "cu"),
                            codes.Code.CLAIM_OVER_LIMIT,
                            f"{replicas}{spec.count} × {spec.cu:g} CU = "
                            f"{units.display_cu(total)} CU exceeds tenant {spec.tenant!r}'s "
                            f"{bound} of {ceiling:g} CU in pool {spec.pool!r}; lower "
                            f"{'replicas, ' if spec.replicas > 1 else ''}cu or count, or raise "
                            "the quota",
                        )
                    )
        if pool is not None:
            out += _claim_against_pool(entry, pool, vendors, models)
        out += _constraint_contradictions(entry, vendors, models)
        if spec.workload_class is not None and classes and spec.workload_class not in classes:
            out.append(
                entry.at(
                    ("spec", "workloadClass"),
                    codes.Code.UNKNOWN_WORKLOAD_CLASS,
                    f"workload class {spec.workload_class!r} appears in no factor table or "
                    f"workload mix (known: {_list(classes)}); the reference class is used",
                    _WARN,
                )
            )
    return out


def _claim_against_pool(
    entry: Entry[docs.CUClaim],
    pool: Entry[docs.CUPool],
    vendors: set[str],
    models: set[str] | None,
) -> list[diag.Diagnostic]:
    out = []
    spec = entry.document.spec
    pspec = pool.document.spec
    sharing = pspec.sharing
    if sharing.mode is docs.SharingMode.FRACTIONAL and sharing.min_step:
        step = units.cu_to_milli(sharing.min_step)
        if units.cu_to_milli(spec.cu) % step:
            out.append(
                entry.at(
                    ("spec", "cu"),
                    codes.Code.STEP_MISMATCH,
                    f"cu {spec.cu:g} is not a multiple of pool {pool.name!r}'s minStep "
                    f"{sharing.min_step:g}; round it to a multiple",
                )
            )
    for field, singular in (("vendors", "vendor"), ("models", "model")):
        offered: list[str] = getattr(pspec.selector, field)
        wanted: docs.NameFilter = getattr(spec.constraints, field)
        if not offered:
            continue
        if wanted.allow and not set(offered) & set(wanted.allow):
            out.append(
                entry.at(
                    ("spec", "constraints", field, "allow"),
                    codes.Code.IMPOSSIBLE_CONSTRAINT,
                    f"none of the allowed {field} ({_list(wanted.allow)}) is in "
                    f"pool {pool.name!r} ({_list(offered)}); no device can match",
                )
            )
        if set(offered) <= set(wanted.deny):
            out.append(
                entry.at(
                    ("spec", "constraints", field, "deny"),
                    codes.Code.IMPOSSIBLE_CONSTRAINT,
                    f"the deny list excludes every {singular} of pool {pool.name!r} "
                    f"({_list(offered)}); no device can match",
                )
            )
    return out


def _constraint_contradictions(
    entry: Entry[docs.CUClaim], vendors: set[str], models: set[str] | None
) -> list[diag.Diagnostic]:
    out = []
    c = entry.document.spec.constraints
    for field, names, known in (("vendors", c.vendors, vendors), ("models", c.models, models)):
        both = set(names.allow) & set(names.deny)
        if both:
            out.append(
                entry.at(
                    ("spec", "constraints", field, "deny"),
                    codes.Code.IMPOSSIBLE_CONSTRAINT,
                    f"{_list(both)} both allowed and denied; remove it from one list",
                )
            )
        if known is None:
            continue
        for list_name, values in (("allow", names.allow), ("deny", names.deny)):
            for i, value in enumerate(values):
                if value not in known:
                    lookalike = _lookalike(value, known)
                    severity = (
                        diag.Severity.ERROR
                        if list_name == "allow" or lookalike is not None
                        else _WARN
                    )
                    hint = (
                        f"; it looks like {lookalike!r} but is not (it contains "
                        f"{_foreign(value) or 'other letter cases or widths'})"
                        if lookalike
                        else f"; it contains {_foreign(value)}, which no known name has"
                        if lookalike is not None
                        else ""
                    )
                    out.append(
                        entry.at(
                            ("spec", "constraints", field, list_name, i),
                            codes.Code.UNKNOWN_VENDOR
                            if field == "vendors"
                            else codes.Code.UNKNOWN_MODEL,
                            f"{field[:-1]} {value!r} is unknown (known: {_list(known)})"
                            f"{hint}; fix the name",
                            severity,
                        )
                    )
    return out


def _lookalike(value: str, known: Iterable[str]) -> str | None:
    """The known name an unknown one imitates: non-ASCII characters (a Cyrillic ``а``, a
    full-width letter, a zero-width space), or the same name after NFKC and case folding. A
    deny entry like that silently matches nothing, so it is an error, not a warning.

    For a value that is not plain ASCII: the known name it matches letter for letter where it
    is ASCII (``hygоn`` with a Cyrillic ``о`` → ``hygon``), else the closest known name, else
    "" (no known name fits; the message then names the foreign characters)."""
    import difflib
    import unicodedata

    def skeleton(text: str) -> str:
        folded = unicodedata.normalize("NFKC", text).casefold()
        return "".join(ch for ch in folded if ch.isascii() and ch.isprintable())

    names = sorted(known)
    for name in names:
        if skeleton(value) == skeleton(name):
            return name
    if value.isascii() and value.isprintable():
        return None
    visible = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cf", "Cc"))
    for name in names:
        if len(name) == len(visible) and all(
            a == b or not a.isascii() for a, b in zip(visible, name, strict=True)
        ):
            return name
    close = difflib.get_close_matches(skeleton(value), names, n=1, cutoff=0.6)
    return close[0] if close else ""


def _foreign(value: str) -> str:
    """The characters of ``value`` that are not printable ASCII, named (U+043E CYRILLIC ...)."""
    import unicodedata

    return ", ".join(
        f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}"
        for ch in dict.fromkeys(ch for ch in value if not ch.isascii() or not ch.isprintable())
    )


def _factors(
    tables: Sequence[Entry[docs.FactorTable]],
    settings: docs.ClusterSettings | None,
    models: set[str] | None,
) -> list[diag.Diagnostic]:
    out = []
    reference = settings.spec.reference if settings is not None else None
    for entry in tables:
        spec = entry.document.spec
        if reference is not None and spec.reference_model != reference.device_model:
            out.append(
                entry.at(
                    ("spec", "referenceModel"),
                    codes.Code.REFERENCE_MISMATCH,
                    f"referenceModel {spec.reference_model!r} differs from ClusterSettings' "
                    f"reference {reference.device_model!r}; factors must be relative to it",
                )
            )
        seen: dict[tuple[str, str | None, str], int] = {}
        for i, factor in enumerate(spec.factors):
            key = (factor.device_model, factor.workload_class, factor.basis.value)
            path = ("spec", "factors", i)
            if key in seen:
                out.append(
                    entry.at(
                        (*path, "deviceModel"),
                        codes.Code.DUPLICATE_FACTOR,
                        f"a second {factor.basis.value} factor for {factor.device_model}"
                        f"{'/' + factor.workload_class if factor.workload_class else ''} "
                        f"(first is factors[{seen[key]}]); keep one",
                    )
                )
            seen.setdefault(key, i)
            if models is not None and factor.device_model not in models:
                out.append(
                    entry.at(
                        (*path, "deviceModel"),
                        codes.Code.FACTOR_UNKNOWN_MODEL,
                        f"factor for unknown model {factor.device_model!r} (known: "
                        f"{_list(models)}); use the canonical name a VendorAdapter produces",
                    )
                )
            if (
                factor.device_model == spec.reference_model
                and (factor.workload_class is None or factor.basis is docs.FactorBasis.AT_SLO)
                and not math.isclose(factor.value, 1.0)
            ):
                out.append(
                    entry.at(
                        (*path, "value"),
                        codes.Code.REFERENCE_MISMATCH,
                        f"the reference model's factor must be 1.0, not {factor.value:g}; "
                        "1 CU is defined by the reference device",
                    )
                )
    return out


def _rest_pools(pools: Sequence[Entry[docs.CUPool]]) -> list[diag.Diagnostic]:
    """At most one pool may take the rest (``selector: {}``): two would split it by chance."""
    rest = [p for p in pools if selection.takes_the_rest(p.document.spec.selector)]
    return [
        extra.at(
            ("spec", "selector"),
            codes.Code.SECOND_REST_POOL,
            f"an empty selector takes every device no other pool selects, and pool "
            f"{rest[0].name!r} ({rest[0].where}) already does; give this pool vendors, "
            "models or a node selector",
            key=True,
        )
        for extra in rest[1:]
    ]


def _static_overlaps(pools: Sequence[Entry[docs.CUPool]]) -> list[diag.Diagnostic]:
    out = []
    for i, a in enumerate(pools):
        for b in pools[i + 1 :]:
            if a.name == b.name or not selection.may_overlap(
                a.document.spec.selector, b.document.spec.selector
            ):
                continue
            for here, there in ((a, b), (b, a)):
                out.append(
                    here.at(
                        ("spec", "selector"),
                        codes.Code.POOLS_MAY_OVERLAP,
                        f"selector may match the same devices as pool {there.name!r} "
                        f"({there.where}); make them disjoint (vendors, models or node "
                        "labels) or commit an observed snapshot to check",
                        _WARN,
                        key=True,
                    )
                )
    return out


# ------------------------------------------------------------------------------ devices


def _device_checks(
    found: Documents, settings: docs.ClusterSettings, observed: obs.ObservedState
) -> list[diag.Diagnostic]:
    out: list[diag.Diagnostic] = []
    labels = {n.name: n.labels for n in observed.nodes}
    pools = list(_first_by_name(found.pools).values())
    members: dict[str, list[obs.ObservedDevice]] = defaultdict(list)
    shared: dict[tuple[str, str], list[str]] = defaultdict(list)
    selectors = [p.document.spec.selector for p in pools]
    for device, indexes in selection.matching(selectors, observed.devices, labels):
        matching = [pools[i] for i in indexes]
        for p in matching:
            members[p.name].append(device)
        for i, a in enumerate(matching):
            for b in matching[i + 1 :]:
                shared[(a.name, b.name)].append(str(device.id))
    by_name = {p.name: p for p in pools}
    for (first, second), ids in sorted(shared.items()):
        for here, there in ((first, second), (second, first)):
            out.append(
                by_name[here].at(
                    ("spec", "selector"),
                    codes.Code.POOLS_OVERLAP,
                    f"{len(ids)} device(s) match both this pool and pool {there!r} (e.g. "
                    f"{ids[0]}); a device belongs to one pool: make the selectors disjoint",
                    key=True,
                )
            )
    index = factors.index_factors(
        [t.document for t in found.factor_tables], settings.spec.reference.device_model
    )
    reference = settings.spec.reference
    policy_mix = found.policies[0].document.spec.factors.workload_mix if found.policies else {}
    targets = found.policies[0].document.latency_targets() if found.policies else {}
    capacity: dict[str, int] = {}
    full: dict[str, tuple[int, str]] = {}
    """Per pool that declares its size: CU with every device present, after headroom. Only
    desired state sets it: no snapshot (committed or live) may turn a loss into an error,
    and a snapshot PR must stay previewable (plan --base)."""
    present: dict[str, int] = {}
    """Per pool: CU of every device observed in it, usable or not, before headroom (only a
    suggestion for spec.declaredCapacity in CU409, never a basis for an error)."""
    for pool in pools:
        devices = members.get(pool.name, [])
        if not devices:
            out.append(
                pool.at(
                    ("spec", "selector"),
                    codes.Code.POOL_EMPTY,
                    "the selector matches no device in the observed snapshot; check vendors, "
                    "models and node labels",
                    _WARN,
                    key=True,
                )
            )
        mix = pool.document.spec.workload_mix or policy_mix
        sold = index.with_basis(targets, pool.document.spec.factor_basis).index
        total = 0
        missing: set[str] = set()
        for device in devices:
            factor = factors.blended_factor(sold, device.model, mix, reference.workload_class)
            if factor is None:
                missing.add(device.model)
                continue
            cu = units.to_milli(factor, reference.cu_per_device)
            present[pool.name] = present.get(pool.name, 0) + cu
            if device.usable:
                total += cu
        for model in sorted(missing):
            out.append(
                pool.at(
                    _NAME,
                    codes.Code.MISSING_FACTOR,
                    f"model {model} has devices in this pool but no factor for its workload "
                    "mix; those devices publish no CU. Add a factor",
                    _WARN,
                )
            )
        headroom_percent = pool.document.spec.headroom_percent
        capacity[pool.name] = units.after_headroom(total, headroom_percent)
        declared = pool.document.spec.declared_capacity
        if declared is not None:
            milli = units.cu_to_milli(declared)
            full[pool.name] = (units.after_headroom(milli, headroom_percent), "declared")
    scheduled: dict[str, list[tuple[Entry[docs.Tenant], int, docs.Quota]]] = defaultdict(list)
    for tenant in found.tenants:
        for i, quota in enumerate(tenant.document.spec.quotas):
            scheduled[quota.pool].append((tenant, i, quota))
    allowed = bool(found.policies) and found.policies[0].document.spec.allow_overcommit
    for pool in pools:
        entries = scheduled.get(pool.name, [])
        if not entries:
            continue
        # Guarantee windows: the sums are checked at their peak over the week.
        at = _peak(q for _, _, q in entries)
        rows = [(t, i, units.cu_to_milli(q.guaranteed_at(at)), q) for t, i, q in entries]
        total = sum(r[2] for r in rows)
        tenant, i, _, biggest = max(rows, key=lambda r: (r[2], r[0].name))
        shares = _shares([(r[0].name, r[2]) for r in rows])
        when = (
            "" if at is None else f" at {at.strftime('%a %Y-%m-%d %H:%M UTC')} (guarantee windows)"
        )
        field = "schedule" if at is not None and biggest.schedule else "guaranteed"
        sized, basis = full.get(pool.name, (0, ""))
        if not basis and not allowed and total > 0:
            out.append(_undeclared_size(pool, total, shares, when, present.get(pool.name, 0)))
            continue
        if basis and total > sized and not allowed:
            percent = f"{total * 100 // sized}%" if sized else "any share"
            out.append(
                tenant.at(
                    ("spec", "quotas", i, field),
                    codes.Code.GUARANTEES_EXCEED_FULL_CAPACITY,
                    f"guarantees in pool {pool.name!r} add up to {units.display_cu(total)} CU"
                    f"{when}, {percent} of the {units.display_cu(sized)} CU it gives with every "
                    f"device present, after headroom ({basis}): overcommitted by "
                    f"{units.display_cu(total - sized)} CU ({shares}). Lower guarantees, "
                    "raise spec.declaredCapacity with the devices you add, or accept "
                    "overcommit with Policy spec.allowOvercommit: true",
                )
            )
            continue
        if total > capacity[pool.name]:
            hint = "" if basis else " (Policy spec.allowOvercommit accepts this knowingly)"
            out.append(
                tenant.at(
                    ("spec", "quotas", i, field),
                    codes.Code.GUARANTEES_EXCEED_CAPACITY,
                    f"guarantees in pool {pool.name!r} add up to {units.display_cu(total)} CU"
                    f"{when} but the observed devices give "
                    f"{units.display_cu(capacity[pool.name])} CU after headroom ({shares}); "
                    "`cuctl plan` reports which guarantees are short. "
                    f"Lower guarantees or add devices{hint}",
                    _WARN,
                )
            )
    out += _claims_on_devices(found, members, index, reference, policy_mix)
    out += _unmapped(found, observed)
    out += _no_adapter(found, observed)
    return out


def _no_adapter(found: Documents, observed: obs.ObservedState) -> list[diag.Diagnostic]:
    """Devices of a driver no VendorAdapter covers: CU nobody can use, said up front."""
    if not found.settings:
        return []
    by_driver: dict[str, list[obs.ObservedDevice]] = defaultdict(list)
    for device in observed.devices:
        by_driver[device.id.driver].append(device)
    out = []
    for finding in observed.findings:
        if finding.code is not obs.FindingCode.NO_ADAPTER:
            continue
        out.append(
            found.settings[0].at(
                _NAME,
                codes.Code.NO_ADAPTER,
                f"driver {finding.subject} publishes devices no VendorAdapter covers "
                f"({finding.message}); add a VendorAdapter for it to manage them",
                _WARN,
            )
        )
    return out


def _constraints_key(pool: str, c: docs.ClaimConstraints) -> tuple[object, ...]:
    """Everything the per-claim device checks read: claims sharing it get one answer
    (thousands of claims use a handful of constraint sets)."""
    return (
        pool,
        c.min_memory,
        tuple(c.vendors.allow),
        tuple(c.vendors.deny),
        tuple(c.models.allow),
        tuple(c.models.deny),
    )


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A model a device could be, with the vendors adapters map to it and its largest CU."""

    model: str
    vendors: frozenset[str] | None
    milli: int


def _candidates(found: Documents, settings: docs.ClusterSettings) -> list[_Candidate]:
    """Every model the adapters and factor tables know, in name order, at its largest factor
    over all workload classes: whatever the pool's mix (or a learned table) becomes, the
    device is never worth more. Computed once per validation, not once per claim."""
    reference = settings.spec.reference
    index = factors.index_factors([t.document for t in found.factor_tables], reference.device_model)
    vendor_of: dict[str, set[str]] = defaultdict(set)
    for adapter in found.adapters:
        model_map = adapter.document.spec.mapping.model
        for model in (model_map.values or {}).values():
            vendor_of[model].add(adapter.document.spec.vendor)
    values: dict[str, list[float]] = defaultdict(list)
    for (m, _), v in index.values.items():
        values[m].append(v)
    values[reference.device_model].append(1.0)  # the reference is worth 1 unless a table says more
    out = []
    for model in sorted({k[0] for k in index.values} | {reference.device_model}):
        vendors = vendor_of.get(model)
        out.append(
            _Candidate(
                model,
                None if vendors is None else frozenset(vendors),
                units.to_milli(max(values[model]), reference.cu_per_device),
            )
        )
    return out


def _largest_cu(
    candidates: Sequence[_Candidate], pool: docs.CUPool, claim: docs.CUClaim
) -> tuple[int, str] | None:
    """The most CU one device this claim may use could ever have: the candidates filtered by
    the pool's and the claim's model and vendor lists. None when nothing is known."""
    sel, c = pool.spec.selector, claim.spec.constraints
    best: tuple[int, str] | None = None
    for candidate in candidates:
        model, vendors = candidate.model, candidate.vendors
        if sel.models and model not in sel.models:
            continue
        if (c.models.allow and model not in c.models.allow) or model in c.models.deny:
            continue
        if vendors is not None and (
            (sel.vendors and not vendors & set(sel.vendors))
            or (c.vendors.allow and not vendors & set(c.vendors.allow))
            or vendors <= set(c.vendors.deny)
        ):
            continue
        if best is None or candidate.milli > best[0]:
            best = (candidate.milli, model)
    return best


def _never_fits(found: Documents, settings: docs.ClusterSettings) -> list[diag.Diagnostic]:
    """Claims no device could ever hold, whatever the cluster looks like: more CU per device
    than the largest model they may use is worth. Hardware that is missing today is a state
    (`cuctl plan` reports it); this is a declaration that can never be met. Only beyond the
    largest factor of any class is a claim invalid; below it, `cuctl plan` says what fits."""
    pools = {p.name: p.document for p in found.pools}
    candidates = _candidates(found, settings)
    answers: dict[tuple[object, ...], tuple[int, str] | None] = {}
    out = []
    for entry in found.claims:
        spec = entry.document.spec
        pool = pools.get(spec.pool)
        if pool is None:
            continue
        key = _constraints_key(spec.pool, spec.constraints)
        if key not in answers:
            answers[key] = _largest_cu(candidates, pool, entry.document)
        largest = answers[key]
        if largest is None:
            continue
        milli, model = largest
        if units.cu_to_milli(spec.cu) > milli:
            out.append(
                entry.at(
                    ("spec", "cu"),
                    codes.Code.CLAIM_NEVER_FITS,
                    f"{units.display_cu(units.cu_to_milli(spec.cu))} CU per device, but the "
                    f"largest device this claim may use in pool {spec.pool!r} ({model}) is worth "
                    f"at most {units.display_cu(milli)} CU (its largest factor, any workload "
                    "class); lower cu (and raise count) or allow larger models",
                )
            )
    return out


_UNMAPPED = {
    obs.FindingCode.UNKNOWN_MODEL: "report a model missing from the adapter's value map",
    obs.FindingCode.MISSING_FIELD: "lack a field the adapter maps",
}


def _unmapped(found: Documents, observed: obs.ObservedState) -> list[diag.Diagnostic]:
    """Devices the adapters could not normalise: one warning per adapter and reason."""
    by_driver = {a.document.spec.driver: a for a in found.adapters}
    grouped: dict[tuple[str, obs.FindingCode], list[obs.Finding]] = defaultdict(list)
    for finding in observed.findings:
        if finding.code in _UNMAPPED:
            grouped[(finding.subject.partition("/")[0], finding.code)].append(finding)
    out = []
    for (driver, code), findings in sorted(grouped.items()):
        adapter = by_driver.get(driver)
        if adapter is None:
            continue
        path = ("spec", "mapping", "model") if code is obs.FindingCode.UNKNOWN_MODEL else _NAME
        out.append(
            adapter.at(
                path,
                codes.Code.DEVICE_UNMAPPED,
                f"{len(findings)} observed device(s) {_UNMAPPED[code]} and are not managed "
                f"(e.g. {findings[0].subject}: {findings[0].message}); extend the mapping",
                _WARN,
                key=True,
            )
        )
    return out


def _eligible(
    devices: Sequence[obs.ObservedDevice],
    c: docs.ClaimConstraints,
    pool: str,
    size: Callable[[str, str], int | None],
) -> tuple[int, list[int]]:
    """How many of the pool's devices meet the constraints, and their CU per model."""
    floor = quantity.parse_quantity(c.min_memory) if c.min_memory else None
    fit = [
        d
        for d in devices
        if (floor is None or d.memory_bytes >= floor)
        and (not c.vendors.allow or d.vendor in c.vendors.allow)
        and d.vendor not in c.vendors.deny
        and (not c.models.allow or d.model in c.models.allow)
        and d.model not in c.models.deny
    ]
    sizes = [s for s in (size(pool, m) for m in {d.model for d in fit}) if s is not None]
    return len(fit), sizes


PEAK_YEAR_START = dt.datetime(2027, 1, 4, tzinfo=dt.UTC)
"""Where the search for a pool's peak of guarantees starts (a Monday): validation has no
clock, so scheduled guarantees are summed over this fixed year, with the changes of clocks
of the tzdata the reconciler ships with (tenants in different zones shift against each other
for a few weeks a year)."""


def _peak(quotas: Iterable[docs.Quota]) -> dt.datetime | None:
    """The instant at which the scheduled guarantees of one pool add up to the most (None
    when none is scheduled).

    All in one time zone: a sweep over the local week, exact since a change of clocks keeps
    local order. Zones mixed: the zones' UTC offsets take a few combinations over the
    reference year (each changes clocks at most a few times); for each combination, a sweep
    over the week in UTC with every zone's windows shifted by its offset. The work depends on
    the windows of one week and the number of combinations, never on how many days a year has
    (a pull request cannot make validation slow by adding windows)."""
    quotas = [q for q in quotas if q.schedule is not None]
    zones = sorted({q.schedule.time_zone for q in quotas if q.schedule is not None})
    if not zones:
        return None
    if len(zones) == 1:
        return _peak_in_week(quotas, timewindows.zone(zones[0]))
    tzs = [timewindows.zone(z) for z in zones]
    since: dict[tuple[int, ...], dt.datetime] = {}
    for hour in range(0, 366 * 24):
        at = PEAK_YEAR_START + dt.timedelta(hours=hour)
        offsets = tuple(_offset_minutes(at, tz) for tz in tzs)
        since.setdefault(offsets, at)
    best: tuple[int, dt.datetime] | None = None
    for offsets, first in since.items():
        shift = dict(zip(zones, offsets, strict=True))
        events: list[tuple[int, int]] = []
        for quota in quotas:
            assert quota.schedule is not None
            off = shift[quota.schedule.time_zone]
            base = units.cu_to_milli(quota.guaranteed)
            for w in quota.schedule.windows:
                delta = units.cu_to_milli(w.guaranteed) - base
                for begin, finish in w.as_window().week_spans():
                    events += _utc_week_events(begin - off, finish - begin, delta)
        found = _sweep(events, lambda m: m < timewindows.MINUTES_PER_WEEK)
        if found is None:
            continue
        value, minute = found
        # The first instant, from when this combination of offsets holds, at that minute of
        # the UTC week (a combination shorter than a week may not reach it: then the caller's
        # sums at that instant, computed afresh, decide).
        monday = dt.datetime.combine(
            first.date() - dt.timedelta(days=first.weekday()), dt.time(), dt.UTC
        )
        at = monday + dt.timedelta(minutes=minute)
        at += dt.timedelta(weeks=1) if at < first else dt.timedelta()
        if best is None or value > best[0]:
            best = (value, at)
    return best[1] if best else PEAK_YEAR_START


def _offset_minutes(at: dt.datetime, tz: dt.tzinfo) -> int:
    offset = at.astimezone(tz).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _utc_week_events(start: int, length: int, delta: int) -> list[tuple[int, int]]:
    """A span of the week moved to UTC minutes (``start`` may fall outside the week), split
    where it wraps."""
    week = timewindows.MINUTES_PER_WEEK
    start %= week
    if start + length <= week:
        return [(start, delta), (start + length, -delta)]
    return [(start, delta), (week, -delta), (0, delta), (start + length - week, -delta)]


def _peak_in_week(quotas: Sequence[docs.Quota], tz: dt.tzinfo) -> dt.datetime:
    events: list[tuple[int, int]] = []
    for quota in quotas:
        if quota.schedule is None:
            continue
        base = units.cu_to_milli(quota.guaranteed)
        for w in quota.schedule.windows:
            delta = units.cu_to_milli(w.guaranteed) - base
            for begin, finish in w.as_window().week_spans():
                events += [(begin, delta), (finish, -delta)]
    found = _sweep(events, lambda m: m < timewindows.MINUTES_PER_WEEK)
    minute = found[1] if found else 0
    monday = PEAK_YEAR_START.date() + dt.timedelta(days=minute // timewindows.MINUTES_PER_DAY)
    return timewindows.instant(monday, minute % timewindows.MINUTES_PER_DAY, tz)


def _sweep(events: list[tuple[int, int]], counted: Callable[[int], bool]) -> tuple[int, int] | None:
    """(highest running sum, where) of (when, delta) events, among the instants ``counted``
    accepts: the sum after the last event at an instant holds from it on."""
    best: tuple[int, int] | None = None
    running = 0
    events.sort()
    for k, (when, delta) in enumerate(events):
        running += delta
        last = k + 1 == len(events) or events[k + 1][0] != when
        if last and counted(when) and (best is None or running > best[0]):
            best = (running, when)
    return best


def _shares(rows: list[tuple[str, int]], shown: int = 6) -> str:
    """Tenants' guarantees in a pool, by name; past ``shown`` tenants only the largest are
    named (a pool with 200 tenants would otherwise fill the terminal)."""
    if len(rows) > shown:
        top = sorted(rows, key=lambda r: (-r[1], r[0]))[: shown - 1]
        rest = [r for r in rows if r not in top]
        named = ", ".join(f"{n} {units.display_cu(m)}" for n, m in sorted(top))
        others = units.display_cu(sum(m for _, m in rest))
        return f"{named} and {len(rest)} more tenants ({others} CU)"
    return ", ".join(f"{n} {units.display_cu(m)}" for n, m in sorted(rows))


def _undeclared_size(
    pool: Entry[docs.CUPool], guaranteed: int, shares: str, when: str, present: int
) -> diag.Diagnostic:
    """CU409: a pool that sells guarantees must say what size it sells them against.

    Overcommit is an error against desired state only (CU408): a snapshot cannot tell a lost
    node from a retired one, so no observed size may block a render. Without a declared size
    there would be nothing to check, so guarantees would be sold past the pool unnoticed."""
    after = units.after_headroom(present, pool.document.spec.headroom_percent)
    observed = (
        f"the devices observed in it give {units.display_cu(present)} CU "
        f"({units.display_cu(after)} after headroom)"
        if present
        else "no device of it is observed"
    )
    short = (
        f", {units.display_cu(guaranteed - after)} CU short of the guarantees"
        if guaranteed > after
        else ""
    )
    return pool.at(
        _NAME,
        codes.Code.GUARANTEES_WITHOUT_SIZE,
        f"pool {pool.name!r} sells guarantees of {units.display_cu(guaranteed)} CU{when} "
        f"({shares}) but declares no size to check them against; {observed}{short}. Add "
        f"spec.declaredCapacity (the CU it is sold at with every device present, before "
        f"headroom; e.g. declaredCapacity: {present // units.MILLI if present else 'N'}), "
        "or set Policy spec.allowOvercommit: true to sell guarantees without a size",
    )


def _claims_on_devices(
    found: Documents,
    members: Mapping[str, Sequence[obs.ObservedDevice]],
    index: factors.FactorIndex,
    reference: docs.ReferenceUnit,
    policy_mix: Mapping[str, float],
) -> list[diag.Diagnostic]:
    """Claims the *observed* devices cannot hold now: warnings, since devices come and go
    (a lost node must not make the repository unrenderable); `cuctl plan` says why, with
    numbers."""
    pools = {p.name: p.document for p in found.pools}
    targets = found.policies[0].document.latency_targets() if found.policies else {}
    size_of: dict[tuple[str, str], int | None] = {}

    def sizes_of(pool: str, model: str) -> int | None:
        """A device's CU depends on its pool (the workload mix) and its model only."""
        if (pool, model) not in size_of:
            mix = pools[pool].spec.workload_mix or policy_mix
            sold = index.with_basis(targets, pools[pool].spec.factor_basis).index
            factor = factors.blended_factor(sold, model, mix, reference.workload_class)
            size_of[(pool, model)] = (
                None if factor is None else units.to_milli(factor, reference.cu_per_device)
            )
        return size_of[(pool, model)]

    eligible: dict[tuple[object, ...], tuple[int, list[int]]] = {}
    out = []
    for entry in found.claims:
        spec = entry.document.spec
        devices = members.get(spec.pool)
        if spec.pool not in pools:
            continue
        if not devices:
            out.append(
                entry.at(
                    ("spec", "pool"),
                    codes.Code.CLAIM_UNSATISFIABLE,
                    f"pool {spec.pool!r} has no device in the observed snapshot; this claim "
                    "stays pending until devices appear",
                    _WARN,
                )
            )
            continue
        c = spec.constraints
        key = _constraints_key(spec.pool, c)
        if key not in eligible:
            eligible[key] = _eligible(devices, c, spec.pool, sizes_of)
        fit, sizes = eligible[key]
        want = units.cu_to_milli(spec.cu)
        if not fit:
            out.append(
                entry.at(
                    ("spec", "constraints"),
                    codes.Code.CLAIM_UNSATISFIABLE,
                    f"no observed device in pool {spec.pool!r} meets these constraints "
                    f"({len(devices)} devices, models {_list({d.model for d in devices})}); "
                    "relax them or use another pool",
                    _WARN,
                    key=True,
                )
            )
        elif sizes and max(sizes) < want:
            out.append(
                entry.at(
                    ("spec", "cu"),
                    codes.Code.CLAIM_UNSATISFIABLE,
                    f"{units.display_cu(want)} CU per device, but the largest eligible observed "
                    f"device in pool {spec.pool!r} has {units.display_cu(max(sizes))} CU",
                    _WARN,
                )
            )
        elif fit < spec.count and spec.form is docs.ClaimForm.CLAIM:
            out.append(
                entry.at(
                    ("spec", "count"),
                    codes.Code.CLAIM_UNSATISFIABLE,
                    f"count {spec.count} but only {fit} observed device(s) in pool "
                    f"{spec.pool!r} meet the constraints; lower count or relax the constraints",
                    _WARN,
                )
            )
    return out

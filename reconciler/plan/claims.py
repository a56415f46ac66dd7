"""ResourceClaim and ResourceClaimTemplate bodies for admitted CUClaims.

Shape of one claim for ``count`` devices (docs/double-allocation.md explains why):

- ``cu-<i>`` (exactly): our pool DeviceClass, ``capacity.requests.cu`` = the CU per device,
  plus CEL selectors for the claim's constraints (memory, vendors, models).
- Whole pools only, ``gpu-<i>`` (firstAvailable, one sub-request per vendor in the pool):
  the vendor DeviceClass, tolerating the fence taint; and one constraint per vendor:
  ``matchAttribute: <vendor uuid attribute>`` over ``cu-<i>`` and ``gpu-<i>/<vendor>``.
- Fractional pools with count > 1: ``distinctAttribute: <driver>/uuid`` over the ``cu-<i>``
  so shares land on different physical devices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import ownership, quantity, units
from reconciler.plan import admission, capacity, cel, classes, slices

API_VERSION = "resource.k8s.io/v1"
REPLICAS_ANNOTATION = f"{ownership.PREFIX}/replicas"
"""On a ResourceClaimTemplate with ``replicas`` > 1: how many Pods it is admitted for.

The template's spec cannot say it (each Pod stamps one claim from it), so without this a
change of replicas would be invisible in the diff, and the report could not read how much
CU a template held in the base revision or on the cluster (absent = 1).
"""


CHARGED_ANNOTATION = f"{ownership.PREFIX}/charged-cu"
"""On every claim and template: the CU admission charges it (whole devices in Whole pools,
the step-rounded request in Fractional ones; × replicas for a template). "Before" in the
report reads it back, so both sides of a preview use one accounting (docs/plan.md)."""


def _in(expr: str, values: Sequence[str]) -> str:
    return f"{expr} in [{', '.join(cel.string(v) for v in values)}]"


def selectors(claim: docs.CUClaim, driver: str) -> list[dict[str, Any]]:
    """CEL selectors for the claim's constraints, evaluated on our CU devices."""
    c = claim.spec.constraints
    vendor = classes.attribute_ref(f"{driver}/vendor")
    model = classes.attribute_ref(f"{driver}/model")
    exprs = []
    if c.min_memory is not None:
        mib = math.ceil(quantity.parse_quantity(c.min_memory) / 2**20)
        exprs.append(f"{classes.attribute_ref(f'{driver}/memoryMiB')} >= {mib}")
    if c.vendors.allow:
        exprs.append(_in(vendor, sorted(c.vendors.allow)))
    if c.vendors.deny:
        exprs.append(f"!({_in(vendor, sorted(c.vendors.deny))})")
    if c.models.allow:
        exprs.append(_in(model, sorted(c.models.allow)))
    if c.models.deny:
        exprs.append(f"!({_in(model, sorted(c.models.deny))})")
    return [{"cel": {"expression": e}} for e in exprs]


def claim_spec(
    claim: docs.CUClaim,
    pool: capacity.PoolCapacity,
    driver: str,
    fence: docs.FenceSettings,
    uuid_attribute_by_vendor: Mapping[str, str],
) -> dict[str, Any]:
    requests: list[dict[str, Any]] = []
    constraints: list[dict[str, Any]] = []
    cu_each = units.format_cu(units.cu_to_milli(claim.spec.cu))
    sel = selectors(claim, driver)
    vendors = admission.vendors_for(claim, pool)
    toleration = {"key": fence.taint_key, "operator": "Exists", "effect": fence.effect}
    for i in range(claim.spec.count):
        exactly: dict[str, Any] = {
            "deviceClassName": classes.pool_class_name(pool.name),
            "allocationMode": "ExactCount",
            "count": 1,
            "capacity": {"requests": {slices.CU_CAPACITY: cu_each}},
        }
        if sel:
            exactly["selectors"] = sel
        requests.append({"name": f"cu-{i}", "exactly": exactly})
        if pool.fractional:
            continue
        requests.append(
            {
                "name": f"gpu-{i}",
                "firstAvailable": [
                    {
                        "name": vendor,
                        "deviceClassName": classes.vendor_class_name(vendor),
                        "allocationMode": "ExactCount",
                        "count": 1,
                        "tolerations": [dict(toleration)],
                    }
                    for vendor in vendors
                ],
            }
        )
        for vendor in vendors:
            constraints.append(
                {
                    "requests": [f"cu-{i}", f"gpu-{i}/{vendor}"],
                    "matchAttribute": uuid_attribute_by_vendor[vendor],
                }
            )
    if pool.fractional and claim.spec.count > 1:
        constraints.append(
            {
                "requests": [f"cu-{i}" for i in range(claim.spec.count)],
                "distinctAttribute": f"{driver}/uuid",
            }
        )
    devices: dict[str, Any] = {"requests": requests}
    if constraints:
        devices["constraints"] = constraints
    return {"devices": devices}


def _spec_key(
    claim: docs.CUClaim,
    pool: capacity.PoolCapacity,
    driver: str,
    fence: docs.FenceSettings,
    uuid_attribute_by_vendor: Mapping[str, str],
) -> tuple[object, ...]:
    """Everything :func:`claim_spec` reads, as a value: claims alike get one spec."""
    c = claim.spec.constraints
    return (
        units.cu_to_milli(claim.spec.cu),
        claim.spec.count,
        c.min_memory,
        tuple(c.vendors.allow),
        tuple(c.vendors.deny),
        tuple(c.models.allow),
        tuple(c.models.deny),
        pool.name,
        pool.fractional,
        pool.vendors,
        driver,
        fence.taint_key,
        fence.effect,
        tuple(sorted(uuid_attribute_by_vendor.items())),
    )


def build(
    claim: docs.CUClaim,
    decision: admission.Decision,
    pool: capacity.PoolCapacity,
    driver: str,
    fence: docs.FenceSettings,
    uuid_attribute_by_vendor: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    memo: Memo | None = None,
    specs: dict[tuple[object, ...], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ResourceClaim or ResourceClaimTemplate for one admitted claim; with ``memo``, the
    body built last time from equal inputs when there is one (:class:`Memo`). Claims alike
    (same request, constraints and pool) share one spec object: from ``specs``, or from the
    memo's (20,000 claims have a few hundred distinct specs; nothing modifies them)."""
    key: tuple[object, ...] = ()
    if memo is not None:
        key = (
            claim,
            decision.namespace,
            decision.charged_milli,
            pool.name,
            pool.sharing,
            pool.vendors,
            driver,
            fence,
            uuid_attribute_by_vendor,
            labels,
            annotations,
        )
        known = memo.bodies.get(claim.metadata.name)
        if known is not None and known[0] == key:
            memo.fresh[claim.metadata.name] = known
            return known[1]
    table = memo.specs if memo is not None else specs
    spec_key = _spec_key(claim, pool, driver, fence, uuid_attribute_by_vendor)
    spec = table.get(spec_key) if table is not None else None
    if spec is None:
        spec = claim_spec(claim, pool, driver, fence, uuid_attribute_by_vendor)
        if table is not None:
            table[spec_key] = spec
    meta_labels = {
        **labels,
        ownership.POOL_LABEL: pool.name,
        ownership.CLAIM_LABEL: claim.metadata.name,
        ownership.TENANT_LABEL: claim.spec.tenant,
    }
    meta_annotations = dict(annotations)
    if claim.spec.workload_class:
        meta_annotations[ownership.WORKLOAD_CLASS_ANNOTATION] = claim.spec.workload_class
    meta_annotations[CHARGED_ANNOTATION] = units.format_cu(decision.charged_milli)
    if claim.spec.form is docs.ClaimForm.TEMPLATE and claim.spec.replicas > 1:
        meta_annotations[REPLICAS_ANNOTATION] = str(claim.spec.replicas)
    metadata = {
        "name": claim.metadata.name,
        "namespace": decision.namespace,
        "labels": dict(sorted(meta_labels.items())),
        "annotations": dict(sorted(meta_annotations.items())),
    }
    if claim.spec.form is docs.ClaimForm.TEMPLATE:
        # Claims stamped from the template are the Pod's, not ours: no managed-by label, so
        # the diff never proposes to delete them; the template label links them back.
        template_labels = {
            ownership.TEMPLATE_LABEL: claim.metadata.name,
            ownership.POOL_LABEL: pool.name,
            ownership.TENANT_LABEL: claim.spec.tenant,
        }
        obj: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "ResourceClaimTemplate",
            "metadata": metadata,
            "spec": {"metadata": {"labels": dict(sorted(template_labels.items()))}, "spec": spec},
        }
    else:
        obj = {
            "apiVersion": API_VERSION,
            "kind": "ResourceClaim",
            "metadata": metadata,
            "spec": spec,
        }
    if memo is not None:
        memo.built += 1
        memo.fresh[claim.metadata.name] = (key, obj)
        memo.spec_keys[claim.metadata.name] = spec_key
    return obj


@dataclass(slots=True)
class Memo:
    """The claim bodies :func:`build` returned last time, by claim name.

    A body is a function of the CUClaim, the namespace and charge admission gave it, its
    pool's name, sharing and vendors (one alternative per vendor), the driver, the fence,
    the vendors' uuid attributes, and the labels and annotations: when all are equal, the
    same object is returned again. Claims not built by the last call are forgotten; callers
    must not modify what is returned.
    """

    bodies: dict[str, tuple[tuple[object, ...], dict[str, Any]]] = field(default_factory=dict)
    fresh: dict[str, tuple[tuple[object, ...], dict[str, Any]]] = field(default_factory=dict)
    built: int = 0
    """Bodies built (not reused) since :meth:`turn`."""
    uuid_attributes: dict[str, tuple[object, dict[str, str]]] = field(default_factory=dict)
    """Per pool: the pool object and its vendors' uuid attributes
    (:func:`reconciler.plan.target._uuid_attribute_by_vendor`)."""
    specs: dict[tuple[object, ...], dict[str, Any]] = field(default_factory=dict)
    spec_keys: dict[str, tuple[object, ...]] = field(default_factory=dict)
    """The specs the bodies share, by what they were made from, and each body's key."""

    def turn(self) -> None:
        """End one plan: what was built or reused is what the next plan may reuse."""
        self.bodies, self.fresh = self.fresh, {}
        self.spec_keys = {n: self.spec_keys[n] for n in self.bodies if n in self.spec_keys}
        kept = set(self.spec_keys.values())
        if len(self.specs) > len(kept):
            self.specs = {k: v for k, v in self.specs.items() if k in kept}

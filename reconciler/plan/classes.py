"""DeviceClasses: one per CU pool (our driver and the pool attribute), one per vendor.

The pool class is what tenants' generated claims ask for. The vendor class selects a
vendor's devices through the adapter's filter; generated claims use it to co-allocate the
exact vendor device behind a CU device (see docs/double-allocation.md).

The pool class also records, one annotation per tenant, the quota in force in that pool
(``quota.cu-reconciler.io/<tenant>: guaranteed=2400,limit=3600``): the cluster keeps no
other trace of quotas, and the report reads them back from the live (or base revision's)
class to show a guarantee or limit change before → after, like any other change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import ownership, units
from reconciler.plan import cel

API_VERSION = "resource.k8s.io/v1"
QUOTA_ANNOTATION_PREFIX = "quota.cu-reconciler.io/"


CLASS_PREFIX = "cu-"
"""Every DeviceClass we generate starts with this, pool and vendor classes alike. The fence's
admission policy denies tenants any class name with this prefix (plan/fence.py): a property
of the name, so a pool's class is fenced before it exists and after it is pruned, and the
policy never changes when pools come and go."""


def pool_class_name(pool: str) -> str:
    return f"{CLASS_PREFIX}{pool}"


def vendor_class_name(vendor: str) -> str:
    return f"{CLASS_PREFIX}vendor-{vendor}"


def is_ours(class_name: str) -> bool:
    """Whether a DeviceClass name is in the namespace of names we generate."""
    return class_name.startswith(CLASS_PREFIX)


def attribute_ref(qualified: str) -> str:
    """``device.attributes["domain"].name`` for a fully qualified attribute name."""
    domain, _, name = qualified.rpartition("/")
    return f"device.attributes[{cel.string(domain)}].{name}"


def pool_selector(driver: str, pool: str) -> str:
    return (
        f"device.driver == {cel.string(driver)} && "
        f"{attribute_ref(f'{driver}/pool')} == {cel.string(pool)}"
    )


def vendor_selector(adapter: docs.VendorAdapter) -> str:
    driver = adapter.spec.driver
    parts = [f"device.driver == {cel.string(driver)}"]
    for key, value in sorted(adapter.spec.device_filter.items()):
        qualified = obs.qualify(key, driver)
        domain, _, name = qualified.rpartition("/")
        parts.append(
            f"{cel.string(name)} in device.attributes[{cel.string(domain)}] && "
            f"{attribute_ref(qualified)} == {cel.literal(value)}"
        )
    return " && ".join(parts)


def _class(
    name: str, expression: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "DeviceClass",
        "metadata": {
            "name": name,
            "labels": dict(sorted(labels.items())),
            "annotations": dict(annotations),
        },
        "spec": {"selectors": [{"cel": {"expression": expression}}]},
    }


def quota_text(quota: docs.Quota, tenant: docs.Tenant | None = None) -> str:
    """``guaranteed=2400,limit=3600,priority=300,preemptible=true,mayBorrow=false`` (no
    ``limit`` part when there is none).

    The tenant's admission settings ride along so that a plan against the live cluster can
    say what changed (``spec.priority: 300 → 950``) and exits 1 even when no claim moves:
    otherwise only ``plan --base`` could see them (docs/plan.md, "Changes of meaning").
    """
    text = f"guaranteed={units.format_cu(units.cu_to_milli(quota.guaranteed))}"
    if quota.limit is not None:
        text += f",limit={units.format_cu(units.cu_to_milli(quota.limit))}"
    if tenant is not None:
        spec = tenant.spec
        text += f",priority={spec.priority},preemptible={str(spec.preemptible).lower()}"
        text += f",mayBorrow={str(spec.may_borrow).lower()}"
    return text


def quota_annotations(tenants: Iterable[docs.Tenant], pool: str) -> dict[str, str]:
    """The pool class's quota annotations: one per tenant with a quota in the pool."""
    out = {}
    for tenant in tenants:
        for quota in tenant.spec.quotas:
            if quota.pool == pool:
                out[QUOTA_ANNOTATION_PREFIX + tenant.metadata.name] = quota_text(quota, tenant)
                break
    return out


def build(
    pools: Iterable[str],
    vendor_adapters: Iterable[docs.VendorAdapter],
    driver: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    tenants: Iterable[docs.Tenant] = (),
) -> list[dict[str, Any]]:
    out = []
    tenant_list = list(tenants)
    for pool in sorted(pools):
        pool_annotations = {**annotations, **quota_annotations(tenant_list, pool)}
        out.append(
            _class(
                pool_class_name(pool),
                pool_selector(driver, pool),
                {**labels, ownership.POOL_LABEL: pool, ownership.COMPONENT_LABEL: "pool-class"},
                dict(sorted(pool_annotations.items())),
            )
        )
    for adapter in sorted(vendor_adapters, key=lambda a: a.spec.vendor):
        out.append(
            _class(
                vendor_class_name(adapter.spec.vendor),
                vendor_selector(adapter),
                {**labels, ownership.COMPONENT_LABEL: "vendor-class"},
                annotations,
            )
        )
    return out

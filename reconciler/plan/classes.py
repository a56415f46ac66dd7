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

import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import ownership, units

API_VERSION = "resource.k8s.io/v1"
QUOTA_ANNOTATION_PREFIX = "quota.cu-reconciler.io/"


def pool_class_name(pool: str) -> str:
    return f"cu-{pool}"


def vendor_class_name(vendor: str) -> str:
    return f"cu-vendor-{vendor}"


def cel_string(text: str) -> str:
    """A CEL string literal (JSON escaping is valid CEL for the characters we emit)."""
    return json.dumps(text)


def cel_literal(value: str | int | bool) -> str:
    """A typed CEL literal: ``"gpu"``, ``0``, ``true`` (``0 == "0"`` is a CEL type error)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return cel_string(value)


def attribute_ref(qualified: str) -> str:
    """``device.attributes["domain"].name`` for a fully qualified attribute name."""
    domain, _, name = qualified.rpartition("/")
    return f"device.attributes[{cel_string(domain)}].{name}"


def pool_selector(driver: str, pool: str) -> str:
    return (
        f"device.driver == {cel_string(driver)} && "
        f"{attribute_ref(f'{driver}/pool')} == {cel_string(pool)}"
    )


def vendor_selector(adapter: docs.VendorAdapter) -> str:
    driver = adapter.spec.driver
    parts = [f"device.driver == {cel_string(driver)}"]
    for key, value in sorted(adapter.spec.device_filter.items()):
        qualified = obs.qualify(key, driver)
        domain, _, name = qualified.rpartition("/")
        parts.append(
            f"{cel_string(name)} in device.attributes[{cel_string(domain)}] && "
            f"{attribute_ref(qualified)} == {cel_literal(value)}"
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

"""A small, hand-checkable fleet for the planning tests (shared by tests/plan, diff, cli).

Nodes and devices (vendor slices built by the devcluster driver simulator, so they have the
exact shape the integration tests publish)::

    n1  nvidia H100 ×2      factor decode 1.55            → 155 CU each
    n2  nvidia A100 ×2      reference                     → 100 CU each
    n3  biren  BR104 ×2     factor 0.4                    →  40 CU each
    n4  hygon  Z100 ×2      mix ½ decode 0.45, ½ prefill 0.08 → √(0.45·0.08)·100 = 18.973 CU
                            (dcu-1 unhealthy: published tainted, not counted)
    n5  a driver without adapter (reported)

Pools: ``train`` (Whole; nvidia + biren) = 2·155 + 2·100 + 2·40 = 590 CU;
``infer`` (Fractional, minStep 5; hygon, headroom 0) = 18.973 CU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.devcluster import drivers
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import state as st

DRIVER = "cu.cu-reconciler.io"
API = docs.API_VERSION

ADAPTERS: tuple[dict[str, Any], ...] = (
    {
        "metadata": {"name": "nvidia"},
        "spec": {
            "vendor": "nvidia",
            "driver": "gpu.nvidia.com",
            "deviceFilter": {"type": "gpu"},
            "mapping": {
                "model": {
                    "attribute": "productName",
                    "values": {
                        "NVIDIA H100 80GB HBM3": "H100-SXM5-80GB",
                        "NVIDIA A100-SXM4-80GB": "A100-SXM4-80GB",
                        "NVIDIA L40S": "L40S",
                    },
                },
                "memory": {"capacity": "memory"},
                "uuid": {"attribute": "uuid"},
                "driverVersion": {"attribute": "driverVersion"},
                "pcieRoot": {"attribute": "resource.kubernetes.io/pcieRoot"},
            },
        },
    },
    {
        "metadata": {"name": "biren"},
        "spec": {
            "vendor": "biren",
            "driver": "gpu.biren.example.com",
            "mapping": {
                "model": {"attribute": "model", "values": {"BR104": "BR104", "BR100": "BR100"}},
                "memory": {"capacity": "memory"},
                "uuid": {"attribute": "uuid"},
            },
        },
    },
    {
        "metadata": {"name": "iluvatar"},
        "spec": {
            "vendor": "iluvatar",
            "driver": "gpu.iluvatar.example.com",
            "mapping": {
                "model": {"attribute": "productName"},
                "memory": {"attribute": "memoryMiB", "unit": "MiB"},
                "uuid": {"attribute": "serial"},
            },
        },
    },
    {
        "metadata": {"name": "hygon"},
        "spec": {
            "vendor": "hygon",
            "driver": "dcu.hygon.example.com",
            "mapping": {
                "model": {"attribute": "deviceName"},
                "memory": {"capacity": "vram"},
                "uuid": {"attribute": "uuid"},
                "health": {"attribute": "healthy", "healthyValues": [True]},
            },
        },
    },
    {
        "metadata": {"name": "ascend"},
        "spec": {
            "vendor": "ascend",
            "driver": "npu.ascend.example.com",
            "mapping": {
                "model": {
                    "attribute": "chipName",
                    "values": {"910B2": "Ascend-910B2", "910B3": "Ascend-910B3"},
                },
                "memory": {"attribute": "hbmMB", "unit": "MiB"},
                "uuid": {"attribute": "vdieId"},
                "health": {"attribute": "health", "healthyValues": ["Healthy"]},
            },
        },
    },
)


def _doc(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, **body}


def settings(namespaces: Sequence[str] = ("search", "ads", "lab")) -> docs.ClusterSettings:
    return docs.ClusterSettings.model_validate(
        _doc(
            "ClusterSettings",
            {
                "metadata": {"name": "cluster"},
                "spec": {
                    "driverName": DRIVER,
                    "reference": {"deviceModel": "A100-SXM4-80GB", "cuPerDevice": 100},
                    "managedNamespaces": list(namespaces),
                },
            },
        )
    )


def adapters() -> tuple[docs.VendorAdapter, ...]:
    return tuple(docs.VendorAdapter.model_validate(_doc("VendorAdapter", a)) for a in ADAPTERS)


def factor_table(extra: Iterable[Mapping[str, Any]] = ()) -> docs.FactorTable:
    factors = [
        {"deviceModel": "A100-SXM4-80GB", "value": 1.0},
        {"deviceModel": "H100-SXM5-80GB", "workloadClass": "decode", "value": 1.55},
        {"deviceModel": "H100-SXM5-80GB", "workloadClass": "prefill", "value": 2.6},
        {"deviceModel": "BR104", "value": 0.4},
        {"deviceModel": "Z100", "workloadClass": "decode", "value": 0.45},
        {"deviceModel": "Z100", "workloadClass": "prefill", "value": 0.08},
        *extra,
    ]
    return docs.FactorTable.model_validate(
        _doc(
            "FactorTable",
            {
                "metadata": {"name": "spec"},
                "spec": {"referenceModel": "A100-SXM4-80GB", "factors": factors},
            },
        )
    )


def pool(name: str, spec: Mapping[str, Any]) -> docs.CUPool:
    return docs.CUPool.model_validate(_doc("CUPool", {"metadata": {"name": name}, "spec": spec}))


def tenant(name: str, spec: Mapping[str, Any]) -> docs.Tenant:
    return docs.Tenant.model_validate(_doc("Tenant", {"metadata": {"name": name}, "spec": spec}))


def claim(name: str, spec: Mapping[str, Any]) -> docs.CUClaim:
    return docs.CUClaim.model_validate(_doc("CUClaim", {"metadata": {"name": name}, "spec": spec}))


def policy(spec: Mapping[str, Any] | None = None) -> docs.Policy:
    return docs.Policy.model_validate(
        _doc("Policy", {"metadata": {"name": "policy"}, "spec": dict(spec or {})})
    )


POOLS = (
    pool("train", {"selector": {"vendors": ["nvidia", "biren"]}}),
    pool(
        "infer",
        {
            "selector": {"vendors": ["hygon"]},
            "sharing": {"mode": "Fractional", "minStep": 5},
            "workloadMix": {"decode": 0.5, "prefill": 0.5},
        },
    ),
)

TENANTS = (
    tenant(
        "search",
        {
            "namespaces": ["search"],
            "priority": 100,
            "mayBorrow": True,
            "quotas": [{"pool": "train", "guaranteed": 300, "limit": 400}],
        },
    ),
    tenant(
        "ads",
        {
            "namespaces": ["ads"],
            "priority": 50,
            "mayBorrow": True,
            "quotas": [{"pool": "train", "guaranteed": 200}, {"pool": "infer", "guaranteed": 10}],
        },
    ),
    tenant("lab", {"namespaces": ["lab"], "priority": 10, "mayBorrow": True}),
)

CLAIMS = (
    claim("search-a", {"tenant": "search", "pool": "train", "cu": 150}),
    claim("search-b", {"tenant": "search", "pool": "train", "cu": 100}),
    claim("ads-a", {"tenant": "ads", "pool": "train", "cu": 100}),
    claim("ads-b", {"tenant": "ads", "pool": "train", "cu": 40, "count": 2}),
    claim("lab-a", {"tenant": "lab", "pool": "train", "cu": 100}),
    claim("lab-b", {"tenant": "lab", "pool": "train", "cu": 50}),
    claim(
        "ads-infer",
        {"tenant": "ads", "pool": "infer", "cu": 7, "form": "ResourceClaimTemplate"},
    ),
)


def desired(
    *,
    revision: str = "0123456789abcdef0123456789abcdef01234567",
    pools: Sequence[docs.CUPool] = POOLS,
    tenants: Sequence[docs.Tenant] = TENANTS,
    claims: Sequence[docs.CUClaim] = CLAIMS,
    tables: Sequence[docs.FactorTable] | None = None,
    policy_doc: docs.Policy | None = None,
) -> st.DesiredState:
    return st.DesiredState(
        revision=st.Revision(revision),
        settings=settings(),
        policy=policy_doc or st.DEFAULT_POLICY,
        adapters=adapters(),
        pools=tuple(pools),
        tenants=tuple(tenants),
        claims=tuple(claims),
        factor_tables=tuple(tables) if tables is not None else (factor_table(),),
    )


def node(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
    }


def vendor_slice(
    node_name: str,
    vendor: str,
    model: str,
    count: int,
    *,
    generation: int = 1,
    index: int = 0,
    slice_count: int = 1,
    **kwargs: Any,
) -> dict[str, Any]:
    spec = drivers.vendor_driver(vendor)
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node_name}-{spec.driver}-{index}"},
        "spec": {
            "driver": spec.driver,
            "nodeName": node_name,
            "pool": {
                "name": node_name,
                "generation": generation,
                "resourceSliceCount": slice_count,
            },
            "devices": drivers.build_devices(vendor, node_name, model, count, **kwargs),
        },
    }


def raw(
    owned: Sequence[Mapping[str, Any]] = (), claims: Sequence[Mapping[str, Any]] = ()
) -> obs.RawObjects:
    unknown = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": "n5-mystery"},
        "spec": {
            "driver": "npu.mystery.example.com",
            "nodeName": "n5",
            "pool": {"name": "n5", "generation": 0, "resourceSliceCount": 1},
            "devices": [{"name": "npu-0", "attributes": {"chip": {"string": "X1"}}}],
        },
    }
    return obs.RawObjects(
        nodes=tuple(node(n) for n in ("n1", "n2", "n3", "n4", "n5")),
        slices=(
            vendor_slice("n1", "nvidia", "H100", 2),
            vendor_slice("n2", "nvidia", "A100", 2),
            vendor_slice("n3", "biren", "BR104", 2),
            vendor_slice("n4", "hygon", "Z100", 2, unhealthy=[1]),
            unknown,
        ),
        claims=tuple(claims),
        owned=tuple(owned),
    )


def observed(
    owned: Sequence[Mapping[str, Any]] = (), claims: Sequence[Mapping[str, Any]] = ()
) -> obs.ObservedState:
    return obs.build(raw(owned, claims), adapters(), DRIVER)

"""Generate desired-state repositories and observed snapshots, deterministically.

Two uses:

- ``python bench/generate_repo.py --example`` rewrites ``examples/gitrepo/observed/snapshot.yaml``,
  the observed devices of the example cluster (22 nodes, five vendors), in the shape
  ``kubectl get nodes,resourceslices,resourceclaims -o yaml`` prints and exactly in the
  conventions of the local control plane's vendor simulator (driver names, attributes,
  capacities, per-node pools, ``gpu-N`` device names, deterministic uuids).
- ``python bench/generate_repo.py OUT [--tenants 200 --pools 50 --claims 5000]`` writes a
  synthetic repository of that size, with a matching snapshot, for the validation benchmark.

Same arguments, same bytes: uuids are derived from node and index, never random.
"""

from __future__ import annotations

import argparse
import io
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ruamel.yaml

from reconciler.devcluster import drivers

API = "cu-reconciler.io/v1alpha1"
CU_DRIVER = "cu.cu-reconciler.io"
_NS = uuid.UUID("6f1c1c3e-2d1b-4c5e-9a57-3f0c7b1d2e11")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "gitrepo"
MODELINE = "# yaml-language-server: $schema={schema}\n"


# ------------------------------------------------------------------------------ devices


@dataclass(frozen=True, slots=True)
class NodeShape:
    """A kind of node: vendor, model as the vendor reports it, devices per node."""

    vendor: str
    model: str
    devices: int
    instance_type: str


SHAPES: Mapping[str, NodeShape] = {
    "h100": NodeShape("nvidia", "NVIDIA H100 80GB HBM3", 8, "hgx-h100-8"),
    "a100": NodeShape("nvidia", "NVIDIA A100-SXM4-80GB", 8, "hgx-a100-8"),
    "l40s": NodeShape("nvidia", "NVIDIA L40S", 4, "pcie-l40s-4"),
    "br100": NodeShape("biren", "BR100", 8, "oam-br100-8"),
    "br104": NodeShape("biren", "BR104", 8, "pcie-br104-8"),
    "biv100": NodeShape("iluvatar", "BI-V100", 8, "pcie-biv100-8"),
    "biv150": NodeShape("iluvatar", "BI-V150", 8, "pcie-biv150-8"),
    "z100": NodeShape("hygon", "Z100", 8, "pcie-z100-8"),
    "k100": NodeShape("hygon", "K100", 8, "pcie-k100-8"),
    "910b2": NodeShape("huawei", "910B2", 8, "atlas-800t-a2"),
    "910b3": NodeShape("huawei", "910B3", 8, "atlas-800i-a2"),
}


def _uid(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_NS, "/".join(str(p) for p in parts))


# Our vendor vocabulary (VendorAdapter.spec.vendor) -> the vendor simulator's.
_SIMULATED = {"nvidia": "nvidia", "biren": "biren", "iluvatar": "iluvatar", "hygon": "hygon",
              "huawei": "ascend"}  # fmt: skip


def vendor_devices(
    shape: NodeShape, node: str, unhealthy: frozenset[int] = frozenset()
) -> list[dict[str, Any]]:
    """The node's devices exactly as the local control plane's vendor simulator publishes them.

    Delegates to :func:`reconciler.devcluster.drivers.build_devices` (pure), so the snapshot
    can never drift from the simulator's conventions (names, attributes, capacities, uuids).
    """
    return drivers.build_devices(
        _SIMULATED[shape.vendor], node, shape.model, shape.devices, unhealthy=unhealthy
    )


DRIVERS: Mapping[str, str] = {
    vendor: drivers.vendor_driver(simulated).driver for vendor, simulated in _SIMULATED.items()
}


def node_object(name: str, shape: NodeShape, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(_uid("node", name)),
            "resourceVersion": "1000",
            "creationTimestamp": "2026-11-01T08:00:00Z",
            "labels": {
                "kubernetes.io/arch": "amd64" if shape.vendor != "huawei" else "arm64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": shape.instance_type,
                "accelerator.example.com/vendor": shape.vendor,
                **labels,
            },
        },
        "spec": {},
        "status": {"nodeInfo": {"kubeletVersion": "v1.34.2"}},
    }


def slice_object(
    name: str, shape: NodeShape, unhealthy: frozenset[int] = frozenset()
) -> dict[str, Any]:
    driver = DRIVERS[shape.vendor]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {
            "name": f"{name}-{driver}-0",
            "uid": str(_uid("slice", name)),
            "resourceVersion": "1001",
            "creationTimestamp": "2026-11-01T08:01:00Z",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": name,
                    "uid": str(_uid("node", name)),
                    "controller": True,
                }
            ],
        },
        "spec": {
            "driver": driver,
            "nodeName": name,
            "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
            "devices": vendor_devices(shape, name, unhealthy),
        },
    }


def claim_object(
    namespace: str,
    name: str,
    tenant: str,
    node: str,
    device: str,
    cu: str,
    pod: str | None,
    *,
    pool: str,
    template: str | None = None,
) -> dict[str, Any]:
    """An allocated claim as ``kubectl get -o yaml`` prints it.

    With ``template``, it is what kube-controller-manager's resourceclaim controller stamps
    for ``pod`` from our ResourceClaimTemplate: owned by the Pod, named after it, carrying
    the template's ``spec.metadata`` labels (not our managed-by label: it is the Pod's).
    Without, it is a ResourceClaim the reconciler created itself (managed-by label).
    """
    status: dict[str, Any] = {
        "allocation": {
            "devices": {
                "results": [
                    {
                        "request": "cu-0",
                        "driver": CU_DRIVER,
                        "pool": node,
                        "device": device,
                        "consumedCapacity": {"cu": cu},
                    }
                ]
            },
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                ]
            },
        }
    }
    if pod is not None:
        status["reservedFor"] = [{"resource": "pods", "name": pod, "uid": str(_uid("pod", pod))}]
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": str(_uid("claim", namespace, name)),
        "resourceVersion": "2001",
        "creationTimestamp": "2026-11-20T10:00:00Z",
    }
    if template is not None:
        assert pod is not None, "a claim stamped from a template belongs to a Pod"
        metadata["labels"] = {
            "cu-reconciler.io/pool": pool,
            "cu-reconciler.io/template": template,
            "cu-reconciler.io/tenant": tenant,
        }
        metadata["annotations"] = {"resource.kubernetes.io/pod-claim-name": "cu"}
        metadata["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod,
                "uid": str(_uid("pod", pod)),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    else:
        metadata["labels"] = {
            "app.kubernetes.io/managed-by": "cu-reconciler",
            "cu-reconciler.io/claim": name,
            "cu-reconciler.io/pool": pool,
            "cu-reconciler.io/tenant": tenant,
        }
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": metadata,
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "cu-0",
                        "exactly": {
                            "deviceClassName": f"cu-{pool}",
                            "capacity": {"requests": {"cu": cu}},
                        },
                    }
                ]
            }
        },
        "status": status,
    }


def kube_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def _sorted(value: Any) -> Any:
    """kubectl prints keys sorted (JSON → YAML); so do we, recursively."""
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def dump(value: Any, header: str = "") -> str:
    yaml = ruamel.yaml.YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    buf = io.StringIO()
    yaml.dump(_sorted(value), buf)
    return header + buf.getvalue()


def dump_all(values: list[dict[str, Any]], header: str = "") -> str:
    return header + "---\n".join(dump(v) for v in values)


# ---------------------------------------------------------------------- example cluster

# (node name prefix, shape, count, tier, zone)
EXAMPLE_NODES: tuple[tuple[str, str, int, str], ...] = (
    ("h100", "h100", 4, "production"),
    ("a100", "a100", 4, "batch"),
    ("l40s", "l40s", 2, "dev"),
    ("br100", "br100", 1, "production"),
    ("br104", "br104", 2, "batch"),
    ("biv150", "biv150", 2, "batch"),
    ("biv100", "biv100", 1, "dev"),
    ("k100", "k100", 2, "batch"),
    ("z100", "z100", 1, "dev"),
    ("ascend-910b2", "910b2", 2, "production"),
    ("ascend-910b3", "910b3", 1, "production"),
)
TIER_LABEL = "platform.example.com/tier"
ZONE_LABEL = "topology.kubernetes.io/zone"


def example_snapshot() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    for prefix, shape_key, count, tier in EXAMPLE_NODES:
        shape = SHAPES[shape_key]
        for i in range(1, count + 1):
            name = f"{prefix}-{i:02d}"
            zone = "cn-north-1a" if i % 2 else "cn-north-1b"
            nodes.append(node_object(name, shape, {TIER_LABEL: tier, ZONE_LABEL: zone}))
            # One Hygon and one Ascend device are unhealthy, as real fleets always have some.
            unhealthy = frozenset({5}) if name in ("k100-02", "ascend-910b2-02") else frozenset()
            slices.append(slice_object(name, shape, unhealthy))
    # Three Pods run on claims stamped from our templates by kube-controller-manager: the
    # reconciler has not run yet, so nothing else on the cluster carries our label.
    claims = [
        claim_object(
            "search-prod",
            "ranker-7d9f-0-cu-x4k2p",
            "search-ranking",
            "h100-01",
            "nvidia-gpu-0",
            "200",
            "ranker-7d9f-0",
            pool="inference-prod",
            template="ranking-h100",
        ),
        claim_object(
            "search-prod",
            "ranker-7d9f-1-cu-q8n5w",
            "search-ranking",
            "h100-01",
            "nvidia-gpu-1",
            "200",
            "ranker-7d9f-1",
            pool="inference-prod",
            template="ranking-h100",
        ),
        claim_object(
            "chat-prod",
            "chat-decode-5b6c-0-cu-m2r7t",
            "chat-assistant",
            "h100-02",
            "nvidia-gpu-0",
            "150",
            "chat-decode-5b6c-0",
            pool="inference-prod",
            template="chat-decode",
        ),
    ]
    return kube_list(nodes + slices + claims)


def write_example() -> Path:
    target = EXAMPLE / "observed" / "snapshot.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Observed state of the example cluster, as `kubectl get nodes,resourceslices,"
        "resourceclaims -o yaml` prints it.\n"
        "# Generated by bench/generate_repo.py --example; do not edit by hand.\n"
        "# Not a cu-reconciler document (no schema): excluded from loading by the layout,\n"
        "# read as the observed snapshot (ClusterSettings.spec.layout.snapshot).\n"
    )
    target.write_text(dump(example_snapshot(), header))
    return target


# -------------------------------------------------------------------- synthetic repository

_VENDOR_SHAPES = (
    "h100",
    "a100",
    "br104",
    "biv150",
    "k100",
    "910b2",
    "l40s",
    "z100",
    "biv100",
    "br100",
)


def _pool_vendor(pool: str) -> str:
    return SHAPES[_VENDOR_SHAPES[int(pool.rpartition("-")[2]) % len(_VENDOR_SHAPES)]].vendor


def _other_vendor(pool: str) -> str:
    """A vendor the pool does not have, for a deny list that still leaves devices."""
    return "hygon" if _pool_vendor(pool) != "hygon" else "biren"


def synthetic(tenants: int, pools: int, claims: int) -> Iterator[tuple[str, str]]:
    """(path, text) pairs of a synthetic repository; pools select nodes by a label."""
    schema = "../schemas/{}.json"
    namespaces = [f"tenant-{t:03d}" for t in range(tenants)]
    yield (
        "cluster.yaml",
        dump(
            {
                "apiVersion": API,
                "kind": "ClusterSettings",
                "metadata": {"name": "bench"},
                "spec": {
                    "driverName": CU_DRIVER,
                    "reference": {
                        "deviceModel": "A100-SXM4-80GB",
                        "workloadClass": "decode",
                        "cuPerDevice": 100,
                    },
                    "managedNamespaces": namespaces,
                },
            },
            MODELINE.format(schema=schema.format("clustersettings")),
        ),
    )
    for path in sorted((EXAMPLE / "adapters").glob("*.yaml")):
        yield f"adapters/{path.name}", path.read_text()
    yield "factors/default.yaml", (EXAMPLE / "factors" / "default.yaml").read_text()
    yield "policy.yaml", (EXAMPLE / "policy.yaml").read_text()
    nodes_per_pool = 4
    items: list[dict[str, Any]] = []
    pool_capacity: list[int] = []
    for p in range(pools):
        shape_key = _VENDOR_SHAPES[p % len(_VENDOR_SHAPES)]
        shape = SHAPES[shape_key]
        pool = f"pool-{p:02d}"
        # Sold at 25 CU a device: below what the slowest generated model gives (about 27),
        # so no declared size exceeds the devices, and far above the 5 CU guarantee each of
        # the pool's ~3 × tenants / pools home tenants holds (CU408, CU409).
        declared = 25 * nodes_per_pool * shape.devices
        yield (
            f"pools/{pool}.yaml",
            dump(
                {
                    "apiVersion": API,
                    "kind": "CUPool",
                    "metadata": {"name": pool},
                    "spec": {
                        "selector": {
                            "nodeSelector": {"matchLabels": {"bench.example.com/pool": pool}}
                        },
                        "sharing": {"mode": "Fractional", "minStep": 5},
                        "headroomPercent": 5,
                        "declaredCapacity": declared,
                    },
                },
                MODELINE.format(schema=schema.format("cupool")),
            ),
        )
        for n in range(nodes_per_pool):
            name = f"{pool}-{shape_key}-{n}"
            items.append(node_object(name, shape, {"bench.example.com/pool": pool}))
            items.append(slice_object(name, shape))
        pool_capacity.append(nodes_per_pool * shape.devices)
    per_tenant = max(1, claims // tenants)
    made = 0
    for t in range(tenants):
        tenant = f"tenant-{t:03d}"
        home = [f"pool-{(t + k) % pools:02d}" for k in range(3)]
        yield (
            f"tenants/{tenant}.yaml",
            dump(
                {
                    "apiVersion": API,
                    "kind": "Tenant",
                    "metadata": {"name": tenant, "labels": {"cost-center": f"cc-{t % 17}"}},
                    "spec": {
                        "namespaces": [tenant],
                        "priority": 100 + (t * 37) % 900,
                        "mayBorrow": t % 3 == 0,
                        "preemptible": t % 5 != 0,
                        "quotas": [{"pool": p, "guaranteed": 5, "limit": 400} for p in home],
                    },
                },
                MODELINE.format(schema=schema.format("tenant")),
            ),
        )
        docs_: list[dict[str, Any]] = []
        count = per_tenant if t < tenants - 1 else claims - made
        for c in range(count):
            docs_.append(
                {
                    "apiVersion": API,
                    "kind": "CUClaim",
                    "metadata": {"name": f"{tenant}-claim-{c:03d}"},
                    "spec": {
                        "tenant": tenant,
                        "pool": home[c % 3],
                        "cu": 5 * (1 + c % 4),
                        "count": 1 + c % 2,
                        "workloadClass": ("prefill", "decode", "embedding")[c % 3],
                        "form": "ResourceClaimTemplate" if c % 4 == 0 else "ResourceClaim",
                        "constraints": {"vendors": {"deny": [_other_vendor(home[c % 3])]}}
                        if c % 7 == 0
                        else {},
                    },
                }
            )
        made += count
        yield (
            f"claims/{tenant}/claims.yaml",
            dump_all(docs_, MODELINE.format(schema="../../../schemas/cuclaim.json")),
        )
    yield "observed/snapshot.yaml", dump(kube_list(items))


def write_synthetic(out: Path, tenants: int, pools: int, claims: int) -> int:
    n = 0
    for rel, text in synthetic(tenants, pools, claims):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, help="directory for a synthetic repository")
    parser.add_argument("--example", action="store_true", help="rewrite the example snapshot")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--pools", type=int, default=50)
    parser.add_argument("--claims", type=int, default=5000)
    args = parser.parse_args()
    if args.example:
        print(write_example())
    if args.out is not None:
        print(write_synthetic(args.out, args.tenants, args.pools, args.claims), "files")
    if not args.example and args.out is None:
        parser.error("give OUT or --example")


if __name__ == "__main__":
    main()

"""Synthetic fleet generator for the planning benchmark (and for ad-hoc experiments).

``generate(nodes=1250, devices_per_node=8, tenants=200, claims=5000, seed=0)`` returns a
DesiredState and the RawObjects a cluster would show: Nodes, vendor ResourceSlices (shaped by
the devcluster driver simulator, so exactly what the vendor adapters expect) and no claims.
Deterministic for a seed. Vendors and models rotate per node; three pools split the nodes by
a tier label (Whole batch, Fractional inference and dev).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cu_example as ex

from reconciler.devcluster import drivers
from reconciler.model import observed as obs
from reconciler.model import state as st

_NODE_KINDS = (
    ("nvidia", "H100", "inference"),
    ("nvidia", "A100", "batch"),
    ("biren", "BR104", "batch"),
    ("hygon", "Z100", "dev"),
    ("nvidia", "H100", "inference"),
    ("ascend", "910B3", "inference"),
)


def generate(
    nodes: int = 1250,
    devices_per_node: int = 8,
    tenants: int = 200,
    claims: int = 5000,
    seed: int = 0,
) -> tuple[st.DesiredState, obs.RawObjects]:
    rng = random.Random(seed)
    node_objs: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    for i in range(nodes):
        vendor, model, tier = _NODE_KINDS[i % len(_NODE_KINDS)]
        name = f"node-{i:05d}"
        node_objs.append(ex.node(name, {"tier": tier}))
        spec = drivers.vendor_driver(vendor)
        slices.append(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "metadata": {"name": f"{name}-{spec.driver}-0"},
                "spec": {
                    "driver": spec.driver,
                    "nodeName": name,
                    "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                    "devices": drivers.build_devices(vendor, name, model, devices_per_node),
                },
            }
        )
    pools = (
        ex.pool("batch", {"selector": {"nodeSelector": {"matchLabels": {"tier": "batch"}}}}),
        ex.pool(
            "inference",
            {
                "selector": {"nodeSelector": {"matchLabels": {"tier": "inference"}}},
                "sharing": {"mode": "Fractional", "minStep": 25},
                "headroomPercent": 10,
                "workloadMix": {"prefill": 0.3, "decode": 0.7},
            },
        ),
        ex.pool(
            "dev",
            {
                "selector": {"nodeSelector": {"matchLabels": {"tier": "dev"}}},
                "sharing": {"mode": "Fractional", "minStep": 5},
                "workloadMix": {"decode": 0.5, "prefill": 0.5},
            },
        ),
    )
    namespaces = [f"team-{t:03d}" for t in range(tenants)]
    tenant_docs = tuple(
        ex.tenant(
            f"team-{t:03d}",
            {
                "namespaces": [namespaces[t]],
                "priority": rng.randrange(0, 1000),
                "mayBorrow": rng.random() < 0.7,
                "quotas": [
                    {"pool": "batch", "guaranteed": rng.choice([0, 100, 200, 400])},
                    {"pool": "inference", "guaranteed": rng.choice([0, 200, 500, 1000])},
                    {"pool": "dev", "guaranteed": rng.choice([0, 20, 50])},
                ],
            },
        )
        for t in range(tenants)
    )
    claim_docs = []
    for c in range(claims):
        pool = rng.choice(("batch", "inference", "inference", "dev"))
        cu = {
            "batch": rng.choice([40, 100]),
            "inference": rng.choice([25, 50, 100, 150]),
            "dev": rng.choice([5, 10, 20]),
        }[pool]
        claim_docs.append(
            ex.claim(
                f"claim-{c:05d}",
                {
                    "tenant": f"team-{rng.randrange(tenants):03d}",
                    "pool": pool,
                    "cu": cu,
                    "count": rng.choice([1, 1, 1, 2, 4]),
                    "form": rng.choice(["ResourceClaim", "ResourceClaim", "ResourceClaimTemplate"]),
                },
            )
        )
    table = ex.factor_table(
        [
            {"deviceModel": "Ascend-910B3", "workloadClass": "prefill", "value": 1.1},
            {"deviceModel": "Ascend-910B3", "workloadClass": "decode", "value": 0.8},
        ]
    )
    desired = st.DesiredState(
        revision=st.Revision("b" * 40),
        settings=ex.settings(namespaces),
        policy=st.DEFAULT_POLICY,
        adapters=ex.adapters(),
        pools=pools,
        tenants=tenant_docs,
        claims=tuple(sorted(claim_docs, key=lambda c: c.metadata.name)),
        factor_tables=(table,),
    )
    raw = obs.RawObjects(nodes=tuple(node_objs), slices=tuple(slices))
    return desired, raw

"""One truth in every mode (issue 21): plan, render, apply, run and the PR preview admit the
same claims, on the real control plane.

The scenario: the example repository (a template-heavy tenant, chat-assistant, that is a
non-preemptible borrower; search-ranking, non-preemptible too) with a custom
``driverName``, applied, then its H100 nodes lost (their vendor slices are gone). Then:

- ``cuctl plan --kubeconfig -o json``: the per-claim admission;
- ``cuctl render --kubeconfig``: the claims and templates it renders, with their charge;
- the PR preview: ``cuctl snapshot --write --branch`` of the live cluster and
  ``cuctl plan --rev <branch> --base HEAD -o json`` on it;
- ``cuctl apply``: the claims and templates it leaves in the cluster;
- ``cuctl run`` (the controller): converges on the applied cluster writing nothing, and its
  CUSync status counts the same admitted CU and pending claims per tenant.

All as the reconciler's ServiceAccount; the plugin's driver-name ConfigMap carries the
custom name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from harness import Env, owned, versions, wait_for
from ruamel.yaml import YAML

from reconciler.devcluster import rawapi
from reconciler.model import driverconfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = "cu.edge.example.com"
LOST = "h100-"
"""Every H100 node is lost (the example's inference-prod pool shrinks below its guarantees)."""
CHARGED = "cu-reconciler.io/charged-cu"
CLAIM_KINDS = ("ResourceClaim", "ResourceClaimTemplate")


def _cuctl(*args: str, ok: tuple[int, ...] = (0, 1)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode in ok, f"cuctl {args[0]}: exit {proc.returncode}\n{proc.stderr}"
    return proc


def _milli(text: str) -> int:
    """Milli-CU from the report's decimal text ("649.76") or the annotation ("649760m")."""
    if text.endswith("m"):
        return int(text[:-1])
    return int(Decimal(text) * 1000)


def _admitted(claims: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """(namespace, claim) → charged milli-CU of every admitted claim (Pending: absent)."""
    return {
        (c["namespace"], c["claim"]): _milli(str(c["chargedCU"]))
        for c in claims
        if c["status"] == "Admitted"
    }


def _decisions(claims: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str, str]]:
    return {
        (c["namespace"], c["claim"]): (c["status"], c["reason"], c["chargedCU"]) for c in claims
    }


def _charged(objects: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): _milli(
            o["metadata"]["annotations"][CHARGED]
        )
        for o in objects
        if o["kind"] in CLAIM_KINDS
    }


def test_plan_render_apply_run_and_the_pr_preview_admit_the_same(env: Env) -> None:
    root = Path(env.clone.working_dir)
    head = env.commit(
        "a custom driver name",
        lambda r: (r / "cluster.yaml").write_text(
            (r / "cluster.yaml").read_text().replace("cu.cu-reconciler.io", DRIVER)
        ),
    )
    kubeconfig = str(env.kubeconfig)
    # The fleet runs: HEAD applied while every node is there.
    _cuctl("apply", str(root), "--rev", head, "--kubeconfig", kubeconfig, ok=(0,))
    # Then the nodes are lost: their vendor slices are gone before any mode looks again.
    slices = "/apis/resource.k8s.io/v1/resourceslices"
    for item in rawapi.request(env.admin, "GET", slices)["items"]:
        if str(item["spec"].get("nodeName", "")).startswith(LOST):
            rawapi.delete(env.admin, f"{slices}/{item['metadata']['name']}")

    # plan against the live cluster.
    planned = json.loads(
        _cuctl("plan", str(root), "--rev", head, "--kubeconfig", kubeconfig, "-o", "json").stdout
    )
    decisions = _decisions(planned["claims"])
    admitted = _admitted(planned["claims"])
    assert admitted and len(admitted) <= len(decisions)
    assert planned["shortfalls"], "promises the lost nodes break are reported"

    # render, as the GitOps engine gets it.
    rendered = [
        o
        for o in YAML(typ="safe").load_all(
            _cuctl("render", str(root), "--rev", head, "--kubeconfig", kubeconfig).stdout
        )
        if o
    ]
    assert _charged(rendered) == admitted
    [cm] = [o for o in rendered if o["kind"] == "ConfigMap"]
    assert cm["data"] == {driverconfig.KEY: DRIVER}

    # the PR preview: the live cluster's snapshot committed on a branch, planned against HEAD.
    _cuctl("snapshot", str(root), "--kubeconfig", kubeconfig, "--write", "--branch", "pr")
    preview = json.loads(
        _cuctl("plan", str(root), "--rev", "pr", "--base", head, "-o", "json").stdout
    )
    assert _decisions(preview["claims"]) == decisions

    # apply after the loss, then what the cluster holds.
    _cuctl("apply", str(root), "--rev", head, "--kubeconfig", kubeconfig, ok=(0,))
    live = [o for o in owned(env.admin) if o["kind"] in CLAIM_KINDS]
    assert _charged(live) == admitted
    stored = rawapi.request(
        env.admin, "GET", f"/api/v1/namespaces/cu-system/configmaps/{driverconfig.NAME}"
    )
    assert stored["data"] == {driverconfig.KEY: DRIVER}

    # run: the controller converges on the same admission and writes nothing.
    before = versions(env.admin)
    env.start(interval="1s", resync="10m")
    sync = env.ready_at(head) if not planned["shortfalls"] else _settled(env, head)
    assert versions(env.admin) == before, "the controller rewrote what apply admitted"
    pending: dict[tuple[str, str], int] = {}
    for c in planned["claims"]:
        if c["status"] == "Pending":
            pending[(c["tenant"], c["pool"])] = pending.get((c["tenant"], c["pool"]), 0) + 1
    for t in sync["status"]["tenants"]:
        assert t["pendingClaims"] == pending.get((t["name"], t["pool"]), 0), t
        claimed = next(
            x["after"]["claimedCU"]
            for x in planned["tenants"]
            if (x["tenant"], x["pool"]) == (t["name"], t["pool"])
        )
        assert float(t["admittedCU"]) == float(claimed), (t, claimed)


def _settled(env: Env, head: str) -> dict[str, Any]:
    """The CUSync once it applied ``head`` (Ready may carry the shortfall count)."""

    def probe() -> dict[str, Any] | None:
        sync = env.sync()
        status = sync.get("status") or {}
        return sync if status.get("lastAppliedRevision") == head else None

    return wait_for(f"CUSync applied {head[:12]}", probe, 120)

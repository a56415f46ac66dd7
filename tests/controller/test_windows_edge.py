"""Peaks and troughs on the real control plane: ``cuctl run`` moves capacity at a guarantee
window edge with no commit and no resync, and the claim it preempts there is the one the
preview (``cuctl plan --at`` the edge) names: the same admission and preemption rules.

The windows are written in minutes of the real clock (UTC) around the test's start, so the
controller runs exactly as in production: no test clock, no hidden flag. It costs the wait
for the edge (70 to 130 seconds).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import Env, owned, wait_for
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

DAYS = "[Mon, Tue, Wed, Thu, Fri, Sat, Sun]"
PEAKS = Path(__file__).resolve().parents[2] / "examples" / "peaks-and-troughs" / "tenants"


def _hhmm(at: dt.datetime) -> str:
    return at.strftime("%H:%M")


def _windows(root: Path, edge: dt.datetime) -> None:
    """research-batch holds a night guarantee in inference-prod until ``edge`` and a claim of
    1900 CU within it; from ``edge`` search-ranking is guaranteed 4000 CU, which leaves too
    little idle CU for research to keep borrowing: its claim must go."""
    earlier, later = edge - dt.timedelta(hours=2), edge + dt.timedelta(minutes=30)
    (root / "tenants" / "search-ranking.yaml").write_text(
        (PEAKS / "search-ranking.yaml")
        .read_text()
        .replace("limit: 3600", "limit: 4000")
        .replace("timeZone: Asia/Shanghai", "timeZone: UTC")
        .replace('start: "08:00"', f'start: "{_hhmm(edge)}"')
        .replace('end: "24:00"', f'end: "{_hhmm(later)}"')
        .replace("guaranteed: 2400", "guaranteed: 4000")
    )
    (root / "tenants" / "research-batch.yaml").write_text(
        (PEAKS / "research-batch.yaml")
        .read_text()
        .replace("timeZone: Asia/Shanghai", "timeZone: UTC")
        .replace('start: "00:00"', f'start: "{_hhmm(earlier)}"')
        .replace('end: "08:00"', f'end: "{_hhmm(edge)}"')
        .replace("guaranteed: 1000", "guaranteed: 1900")
    )
    (root / "claims" / "research-batch" / "night-eval.yaml").write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: CUClaim\nmetadata:\n  name: night-eval\n"
        "spec:\n  tenant: research-batch\n  pool: inference-prod\n  cu: 100\n  count: 19\n"
    )
    assert DAYS in (root / "tenants" / "research-batch.yaml").read_text()


def _claims(objects: list[dict[str, Any]]) -> set[str]:
    return {
        f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
        for o in objects
        if o["kind"] in ("ResourceClaim", "ResourceClaimTemplate")
    }


def _samples(text: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """The guarantee-window series of a scrape: (name, (tenant, pool, window)) → value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("cu_guarantee_"):
                keys = tuple(s.labels[k] for k in ("tenant", "pool", "window") if k in s.labels)
                out[(s.name, keys)] = s.value
    return out


def _preview_at(env: Env, at: dt.datetime) -> dict[str, Any]:
    """``cuctl plan --at`` against the live cluster: the decisions it predicts."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.cli",
            "plan",
            env.clone.working_dir,
            "--kubeconfig",
            str(env.cp.kubeconfig),
            "--at",
            at.isoformat(),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr
    body: dict[str, Any] = json.loads(out.stdout)
    return body


def test_the_controller_moves_capacity_at_a_window_edge_without_a_commit(env: Env) -> None:
    now = dt.datetime.now(dt.UTC)
    # The edge: a whole minute 70-130 s ahead (the first reconcile must be done by then).
    edge = (now + dt.timedelta(seconds=130)).replace(second=0, microsecond=0)
    sha = env.commit(
        "peaks and troughs: research's night until the edge", lambda r: _windows(r, edge)
    )
    # Resync far away: only the requeue at the edge can bring the next reconcile.
    replica = env.start(interval="1s", resync="30m")
    ready = env.ready_at(sha, timeout=90)
    assert dt.datetime.now(dt.UTC) < edge, "the first reconcile ended after the edge"
    tenants = {(t["name"], t["pool"]): t for t in ready["status"]["tenants"]}
    assert tenants[("research-batch", "inference-prod")]["guaranteedCU"] == 1900
    assert tenants[("search-ranking", "inference-prod")]["guaranteedCU"] == 1400
    # The CUSync status (its CRD keeps the fields): the window in force, the next edge.
    assert tenants[("research-batch", "inference-prod")]["guaranteeWindow"] == "night"
    assert tenants[("search-ranking", "inference-prod")]["guaranteeWindow"] == ""
    assert ready["status"]["nextWindowEdge"] == edge.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "research/night-eval" in _claims(owned(env.admin))
    samples = _samples(replica.metrics())
    assert samples[("cu_guarantee_window_info", ("research-batch", "inference-prod", "night"))] == 1
    assert samples[("cu_guarantee_next_edge_timestamp_seconds", ())] == edge.timestamp()
    before = _claims(owned(env.admin))

    # The preview at the edge, before it: which claims the day's guarantees keep.
    predicted = _preview_at(env, edge + dt.timedelta(seconds=1))
    decision = next(c for c in predicted["claims"] if c["claim"] == "night-eval")
    assert decision["status"] == "Preempted", decision
    rows = {r["tenant"]: r for r in predicted["schedule"]["tenants"]}
    assert (
        rows["search-ranking"]["inForce"] == "daytime" and rows["research-batch"]["inForce"] is None
    )

    # The edge passes: no commit, no resync; the controller reconciles on its own.
    wait_for(
        "research/night-eval preempted at the edge",
        lambda: "research/night-eval" not in _claims(owned(env.admin)),
        timeout=(edge - dt.datetime.now(dt.UTC)).total_seconds() + 60,
    )
    assert dt.datetime.now(dt.UTC) >= edge
    assert env.head() == sha

    def moved() -> dict[str, Any] | None:
        status = env.sync().get("status") or {}
        rows = {(t["name"], t["pool"]): t for t in status.get("tenants") or ()}
        row = rows.get(("search-ranking", "inference-prod")) or {}
        return status if row.get("guaranteedCU") == 4000 else None

    status = wait_for("the CUSync figures of the day window", moved, 30)
    rows = {(t["name"], t["pool"]): t for t in status["tenants"]}
    assert rows[("search-ranking", "inference-prod")]["guaranteeWindow"] == "daytime"
    assert status["lastAppliedRevision"] == sha
    # Exactly what the preview predicted: the same admission and preemption rules.
    assert all(c["status"] == "Admitted" for c in predicted["claims"] if c["claim"] != "night-eval")
    assert _claims(owned(env.admin)) == before - {"research/night-eval"}
    reconciles = [line for line in replica.lines() if line.get("msg") == "reconcile"]
    assert any("window" in (line.get("why") or ()) for line in reconciles), reconciles
    samples = _samples(replica.metrics())
    assert (
        samples[("cu_guarantee_window_info", ("search-ranking", "inference-prod", "daytime"))] == 1
    )
    assert ("cu_guarantee_window_info", ("research-batch", "inference-prod", "")) in samples

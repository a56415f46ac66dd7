"""Issue 21 item 7 on the real control plane: when a node returns, one run raises the
namespace's ResourceQuota and creates the claim admitted onto the returned devices. Quota
admission reads the quota's ``status.hard``, which kube-controller-manager's quota controller
copies from ``spec.hard`` a moment later, so the create (and its pre-flight dry run, made
before the raise) was refused "exceeded quota … limited: …" and the run ended Degraded
(exit 3). Now the create waits, bounded by ``quota_wait``, for the raised quota.

To make the lag certain rather than a race, the quota controller is frozen (SIGSTOP to
kube-controller-manager) and the quota's ``status.hard`` is set to what a lagging controller
would still show (0), and the controller is thawed two seconds after the run starts: the run
must wait for it and converge in one go (without the wait it ended Degraded at once).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from live_fleet import Fleet, exists

from reconciler import devcluster
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.devcluster import drivers, rawapi
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.model import kinds

pytestmark = pytest.mark.integration

A100_NODES = ("a100-01", "a100-02", "a100-03", "a100-04")
CLAIM = kinds.of("ResourceClaim").object_path("distill-a100", "research")
QUOTA = kinds.of("ResourceQuota").object_path("cu-reconciler-limits", "research")
KCM = "kube-controller-manager"


def test_a_returning_node_raises_the_quota_and_creates_its_claim_in_one_run(
    fleet: Fleet, control_plane: devcluster.ControlPlane
) -> None:
    first = fleet.reconcile()
    assert first.reason is Reason.SUCCEEDED, first.message
    assert exists(fleet.admin, CLAIM)
    # Every A100 goes: the claim pinned to A100s is pending, so it and its quota share go.
    for node in A100_NODES:
        drivers.withdraw_node(fleet.admin, node)
    lost = fleet.reconcile()
    assert lost.reason is Reason.SUCCEEDED, lost.message
    assert not exists(fleet.admin, CLAIM)
    # The nodes return while the quota controller is frozen, its status still at 0.
    devsnapshot.load(fleet.admin, Path(fleet.repo.working_dir) / "observed" / "snapshot.yaml")
    pid = control_plane.pids[KCM]
    os.killpg(pid, signal.SIGSTOP)
    outcome: list[pipeline.Outcome] = []
    try:
        quota = rawapi.request(fleet.admin, "GET", QUOTA)
        stale = {k: "0" for k in quota["spec"]["hard"]}
        quota["status"] = {"hard": stale, "used": quota.get("status", {}).get("used", {})}
        rawapi.request(fleet.admin, "PUT", f"{QUOTA}/status", body=quota)
        start = time.monotonic()
        run = threading.Thread(target=lambda: outcome.append(fleet.reconcile()))
        run.start()
        time.sleep(2.0)
        assert run.is_alive(), f"the run did not wait: {outcome[0].message if outcome else ''}"
    finally:
        os.killpg(pid, signal.SIGCONT)
    run.join(timeout=120)
    assert outcome, "the run did not finish"
    assert outcome[0].reason is Reason.SUCCEEDED, outcome[0].message
    assert time.monotonic() - start >= 2.0
    assert exists(fleet.admin, CLAIM)

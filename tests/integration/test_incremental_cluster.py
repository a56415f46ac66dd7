"""The controller's memo (``pipeline.Memo``) on the real control plane: it saves work and
changes nothing.

Reconciles that share a memo, as the controller's do, against the real apiserver as the
reconciler's ServiceAccount: once converged, a reconcile reuses every object and every
in-sync pair; a hand edit by another field manager (a new resourceVersion) is taken back; a
lost node's slices and fence rule are pruned. After each, a reconcile *without* a memo finds
nothing to write: the memo led the cluster to exactly the state a full plan wants.
"""

from __future__ import annotations

import pytest
from live_fleet import Fleet

from reconciler import devcluster
from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller import pipeline
from reconciler.controller.reasons import Reason
from reconciler.devcluster import rawapi
from reconciler.diff import changeset, pair

pytestmark = pytest.mark.integration


def _converged_without_memo(fleet: Fleet) -> None:
    fresh = fleet.reconcile()
    assert fresh.reason is Reason.SUCCEEDED, fresh.message
    assert fresh.applied is not None and fresh.applied.writes == 0
    assert fresh.changes is not None and fresh.changes.in_sync


def test_a_shared_memo_reuses_work_and_converges_to_the_full_plan(fleet: Fleet) -> None:
    memo = pipeline.Memo()
    first = fleet.reconcile(memo=memo)
    assert first.reason is Reason.SUCCEEDED, first.message
    fleet.reconcile(memo=memo)  # the memo meets the live objects it wrote
    steady = fleet.reconcile(memo=memo)
    assert steady.reason is Reason.SUCCEEDED, steady.message
    assert steady.plan is not None and steady.applied is not None
    assert steady.applied.writes == 0
    assert memo.plan.slices.built == 0 and memo.plan.admission.admitted == 0
    assert memo.plan.kept == len(steady.plan.objects)
    # Every pair our stamp proves in sync is reused. The fence's admission policy is
    # compared in full each time: the apiserver records its keyed lists (variables,
    # matchConditions) item by item, which our stamp's field set does not cover.
    live = {pair.ObjectKey.of(o): o for o in steady.plan.live}
    stamped = [
        o
        for o in steady.plan.objects
        if (seen := live.get(pair.ObjectKey.of(o))) and changeset._stamped_in_sync(o, seen)
    ]
    assert memo.changes.reused == len(stamped) >= len(steady.plan.objects) - 2
    _converged_without_memo(fleet)

    # Another manager writes a label onto one of our slices: a new resourceVersion.
    slice_ = next(o for o in steady.plan.objects if o["kind"] == "ResourceSlice")
    edit = {
        "apiVersion": slice_["apiVersion"],
        "kind": "ResourceSlice",
        "metadata": {"name": slice_["metadata"]["name"], "labels": {"team": "hand-edit"}},
    }
    path = writers.path_of(slice_)
    rawapi.apply(fleet.admin, path, edit, field_manager="someone-else")
    taken = fleet.reconcile(memo=memo)
    assert taken.reason is Reason.SUCCEEDED, taken.message
    assert taken.applied is not None and taken.applied.writes == 1
    assert memo.changes.reused == len(stamped) - 1
    assert "team" not in (rawapi.request(fleet.admin, "GET", path)["metadata"].get("labels") or {})
    _converged_without_memo(fleet)

    fleet.reconcile(memo=memo)
    devcluster.withdraw_node(fleet.admin, "a100-04")
    lost = fleet.reconcile(memo=memo)
    assert lost.reason is Reason.SUCCEEDED, lost.message
    assert lost.applied is not None
    deleted = sorted(
        e.subject for e in lost.applied.entries if e.outcome is applying.Outcome.DELETED
    )
    assert deleted == ["DeviceTaintRule/cu-fence-nvidia-a100-04", "ResourceSlice/cu-a100-04-0"]
    assert memo.plan.slices.built == 0
    _converged_without_memo(fleet)

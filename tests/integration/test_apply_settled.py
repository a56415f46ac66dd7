"""An update the apiserver would store unchanged is dry-run but never written.

The diff can report a difference that the apiserver's defaulting erases; the pre-flight's dry
run then returns the live object as it is, and apply sends no write for it (the write would
change nothing). Proven against the real apiserver, with every request the writer sends
recorded by a pass-through Writer (a real KubeWriter underneath).
"""

from __future__ import annotations

from typing import Any

import pytest
from live_fleet import Fleet, Recording, owned

from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller.reasons import Reason
from reconciler.diff import changeset, pair
from reconciler.model import ownership

pytestmark = pytest.mark.integration


def _forced_updates(
    target: list[dict[str, Any]], live: list[dict[str, Any]]
) -> changeset.ChangeSet:
    """An ``update`` for every target object, as if the diff had seen a difference."""
    by_key = {pair.ObjectKey.of(o): o for o in live}
    return changeset.ChangeSet(
        tuple(
            changeset.ChangeSetEntry(
                key=pair.ObjectKey.of(o),
                subject=writers.subject_of(o),
                action=changeset.Action.UPDATE,
                before=by_key[pair.ObjectKey.of(o)],
                after=o,
                api_version=str(o["apiVersion"]),
            )
            for o in target
        )
    )


def test_an_update_the_apiserver_would_not_change_is_not_written(fleet: Fleet) -> None:
    outcome = fleet.reconcile()
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert outcome.plan is not None
    target = [dict(o) for o in outcome.plan.objects if o["kind"] == "DeviceClass"]
    assert target
    live = [o for o in owned(fleet.reconciler) if o["kind"] == "DeviceClass"]
    versions = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in live}
    # One class really differs: a label the live object lacks.
    changed = {**target[0], "metadata": {**target[0]["metadata"]}}
    changed["metadata"]["labels"] = {**changed["metadata"]["labels"], "cu.example/tier": "gold"}
    target[0] = changed

    writer = Recording(writers.KubeWriter(fleet.reconciler))
    result = applying.apply_all(
        writer,
        _forced_updates(target, live),
        target,
        live,
        source=live[0]["metadata"]["annotations"][ownership.SOURCE_ANNOTATION],
    )

    outcomes = {e.subject: e.outcome for e in result.entries}
    first = writers.subject_of(target[0])
    assert outcomes.pop(first) is applying.Outcome.CONFIGURED
    assert set(outcomes.values()) == {applying.Outcome.UNCHANGED}
    assert result.writes == 1
    real = [c for c in writer.calls if not c[2]]
    assert real == [("apply", first, False)], "no write request for the unchanged classes"
    dry = {c[1] for c in writer.calls if c[2]}
    assert dry == {writers.subject_of(o) for o in target}, "every update was dry-run first"
    after = {
        o["metadata"]["name"]: o["metadata"]["resourceVersion"]
        for o in owned(fleet.admin)
        if o["kind"] == "DeviceClass"
    }
    assert after[target[0]["metadata"]["name"]] != versions[target[0]["metadata"]["name"]]
    assert {n: v for n, v in after.items() if n != target[0]["metadata"]["name"]} == {
        n: v for n, v in versions.items() if n != target[0]["metadata"]["name"]
    }

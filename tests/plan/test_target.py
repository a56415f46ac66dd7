"""The plan as a whole: determinism, safety, immutable claims, orphans."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import cu_example as ex
import pytest

from reconciler import plan as planning
from reconciler.diff import changeset, render
from reconciler.model import observed as obs
from reconciler.model import state as st


def _bytes(result: planning.Plan) -> bytes:
    preview = render.Preview(changeset.compute(result.objects, result.live), result.report)
    return (json.dumps(result.objects, sort_keys=True) + render.json_text(preview)).encode()


def _shuffled(seed: int) -> tuple[st.DesiredState, obs.ObservedState]:
    rng = random.Random(seed)
    d = ex.desired()
    shuffled = st.DesiredState(
        revision=d.revision,
        settings=d.settings,
        policy=d.policy,
        adapters=tuple(rng.sample(d.adapters, len(d.adapters))),
        pools=tuple(rng.sample(d.pools, len(d.pools))),
        tenants=tuple(rng.sample(d.tenants, len(d.tenants))),
        claims=tuple(rng.sample(d.claims, len(d.claims))),
        factor_tables=d.factor_tables,
    )
    raw = ex.raw()
    raw = obs.RawObjects(
        nodes=tuple(rng.sample(raw.nodes, len(raw.nodes))),
        slices=tuple(rng.sample(raw.slices, len(raw.slices))),
    )
    return shuffled, obs.build(raw, shuffled.adapters, ex.DRIVER)


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed-{s}") for s in range(5)])
def test_same_inputs_in_any_order_give_byte_identical_output(seed: int) -> None:
    reference = _bytes(planning.plan(ex.desired(), ex.observed()))
    assert _bytes(planning.plan(*_shuffled(seed))) == reference


def test_a_second_plan_against_its_own_output_is_in_sync() -> None:
    first = planning.plan(ex.desired(), ex.observed())
    second = planning.plan(ex.desired(), ex.observed(owned=first.objects))
    assert changeset.compute(second.objects, second.live).in_sync


def test_a_new_revision_alone_changes_nothing() -> None:
    first = planning.plan(ex.desired(), ex.observed())
    later = planning.plan(ex.desired(revision="f" * 40), ex.observed(owned=first.objects))
    assert changeset.compute(later.objects, later.live).in_sync


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param({}, None, id="small-delete-allowed"),
        pytest.param({"safety": {"maxDeleteFraction": 0.01}}, "refused", id="over-fraction"),
    ],
)
def test_delete_fraction_guard(policy: dict[str, Any], expected: str | None) -> None:
    first = planning.plan(ex.desired(), ex.observed())
    fewer = tuple(c for c in ex.CLAIMS if c.metadata.name != "ads-a")
    result = planning.plan(
        ex.desired(claims=fewer, policy_doc=ex.policy(policy)), ex.observed(owned=first.objects)
    )
    assert (result.refusal or "").startswith(expected or "") and (
        (result.refusal is None) == (expected is None)
    )


def test_rendering_nothing_over_owned_objects_is_refused_unless_allow_empty() -> None:
    first = planning.plan(ex.desired(), ex.observed())
    empty = st.DesiredState(
        revision=st.Revision("e" * 40),
        settings=ex.settings(),
        policy=ex.policy({"safety": {"maxDeleteFraction": 1}}),
    )
    from reconciler.plan import safety

    assert safety.check(first.objects, [], empty.policy) is not None
    allow = ex.policy({"safety": {"maxDeleteFraction": 1, "allowEmpty": True}})
    assert safety.check(first.objects, [], allow) is None


def _claim_in_use(first: planning.Plan, name: str) -> dict[str, Any]:
    obj = next(o for o in first.objects if o["metadata"]["name"] == name)
    return {
        **copy.deepcopy(obj),
        "status": {"reservedFor": [{"resource": "pods", "name": "p", "uid": "1"}]},
    }


@pytest.mark.parametrize(
    ("allow", "action", "warning"),
    [
        pytest.param(False, "unchanged", "is in use by pods/p; it is kept", id="refused"),
        pytest.param(True, "replace", "REPLACING IN-USE ResourceClaim ads/ads-a", id="loud"),
    ],
)
def test_changed_claim_in_use_is_replaced_only_when_policy_allows(
    allow: bool, action: str, warning: str
) -> None:
    first = planning.plan(ex.desired(), ex.observed())
    used = _claim_in_use(first, "ads-a")
    changed = tuple(
        ex.claim("ads-a", {"tenant": "ads", "pool": "train", "cu": 90})
        if c.metadata.name == "ads-a"
        else c
        for c in ex.CLAIMS
    )
    policy = ex.policy({"preemption": {"allowInUse": allow}})
    observed = ex.observed(owned=first.objects, claims=[used])
    result = planning.plan(ex.desired(claims=changed, policy_doc=policy), observed)
    entries = {e.subject: e for e in changeset.compute(result.objects, result.live).entries}
    assert entries["ResourceClaim/ads/ads-a"].action == action
    assert any(warning in w for w in result.warnings)


def test_changed_claim_not_in_use_is_a_replace() -> None:
    first = planning.plan(ex.desired(), ex.observed())
    changed = tuple(
        ex.claim("ads-a", {"tenant": "ads", "pool": "train", "cu": 90})
        if c.metadata.name == "ads-a"
        else c
        for c in ex.CLAIMS
    )
    result = planning.plan(ex.desired(claims=changed), ex.observed(owned=first.objects))
    entries = {e.subject: e for e in changeset.compute(result.objects, result.live).entries}
    entry = entries["ResourceClaim/ads/ads-a"]
    assert entry.action is changeset.Action.REPLACE
    assert [c.path for c in entry.diff] == [
        "spec.devices.requests[name=cu-0].exactly.capacity.requests.cu"
    ]


def test_orphan_claim_in_use_is_kept() -> None:
    first = planning.plan(ex.desired(), ex.observed())
    used = _claim_in_use(first, "ads-a")
    fewer = tuple(c for c in ex.CLAIMS if c.metadata.name != "ads-a")
    result = planning.plan(
        ex.desired(claims=fewer), ex.observed(owned=first.objects, claims=[used])
    )
    assert any(o["metadata"]["name"] == "ads-a" for o in result.objects)
    assert changeset.compute(result.objects, result.live).count(changeset.Action.DELETE) == 0

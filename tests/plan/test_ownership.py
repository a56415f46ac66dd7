"""Ownership a tenant cannot assert (issue 18, items 7 and 8), in the pure plan.

With an inventory (a live cluster), an object is ours only by uid: a tenant's claims
wearing our label, source annotation, field manager or template label, or squatting a
generated claim's name, are never live to us (not pruned, not counted by the delete guard)
and are FenceBypass findings charged as used when they can reach a CU-managed device.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import cu_example as ex

from reconciler import plan as planning
from reconciler.diff import changeset
from reconciler.model import inventory, ownership
from reconciler.model import observed as obs

SOURCE = ex.settings().metadata.name
KEY = ex.settings().spec.fence.taint_key
MARKS: dict[str, Any] = {
    "labels": {**ownership.MANAGED_BY, ownership.CLAIM_LABEL: "x"},
    "annotations": {ownership.SOURCE_ANNOTATION: SOURCE},
    "managedFields": [{"manager": ownership.FIELD_MANAGER, "operation": "Apply"}],
}


def _live() -> tuple[list[dict[str, Any]], inventory.Inventory]:
    """What a first apply of the example leaves: every target object, with a uid we hold."""
    first = planning.plan(ex.desired(), ex.observed())
    live = []
    for i, obj in enumerate(first.objects):
        obj = copy.deepcopy(obj)
        obj["metadata"]["uid"] = f"ours-{i}"
        live.append(obj)
    uids = {o["metadata"]["uid"]: inventory.subject_of(o) for o in live}
    return live, inventory.Inventory(SOURCE, uids)


def _claim(ns: str, name: str, uid: str, spec: Any, **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "uid": uid, **copy.deepcopy(MARKS), **extra}
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim", "metadata": meta, **spec}


def _tolerating(held: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "gpu",
                        "exactly": {
                            "deviceClassName": "cu-vendor-nvidia",
                            "tolerations": [{"key": KEY, "operator": "Exists"}],
                        },
                    }
                ]
            }
        }
    }
    if held:
        result = {"request": "gpu", "driver": "gpu.nvidia.com", "pool": "n2", "device": held}
        spec["status"] = {"allocation": {"devices": {"results": [result]}}}
    return spec


def _observed(
    owned: list[dict[str, Any]], claims: list[dict[str, Any]], inv: inventory.Inventory | None
) -> obs.ObservedState:
    return dataclasses.replace(ex.observed(owned=owned, claims=claims), inventory=inv)


def test_tenant_objects_wearing_our_marks_are_never_ours_pruned_or_counted() -> None:
    live, inv = _live()
    tenant = [_claim("search", f"mine-{i}", f"t-{i}", _tolerating()) for i in range(40)]
    vendor = copy.deepcopy(ex.vendor_slice("n1", "nvidia", "H100", 2))
    vendor["metadata"].update(uid="v-1", **copy.deepcopy(MARKS))
    owned = [*live, *tenant, vendor]

    result = planning.plan(ex.desired(), _observed(owned, tenant, inv))
    assert result.refusal is None, "40 tenant claims do not make the delete guard refuse"
    changes = changeset.compute(result.objects, result.live)
    assert changes.in_sync, [e.subject for e in changes.entries if e.action != "unchanged"]
    assert {inventory.uid_of(o) for o in result.live} == set(inv.uids)
    bypass = {f.subject for f in result.report.findings if f.code is obs.FindingCode.FENCE_BYPASS}
    assert {f"ResourceClaim search/mine-{i}" for i in range(40)} <= bypass

    # The old rule (marks decide, still used for snapshots) would have pruned all 40 and
    # the vendor slice: the inventory is what changed.
    legacy = planning.plan(ex.desired(), _observed(owned, tenant, None))
    assert legacy.refusal is not None


def test_a_squatter_and_a_forged_template_label_are_findings_and_charged() -> None:
    live, inv = _live()
    live = [o for o in live if o["metadata"]["name"] != "search-a"]
    template = next(o for o in live if o["kind"] == "ResourceClaimTemplate")
    forged_label = {ownership.TEMPLATE_LABEL: "ads-infer", **ownership.MANAGED_BY}
    squatter = _claim("search", "search-a", "t-squat", _tolerating(held="gpu-0"))
    forged = _claim("ads", "ads-infer-pod-x", "t-forged", _tolerating(held="gpu-1"))
    forged["metadata"]["labels"] = forged_label
    genuine = _claim("ads", "ads-infer-pod-y", "kcm-1", {"spec": template["spec"]["spec"]})
    genuine["metadata"]["labels"] = forged_label
    claims = [squatter, forged, genuine]

    result = planning.plan(ex.desired(), _observed([*live, *claims], claims, inv))
    bypass = {f.subject for f in result.report.findings if f.code is obs.FindingCode.FENCE_BYPASS}
    assert bypass == {"ResourceClaim search/search-a", "ResourceClaim ads/ads-infer-pod-x"}
    train = next(p for p in result.report.pools if p.name == "train")
    assert train.unaccounted_milli > 0, "the two A100s they hold are charged as used"
    entries = changeset.compute(result.objects, result.live).entries
    [ours] = [e for e in entries if e.subject == "ResourceClaim/search/search-a"]
    assert ours.action == "create", "ours is still wanted; apply reports the name conflict"

    clean = planning.plan(ex.desired(), _observed(live, [], inv))
    assert next(p for p in clean.report.pools if p.name == "train").unaccounted_milli == 0


def test_inventory_owns_by_uid_and_resolves_pending_only_with_our_marks() -> None:
    ours = _claim("search", "a", "u-1", _tolerating())
    other = _claim("search", "b", "u-2", _tolerating())
    bare = {**other, "metadata": {"name": "b", "namespace": "search", "uid": "u-2"}}
    inv = inventory.Inventory(SOURCE, {"u-1": "ResourceClaim/search/a"})
    assert inv.owns(ours) and not inv.owns(other), "marks without the uid are nothing"
    pending = inventory.Inventory(SOURCE, {}, frozenset({"ResourceClaim/search/b"}))
    assert pending.owns(other) and not pending.owns(bare)

    after = pending.recorded(created=[ours], deleted=["u-9"], resolved=[other])
    assert after.uids == {"u-1": "ResourceClaim/search/a", "u-2": "ResourceClaim/search/b"}
    assert after.pending == frozenset()
    cm = inventory.config_map(after, "cu-system")
    assert cm["metadata"]["name"] == inventory.name(SOURCE)
    assert inventory.parse(cm["data"], SOURCE) == after
    assert inventory.parse(None, SOURCE) == inventory.Inventory(SOURCE, {}, stored=False)
    assert after.recorded([], ["u-1"]).uids == {"u-2": "ResourceClaim/search/b"}


def test_adopting_takes_only_what_wears_all_our_marks_and_absent_means_unstored() -> None:
    ours = _claim("search", "a", "u-1", _tolerating())
    label_only = _claim("search", "b", "u-2", _tolerating())
    del label_only["metadata"]["managedFields"]
    fresh = inventory.parse(None, SOURCE)
    assert not fresh.stored and not fresh.owns(ours)
    adopted = fresh.adopting([ours, label_only])
    assert adopted.owns(ours) and not adopted.owns(label_only)
    assert adopted.recorded([], [], resolved=[ours]).uids == {"u-1": "ResourceClaim/search/a"}

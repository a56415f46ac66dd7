"""Pairing, normalisation and actions, as a table of (target, live) → action."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.diff import changeset, normalize, pair
from reconciler.plan import managed

OWNED = {"app.kubernetes.io/managed-by": "cu-reconciler"}


def claim(cu: str = "10", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "ns", "labels": dict(OWNED), **meta},
        "spec": {
            "devices": {
                "requests": [
                    {
                        "name": "cu-0",
                        "exactly": {
                            "deviceClassName": "cu-p",
                            "capacity": {"requests": {"cu": cu}},
                        },
                    }
                ]
            }
        },
    }


def device_class(selector: str = "true", labels: Any = OWNED) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "DeviceClass",
        "metadata": {"name": "cu-p", "labels": dict(labels)},
        "spec": {"selectors": [{"cel": {"expression": selector}}]},
    }


def served(obj: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver hands back: identity, managedFields, status, defaults."""
    out = copy.deepcopy(obj)
    ours = {"manager": "cu-reconciler", "operation": "Apply", "fieldsV1": managed.fieldset_of(obj)}
    out["metadata"].update(
        uid="u",
        resourceVersion="7",
        creationTimestamp="2026-11-27T00:00:00Z",
        managedFields=[ours, {"manager": "x"}],
        annotations={"cu-reconciler.io/revision": "old"},
        finalizers=["resource.kubernetes.io/delete-protection"],
    )
    if out["kind"] == "ResourceClaim":
        exactly = out["spec"]["devices"]["requests"][0]["exactly"]
        exactly.update(allocationMode="ExactCount", count=1)
        out["status"] = {"reservedFor": []}
    return out


@pytest.mark.parametrize(
    ("target", "live", "action"),
    [
        pytest.param([device_class()], [], "create", id="create"),
        pytest.param([], [served(device_class())], "delete", id="delete-owned"),
        pytest.param([device_class()], [served(device_class())], "unchanged", id="defaults"),
        pytest.param([device_class("x")], [served(device_class())], "update", id="update"),
        pytest.param([claim()], [served(claim())], "unchanged", id="claim-defaults"),
        pytest.param([claim("20")], [served(claim())], "replace", id="claim-immutable"),
        pytest.param(
            [claim(labels={**OWNED, "x": "y"})], [served(claim())], "update", id="claim-labels"
        ),
    ],
)
def test_actions(target: list[Any], live: list[Any], action: str) -> None:
    [entry] = changeset.compute(target, live).entries
    assert entry.action == action


def test_never_deletes_what_we_do_not_own() -> None:
    foreign = served(device_class(labels={}))
    assert changeset.compute([], [foreign]).entries == ()


def test_field_diff_matches_named_list_items() -> None:
    old = {"devices": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]}
    new = {"devices": [{"name": "b", "v": 3}, {"name": "c", "v": 4}]}
    got = [(c.path, str(c.op)) for c in changeset.field_diff(old, new)]
    assert got == [
        ("devices[name=a]", "remove"),
        ("devices[name=b].v", "change"),
        ("devices[name=c]", "add"),
    ]


def test_pairing_is_keyed_by_group_kind_namespace_name() -> None:
    pairs = pair.pair([claim(), device_class()], [served(device_class())])
    assert [(p.key.subject, p.target is not None, p.live is not None) for p in pairs] == [
        ("DeviceClass/cu-p", True, True),
        ("ResourceClaim/ns/c", True, False),
    ]
    with pytest.raises(ValueError, match="twice"):
        pair.pair([claim(), claim()], [])


@pytest.mark.parametrize(
    "rule",
    [pytest.param(r, id=type(r).__name__) for r in normalize.DEFAULT_NORMALIZERS],
)
def test_each_normalizer_is_a_one_method_plugin(rule: normalize.Normalizer) -> None:
    obj = served(claim())
    rule.normalize(obj, claim())
    assert isinstance(obj, dict)


def test_fields_another_manager_set_are_drift_except_the_allow_list() -> None:
    live = served(device_class())
    live["metadata"]["labels"] = {**OWNED, "app.kubernetes.io/instance": "argo-app"}
    live["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "app:x/y"
    argo = {
        "manager": "argocd-controller",
        "operation": "Update",
        "fieldsV1": {
            "f:metadata": {
                "f:labels": {"f:app.kubernetes.io/instance": {}},
                "f:annotations": {"f:argocd.argoproj.io/tracking-id": {}},
            }
        },
    }
    live["metadata"]["managedFields"].append(argo)
    [entry] = changeset.compute([device_class()], [live]).entries
    assert entry.action == "unchanged", entry.diff

    live["spec"]["selectors"].append({"cel": {"expression": "false"}})
    live["metadata"]["managedFields"].append(
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "fieldsV1": {"f:spec": {"f:selectors": {}}},
        }
    )
    [entry] = changeset.compute([device_class()], [live]).entries
    assert entry.action == "update"
    assert entry.foreign == ("kubectl-edit (Update): spec.selectors",)


def test_a_replacement_is_the_target_with_the_live_identity_and_the_allow_list() -> None:
    target = device_class()
    live = served(target)
    live["metadata"]["uid"] = "u-1"
    live["metadata"]["resourceVersion"] = "42"
    live["metadata"]["labels"] = {
        **live["metadata"].get("labels", {}),
        "app.kubernetes.io/instance": "cu",
        "x": "hand-edit",
    }
    live["metadata"]["annotations"] = {"argocd.argoproj.io/tracking-id": "t", "y": "z"}
    live["metadata"]["finalizers"] = ["resource.kubernetes.io/delete-protection", "hand/made"]
    live["spec"] = {"selectors": [], "config": [{"opaque": {}}]}
    put = managed.replacement(live, target)
    meta = put["metadata"]
    assert (meta["uid"], meta["resourceVersion"]) == ("u-1", "42"), "preconditions"
    assert put["spec"] == target["spec"], "the hand-edited spec is gone whole"
    assert meta["labels"] == {**target["metadata"]["labels"], "app.kubernetes.io/instance": "cu"}
    assert meta["annotations"] == {
        **(target["metadata"].get("annotations") or {}),
        "argocd.argoproj.io/tracking-id": "t",
    }
    assert meta["finalizers"] == ["resource.kubernetes.io/delete-protection"]
    assert "status" not in put


def test_take_over_moves_foreign_fields_to_us_and_keeps_the_allow_list() -> None:
    live = served(device_class())
    live["metadata"]["managedFields"] = [
        {"manager": "cu-reconciler", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        {
            "manager": "argocd-controller",
            "operation": "Update",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app.kubernetes.io/instance": {}, "f:x": {}}},
                "f:spec": {"f:config": {}},
            },
        },
        {"manager": "kube-scheduler", "operation": "Update", "subresource": "status"},
    ]
    ours, argo, status = managed.take_over(live)
    assert ours["manager"] == "cu-reconciler" and ours["operation"] == "Apply"
    assert ours["fieldsV1"] == {"f:spec": {"f:config": {}}, "f:metadata": {"f:labels": {"f:x": {}}}}
    assert argo["fieldsV1"] == {"f:metadata": {"f:labels": {"f:app.kubernetes.io/instance": {}}}}
    assert status["subresource"] == "status"

"""The fence's admission policy: identities stay data, CU classes are matched by our name
prefix, and the policy never depends on the pools (issue 18, items 1, 4 and 5).

Every expression is compiled and evaluated with cel-python, on the request shapes the
apiserver gives a ValidatingAdmissionPolicy."""

from __future__ import annotations

from typing import Any

import celpy
import cu_example as ex
import pytest
from celpy import celtypes

from reconciler import plan as planning
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.plan import cel, fence

HOSTILE = [
    pytest.param("x'] || true || 'a' in ['b", id="single-quote-injection"),
    pytest.param('x"] || true || "a" in ["b', id="double-quote-injection"),
    pytest.param('a\\" || true || "', id="backslash-quote"),
    pytest.param("alice\\", id="trailing-backslash"),
    pytest.param("a\nb\r\t\x00\x7f", id="control-characters"),
    pytest.param("\u0430rgocd\u202e\u200b", id="unicode-bmp"),
    pytest.param("😀 \U0010ffff", id="unicode-astral"),
    pytest.param("o'brien", id="apostrophe"),
]


def _to_cel(value: Any) -> Any:
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): _to_cel(v) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([_to_cel(v) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    return celtypes.StringType(value)


def _run(expression: str, activation: dict[str, Any]) -> Any:
    env = celpy.Environment()
    program = env.program(env.compile(expression))
    result = program.evaluate({k: _to_cel(v) for k, v in activation.items()})
    return bool(result) if isinstance(result, celtypes.BoolType) else result


def _settings(*admitted: str) -> docs.ClusterSettingsSpec:
    # model_copy skips validation on purpose: the planner must be safe even for values
    # that validation would refuse (the escaping is a wall of its own).
    return ex.settings().spec.model_copy(update={"admitted_identities": list(admitted)})


def _policy(settings: docs.ClusterSettingsSpec) -> dict[str, Any]:
    policy, _ = fence.admission_policy(settings, {}, {})
    return policy


def _applies_to(policy: dict[str, Any], username: str) -> bool:
    (condition,) = policy["spec"]["matchConditions"]
    return bool(_run(condition["expression"], {"request": {"userInfo": {"username": username}}}))


@pytest.mark.parametrize("text", [*HOSTILE, "", "plain", "cu-"])
def test_a_cel_string_literal_evaluates_to_exactly_its_text(text: str) -> None:
    assert _run(cel.string(text), {}) == text
    assert _run(f"{cel.string(text)} in {cel.strings(['other', text])}", {}) is True


def test_a_lone_surrogate_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        cel.string("a\ud800")


@pytest.mark.parametrize("identity", HOSTILE)
def test_an_admitted_identity_is_data_not_code(identity: str) -> None:
    policy = _policy(_settings(identity))
    assert _applies_to(policy, "system:serviceaccount:research:tenant"), "tenants are fenced"
    assert _applies_to(policy, "a"), "the injected `'a' in ['b` stays inside the string"
    assert not _applies_to(policy, identity), "exactly the listed name is admitted"
    assert not _applies_to(policy, "system:serviceaccount:cu-system:cu-reconciler")
    assert not _applies_to(policy, "system:kube-controller-manager")


def test_the_taint_key_is_escaped_too() -> None:
    hostile = "k') || true || ('"
    settings = _settings()
    settings = settings.model_copy(
        update={"fence": settings.fence.model_copy(update={"taint_key": hostile})}
    )
    tolerations = _policy(settings)["spec"]["validations"][0]["expression"]
    other = {"exactly": {"deviceClassName": "gpu", "tolerations": [{"key": "other"}]}}
    fenced = {"exactly": {"deviceClassName": "gpu", "tolerations": [{"key": hostile}]}}
    assert _run(tolerations, {"variables": {"requests": [other]}}) is True
    assert _run(tolerations, {"variables": {"requests": [fenced]}}) is False


def _request(cls: str, *, first_available: bool = False) -> dict[str, Any]:
    if first_available:
        return {
            "firstAvailable": [{"deviceClassName": "gpu.example.com"}, {"deviceClassName": cls}]
        }
    return {"exactly": {"deviceClassName": cls}}


@pytest.mark.parametrize(
    ("device_class", "allowed"),
    [
        pytest.param("cu-train", False, id="existing-pool"),
        pytest.param("cu-not-yet-a-pool", False, id="future-pool"),
        pytest.param("cu-pruned-pool", False, id="pruned-pool"),
        pytest.param("cu-vendor-nvidia", False, id="our-vendor-class"),
        pytest.param("gpu.nvidia.com", True, id="vendor-class"),
        pytest.param("acu-train", True, id="prefix-only-at-start"),
    ],
)
@pytest.mark.parametrize("first_available", [False, True], ids=["exactly", "firstAvailable"])
def test_cu_classes_are_matched_by_name_prefix(
    device_class: str, allowed: bool, first_available: bool
) -> None:
    classes_rule = _policy(_settings())["spec"]["validations"][1]["expression"]
    requests = [
        _request("gpu.example.com"),
        _request(device_class, first_available=first_available),
    ]
    assert _run(classes_rule, {"variables": {"requests": requests}}) is allowed


def test_every_policy_expression_compiles_with_hostile_settings() -> None:
    policy = _policy(_settings(*(p.values[0] for p in HOSTILE)))
    expressions = [
        *(c["expression"] for c in policy["spec"]["matchConditions"]),
        *(v["expression"] for v in policy["spec"]["variables"]),
        *(v["expression"] for v in policy["spec"]["validations"]),
    ]
    env = celpy.Environment()
    for expression in expressions:
        env.compile(expression)


def _fence_objects(result: planning.Plan) -> list[dict[str, Any]]:
    return [
        o
        for o in result.objects
        if o["kind"] in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    ]


def test_the_policy_does_not_change_when_pools_are_added_or_removed() -> None:
    """Engine mode prunes classes and slices after the policy is updated (issue 18, item 5):
    a policy listing pools would narrow first. This one is the same for every pool set."""
    every = planning.plan(ex.desired(), ex.observed())
    claims = [c for c in ex.CLAIMS if c.spec.pool != "infer"]
    fewer = planning.plan(
        ex.desired(pools=[p for p in ex.POOLS if p.metadata.name != "infer"], claims=claims),
        ex.observed(),
    )
    none = planning.plan(ex.desired(pools=(), claims=()), ex.observed())
    assert {o["kind"] for o in every.objects if o["metadata"]["name"] == "cu-infer"}, "precondition"
    assert not [o for o in fewer.objects if o["metadata"]["name"] == "cu-infer"]
    assert _fence_objects(every) == _fence_objects(fewer) == _fence_objects(none)
    assert len(_fence_objects(every)) == 2


def _tenant_claim(name: str, device_class: str, labels: dict[str, str] | None = None) -> Any:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": "lab", "labels": labels or {}},
        "spec": {
            "devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": device_class}}]}
        },
    }


def test_a_pre_existing_tenant_claim_naming_a_cu_class_is_a_finding() -> None:
    claims = [
        _tenant_claim("early", "cu-not-yet"),
        _tenant_claim("vendor", "gpu.nvidia.com"),
    ]
    result = planning.plan(ex.desired(), ex.observed(claims=claims))
    found = [f for f in result.report.findings if f.code is obs.FindingCode.FENCE_BYPASS]
    assert [f.subject for f in found] == ["ResourceClaim lab/early"]
    assert "cu-not-yet" in found[0].message and "kubectl delete resourceclaim -n lab early" in (
        found[0].message
    )

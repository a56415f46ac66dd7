"""Every CEL expression the planner generates compiles and evaluates (cel-python), and the
planner's device matching equals CEL's on the example fleet, typed attributes included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import celpy
import cu_example as ex
import pytest
from celpy import celtypes
from celpy.evaluation import CELEvalError

from reconciler import plan as planning
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.plan import admission, claims, classes


def _expressions(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "expression" and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _expressions(value)


def _cel_value(value: Any) -> Any:
    """A DRA attribute value ({string|int|bool|version: …}) as its typed CEL value."""
    if "int" in value:
        return celtypes.IntType(int(value["int"]))
    if "bool" in value:
        return celtypes.BoolType(bool(value["bool"]))
    return celtypes.StringType(str(value.get("string", value.get("version", ""))))


def _device(driver: str, device: dict[str, Any]) -> celtypes.MapType:
    """The ``device`` variable DRA gives a selector: driver and attributes by domain."""
    by_domain: dict[str, dict[str, Any]] = {}
    for name, value in (device.get("attributes") or {}).items():
        domain, _, short = name.rpartition("/")
        by_domain.setdefault(domain or driver, {})[short] = _cel_value(value)
    return celtypes.MapType(
        {
            celtypes.StringType("driver"): celtypes.StringType(driver),
            celtypes.StringType("attributes"): celtypes.MapType(
                {
                    celtypes.StringType(d): celtypes.MapType(
                        {celtypes.StringType(k): v for k, v in attrs.items()}
                    )
                    for d, attrs in by_domain.items()
                }
            ),
        }
    )


def _compile(expression: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(expression))


def test_every_generated_expression_compiles() -> None:
    constrained = ex.claim(
        "picky",
        {
            "tenant": "search",
            "pool": "train",
            "cu": 50,
            "constraints": {
                "minMemory": "64Gi",
                "vendors": {"allow": ["nvidia", "biren"], "deny": ["hygon"]},
                "models": {"deny": ["BR104"]},
            },
        },
    )
    result = planning.plan(ex.desired(claims=(*ex.CLAIMS, constrained)), ex.observed())
    expressions = sorted({e for o in result.objects for e in _expressions(o)})
    assert len(expressions) >= 9
    for expression in expressions:
        _compile(expression)  # raises CELParseError on a malformed expression


@pytest.mark.parametrize(
    "constraints",
    [
        {},
        {"minMemory": "64Gi"},
        {"minMemory": "80Gi"},
        {"vendors": {"allow": ["biren"]}},
        {"vendors": {"deny": ["nvidia"]}},
        {"models": {"allow": ["H100-SXM5-80GB"]}},
        {"models": {"deny": ["A100-SXM4-80GB", "BR104"]}},
    ],
)
def test_planner_matching_equals_cel_on_the_example_fleet(constraints: dict[str, Any]) -> None:
    claim = ex.claim(
        "c", {"tenant": "search", "pool": "train", "cu": 10, "constraints": constraints}
    )
    result = planning.plan(ex.desired(), ex.observed())
    observed = ex.observed()
    by_cu_name = {
        (s["spec"]["nodeName"], d["name"]): d
        for s in result.objects
        if s["kind"] == "ResourceSlice"
        for d in s["spec"]["devices"]
    }
    programs = [_compile(s["cel"]["expression"]) for s in claims.selectors(claim, ex.DRIVER)]
    compared = 0
    for device in observed.devices:
        cu_device = next(
            (
                d
                for (node, _), d in by_cu_name.items()
                if node == device.node
                and d["attributes"].get("uuid", {}).get("string") == device.uuid
            ),
            None,
        )
        if cu_device is None:
            continue
        activation = {"device": _device(ex.DRIVER, cu_device)}
        cel = all(bool(p.evaluate(activation)) for p in programs)
        assert cel == admission.eligible(claim, device), (device.id, constraints)
        compared += 1
    assert compared >= 6


_ATTRIBUTES: list[dict[str, Any]] = [
    {"string": "0"},
    {"int": 0},
    {"int": 1},
    {"bool": True},
    {"string": "true"},
    {"version": "1.2.3"},
    {"string": "1.2.3"},
    {"string": "gpu"},
]


def _typed(value: Any) -> Any:
    if "version" in value:
        # DRA gives version attributes to CEL as semver values, never equal to a string.
        return celtypes.MapType({celtypes.StringType("semver"): celtypes.StringType("x")})
    return _cel_value(value)


@pytest.mark.parametrize("wanted", ["0", 0, 1, True, "true", "1.2.3", "gpu"])
def test_vendor_filter_matches_like_cel_with_typed_attributes(wanted: Any) -> None:
    """An int attribute ``0`` is not ``"0"``, a version is not a string, true is not "true":
    the planner's adapter filter decides as the vendor DeviceClass's CEL does."""
    adapter = docs.VendorAdapter.model_validate(
        {
            **{k: v for k, v in ex.ADAPTERS[0].items() if k != "spec"},
            "apiVersion": docs.API_VERSION,
            "kind": "VendorAdapter",
            "spec": {**ex.ADAPTERS[0]["spec"], "deviceFilter": {"index": wanted}},
        }
    )
    program = _compile(classes.vendor_selector(adapter))
    for attribute in _ATTRIBUTES:
        device = celtypes.MapType(
            {
                celtypes.StringType("driver"): celtypes.StringType("gpu.nvidia.com"),
                celtypes.StringType("attributes"): celtypes.MapType(
                    {
                        celtypes.StringType("gpu.nvidia.com"): celtypes.MapType(
                            {celtypes.StringType("index"): _typed(attribute)}
                        )
                    }
                ),
            }
        )
        # A CEL error (comparing different types) selects nothing, like a false.
        try:
            result = program.evaluate({"device": device})
        except CELEvalError:
            result = celtypes.BoolType(False)
        cel = isinstance(result, celtypes.BoolType) and bool(result)
        if ("bool" in attribute) != isinstance(wanted, bool) and not isinstance(wanted, str):
            # cel-python compares BoolType and IntType as Python does (True == 1); the CEL
            # spec (and cel-go in Kubernetes) never equates values of different types.
            cel = False
        assert cel == obs.filter_matches(attribute, wanted), (wanted, attribute)

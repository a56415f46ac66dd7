"""Property: every valid document round-trips through YAML and satisfies the committed schema."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.model import documents as docs
from reconciler.model import schemas
from reconciler.validate import schema as schema_check
from reconciler.validate import syntax

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
VALIDATORS = {
    kind: jsonschema.Draft202012Validator(
        json.loads((SCHEMAS / schemas.file_name(kind)).read_text())
    )
    for kind in docs.DOCUMENT_KINDS
}

names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,14}[a-z0-9])?\Z")
models = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
classes = st.sampled_from(["prefill", "decode", "embedding"])
quantities = st.sampled_from(["80Gi", "32768Mi", "64G", "1500m", "48Gi", "1Ti"])
label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
labels = st.dictionaries(names, label_text, max_size=3)
cu = st.integers(1, 2_000_000).map(lambda m: m / 1000)
cu0 = st.integers(0, 2_000_000).map(lambda m: m / 1000)


def metadata() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": names}, optional={"labels": labels, "annotations": labels}
    )


def doc(kind: str, spec: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just(docs.API_VERSION),
            "kind": st.just(kind),
            "metadata": metadata(),
            "spec": spec,
        }
    )


def mix() -> st.SearchStrategy[dict[str, float]]:
    return st.sampled_from(
        [
            {},
            {"decode": 1.0},
            {"prefill": 0.3, "decode": 0.7},
            {"prefill": 0.25, "decode": 0.5, "embedding": 0.25},
        ]
    )


selectors = st.fixed_dictionaries(
    {},
    optional={
        "vendors": st.lists(names, max_size=3),
        "models": st.lists(models, max_size=3),
        "minMemory": quantities,
        "nodeSelector": st.fixed_dictionaries(
            {"matchLabels": st.dictionaries(names, names, max_size=2)},
            optional={
                "matchExpressions": st.lists(
                    st.one_of(
                        st.fixed_dictionaries(
                            {
                                "key": names,
                                "operator": st.sampled_from(["In", "NotIn"]),
                                "values": st.lists(names, min_size=1, max_size=2),
                            }
                        ),
                        st.fixed_dictionaries(
                            {"key": names, "operator": st.sampled_from(["Exists", "DoesNotExist"])}
                        ),
                    ),
                    max_size=2,
                )
            },
        ),
    },
)
sharing = st.one_of(
    st.just({"mode": "Whole"}),
    st.fixed_dictionaries({"mode": st.just("Fractional"), "minStep": cu}),
)
pools = doc(
    "CUPool",
    st.fixed_dictionaries(
        {"selector": selectors},
        optional={"sharing": sharing, "headroomPercent": st.integers(0, 90), "workloadMix": mix()},
    ),
)


@st.composite
def quota(draw: st.DrawFn) -> dict[str, Any]:
    guaranteed = draw(cu0)
    out: dict[str, Any] = {"pool": draw(names), "guaranteed": guaranteed}
    if draw(st.booleans()):
        out["limit"] = guaranteed + draw(cu0)
    return out


tenants = doc(
    "Tenant",
    st.fixed_dictionaries(
        {
            "namespaces": st.lists(names, min_size=1, max_size=3),
            "priority": st.integers(0, 1_000_000),
        },
        optional={
            "quotas": st.lists(quota(), max_size=3),
            "mayBorrow": st.booleans(),
            "preemptible": st.booleans(),
        },
    ),
)
name_filter = st.fixed_dictionaries(
    {}, optional={"allow": st.lists(names, max_size=2), "deny": st.lists(names, max_size=2)}
)
claims = doc(
    "CUClaim",
    st.fixed_dictionaries(
        {"tenant": names, "pool": names, "cu": cu},
        optional={
            "namespace": names,
            "count": st.integers(1, 32),
            "workloadClass": classes,
            "form": st.sampled_from(["ResourceClaim", "ResourceClaimTemplate"]),
            "constraints": st.fixed_dictionaries(
                {},
                optional={"minMemory": quantities, "vendors": name_filter, "models": name_filter},
            ),
        },
    ),
)


@st.composite
def factor(draw: st.DrawFn) -> dict[str, Any]:
    value = draw(st.floats(0.01, 100, allow_nan=False).map(lambda v: round(v, 4)))
    out: dict[str, Any] = {"deviceModel": draw(models), "value": value}
    if draw(st.booleans()):
        out["workloadClass"] = draw(classes)
    if draw(st.booleans()):
        out.update(
            source="learned",
            samples=draw(st.integers(0, 10**6)),
            interval=[round(value * 0.9, 6), round(value * 1.1, 6)],
            recordsRevision=draw(st.from_regex(r"\A[0-9a-f]{40}\Z")),
        )
    else:
        out["reference"] = draw(label_text)
    return out


factor_tables = doc(
    "FactorTable",
    st.fixed_dictionaries(
        {"referenceModel": models}, optional={"factors": st.lists(factor(), max_size=4)}
    ),
)
field_source = st.one_of(
    st.fixed_dictionaries(
        {"attribute": st.sampled_from(["productName", "gpu.x.com/model"])},
        optional={"values": st.dictionaries(label_text, models, max_size=2)},
    ),
    st.fixed_dictionaries(
        {"capacity": st.just("memory")}, optional={"unit": st.sampled_from(["MiB", "GiB", "bytes"])}
    ),
)
adapters = doc(
    "VendorAdapter",
    st.fixed_dictionaries(
        {
            "vendor": names,
            "driver": st.just("gpu.example.com"),
            "mapping": st.fixed_dictionaries(
                {"model": field_source, "memory": field_source, "uuid": field_source},
                optional={
                    "health": st.fixed_dictionaries(
                        {
                            "attribute": st.just("health"),
                            "healthyValues": st.lists(
                                st.one_of(st.booleans(), names), min_size=1, max_size=2
                            ),
                        }
                    ),
                    "pcieRoot": field_source,
                },
            ),
        },
        optional={"deviceFilter": st.dictionaries(st.just("type"), names, max_size=1)},
    ),
)
policies = doc(
    "Policy",
    st.fixed_dictionaries(
        {},
        optional={
            "preemption": st.fixed_dictionaries(
                {}, optional={"enabled": st.booleans(), "allowInUse": st.booleans()}
            ),
            "fairness": st.fixed_dictionaries(
                {},
                optional={
                    "borrowing": st.sampled_from(["PriorityOrder", "ProportionalToGuarantee"])
                },
            ),
            "factors": st.fixed_dictionaries(
                {},
                optional={
                    "minSamples": st.integers(1, 10**5),
                    "confidence": st.sampled_from([0.9, 0.95, 0.99]),
                    "workloadMix": mix(),
                },
            ),
            "safety": st.fixed_dictionaries(
                {},
                optional={
                    "maxDeleteFraction": st.sampled_from([0, 0.1, 1]),
                    "allowEmpty": st.booleans(),
                },
            ),
        },
    ),
)
settings_docs = doc(
    "ClusterSettings",
    st.fixed_dictionaries(
        {
            "driverName": st.just("cu.cu-reconciler.io"),
            "reference": st.fixed_dictionaries(
                {"deviceModel": models},
                optional={"workloadClass": classes, "cuPerDevice": st.integers(1, 1000)},
            ),
            "managedNamespaces": st.lists(names, min_size=1, max_size=4),
        },
        optional={
            "layout": st.fixed_dictionaries(
                {},
                optional={
                    "include": st.lists(st.sampled_from(["**/*.yaml", "cu/**/*.yml"]), max_size=2),
                    "snapshot": st.one_of(st.none(), st.just("observed/x.yaml")),
                },
            )
        },
    ),
)

any_document = st.one_of(pools, tenants, claims, factor_tables, adapters, policies, settings_docs)


def _yaml(data: dict[str, Any]) -> bytes:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    # Block style, as people write it. (The pure emitter writes `{a: :0}` in flow style,
    # which the libyaml-based C parser rejects: a known emitter/parser disagreement.)
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue().encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_document)
def test_valid_documents_round_trip_and_match_the_committed_schema(data: dict[str, Any]) -> None:
    model = docs.DOCUMENT_KINDS[data["kind"]]
    original = model.model_validate(data, by_alias=True, by_name=False)
    dumped = original.model_dump(mode="json", by_alias=True)
    VALIDATORS[data["kind"]].validate(dumped)
    VALIDATORS[data["kind"]].validate(data)
    loaded, problems = syntax.load("doc.yaml", _yaml(dumped))
    assert problems == []
    again, errors = schema_check.check(loaded[0])
    assert errors == []
    assert again == original

"""JSON Schemas for every document kind, generated from the pydantic models (pure).

The models are the single definition; ``schemas/*.json`` are generated from them by
``cuctl schemas schemas/`` and committed, so editors validate as people type (the
``# yaml-language-server: $schema=...`` modeline, see docs/desired-state.md) and a test fails
when the committed files are stale. This module only computes; writing files is the CLI's job.

One deliberate difference from the models: a float ``multipleOf`` (CU amounts are multiples
of 0.001) is dropped from the JSON Schema and recorded in ``$comment``. Binary floating point
makes ``0.3 / 0.001`` = 299.99999999999994, so JSON Schema validators (ajv in editors,
python-jsonschema) would reject valid amounts; pydantic checks it with a tolerance and
``cuctl validate`` reports it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from reconciler.model import documents as docs

SCHEMA_BASE = f"https://{docs.API_GROUP}/schemas/{docs.API_VERSION.partition('/')[2]}/"


class _Generator(GenerateJsonSchema):
    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        out = super().float_schema(schema)
        step = out.pop("multipleOf", None)
        if step is not None:
            out["$comment"] = f"a multiple of {step} (at most three decimals)"
        return out


def file_name(kind: str) -> str:
    return f"{kind.lower()}.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema (draft 2020-12) per kind, keyed by kind, with $id, title, description."""
    from reconciler.model import catalogue  # side inputs of `cuctl recommend`, not state

    kinds: dict[str, type[Any]] = {**docs.DOCUMENT_KINDS, **catalogue.SIDE_INPUTS}
    out: dict[str, dict[str, Any]] = {}
    for kind, model in kinds.items():
        body = model.model_json_schema(
            by_alias=True, mode="validation", schema_generator=_Generator
        )
        doc = (model.__doc__ or kind).strip()
        out[kind] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": SCHEMA_BASE + file_name(kind),
            **body,
            "title": kind,
            "description": f"{doc} ({docs.API_VERSION}).",
        }
    return out


def rendered() -> dict[str, str]:
    """File name → file text, exactly as committed under ``schemas/``."""
    return {
        file_name(kind): json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for kind, schema in json_schemas().items()
    }

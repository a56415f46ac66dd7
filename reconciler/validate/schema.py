"""Schema validation: one loaded document in, a typed document or located diagnostics out.

The pydantic models in :mod:`reconciler.model.documents` are the schema (the JSON Schemas are
generated from them). Each pydantic error is mapped to the exact line and column of the
offending node through its ``loc``, and to a stable code by its error type, so a reviewer
sees ``pools/prod.yaml:12:17: CU207: ...`` instead of a stack trace.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import pydantic

from reconciler.model import catalogue, codes
from reconciler.model import diagnostics as diag
from reconciler.model import documents as docs
from reconciler.validate import syntax

_WRONG_TYPE_SUFFIXES = ("_type", "_parsing")
_INVALID_VALUE_TYPES = frozenset(
    {
        "string_pattern_mismatch",
        "string_too_short",
        "string_too_long",
        "too_short",
        "too_long",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
        "literal_error",
        "enum",
        "finite_number",
        "bool_parsing",
    }
)


def check(loaded: syntax.LoadedDocument) -> tuple[docs.Document | None, list[diag.Diagnostic]]:
    """Validate one document against its kind; never raises for bad input."""
    data = loaded.data
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        missing = [f for f in ("apiVersion", "kind") if not isinstance(data.get(f), str)]
        return None, [
            _at(
                loaded,
                (missing[0],),
                codes.Code.MISSING_TYPE,
                f"document has no {' or '.join(missing)} string; every document starts with "
                f"'apiVersion: {docs.API_VERSION}' and a kind ({', '.join(docs.DOCUMENT_KINDS)})",
            )
        ]
    if api_version != docs.API_VERSION:
        group = api_version.partition("/")[0]
        hint = (
            f"this version is not supported; use {docs.API_VERSION}"
            if group == docs.API_GROUP
            else "this is not a cu-reconciler document; exclude its path in "
            "ClusterSettings.spec.layout.exclude"
        )
        return None, [
            _at(
                loaded,
                ("apiVersion",),
                codes.Code.UNSUPPORTED_API_VERSION,
                f"apiVersion {api_version!r}: {hint}",
            )
        ]
    side = catalogue.SIDE_INPUTS.get(kind)
    if side is not None:  # `cuctl recommend`'s inputs: checked here, never desired state
        try:
            side.model_validate(data, by_alias=True, by_name=False)
        except pydantic.ValidationError as exc:
            return None, [_from_error(loaded, side, err) for err in exc.errors(include_url=False)]
        return None, []
    model = docs.DOCUMENT_KINDS.get(kind)
    if model is None:
        return None, [
            _at(
                loaded,
                ("kind",),
                codes.Code.UNKNOWN_KIND,
                f"unknown kind {kind!r}{_did_you_mean(kind, docs.DOCUMENT_KINDS)}; "
                f"known kinds: {', '.join(docs.DOCUMENT_KINDS)}",
            )
        ]
    try:
        # by_name=False: YAML must use the camelCase field names the schemas publish, even
        # though Python code may construct models by their snake_case names.
        document: docs.Document = model.model_validate(  # type: ignore[assignment]
            data, by_alias=True, by_name=False
        )
    except pydantic.ValidationError as exc:
        return None, [_from_error(loaded, model, err) for err in exc.errors(include_url=False)]
    return document, []


def _at(
    loaded: syntax.LoadedDocument,
    path: syntax.Path,
    code: codes.Code,
    message: str,
    *,
    key: bool = False,
) -> diag.Diagnostic:
    pos = loaded.locate(path, key=key)
    return diag.Diagnostic(loaded.file, pos.line, pos.column, code, message)


def _dotted(loc: Iterable[Any], loaded: syntax.LoadedDocument) -> str:
    """``spec.quotas[0].guaranteed`` from a pydantic loc, dropping union-member tags."""
    out = ""
    path: syntax.Path = ()
    for element in loc:
        candidate = (*path, element)
        if not loaded.has(candidate) and element != "[key]":
            # A member tag (``str``, ``function-after[...]``) or a missing field name.
            if isinstance(element, str) and not _is_tag(element):
                out += f".{element}" if out else element
            continue
        path = candidate
        if isinstance(element, int):
            out += f"[{element}]"
        elif element != "[key]":
            out += f".{element}" if out else str(element)
    return out or "document"


def _is_tag(element: str) -> bool:
    return "[" in element or element in {"str", "int", "float", "bool", "none", "list", "dict"}


def _from_error(
    loaded: syntax.LoadedDocument, model: type[pydantic.BaseModel], err: Any
) -> diag.Diagnostic:
    loc = tuple(err["loc"])
    kind = err["type"]
    where = _dotted(loc, loaded)
    msg = str(err["msg"])
    if kind == "missing":
        name = str(loc[-1]) if loc else "field"
        parent = where.rpartition(".")[0] or "the document"
        return _at(
            loaded,
            loc[:-1],
            codes.Code.MISSING_FIELD,
            f"{where}: required field {name!r} is missing; add it under {parent}",
            key=True,
        )
    if kind == "extra_forbidden":
        name = str(loc[-1])
        known = _known_fields(model, loc[:-1])
        return _at(
            loaded,
            loc,
            codes.Code.UNKNOWN_FIELD,
            f"{where}: unknown field {name!r}{_did_you_mean(name, known)}; "
            "remove it or fix the spelling",
            key=True,
        )
    if kind in ("value_error", "assertion_error"):
        text = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return _at(loaded, loc, codes.Code.RULE_VIOLATED, f"{where}: {text}", key=True)
    if kind in _INVALID_VALUE_TYPES:
        return _at(
            loaded,
            loc,
            codes.Code.INVALID_VALUE,
            f"{where}: {_explain(msg, err)}; got {_show(err.get('input'))}",
        )
    if kind.endswith(_WRONG_TYPE_SUFFIXES) or kind in ("model_type", "model_attributes_type"):
        return _at(
            loaded,
            loc,
            codes.Code.WRONG_TYPE,
            f"{where}: {msg}; got {_show(err.get('input'))}",
        )
    return _at(loaded, loc, codes.Code.INVALID_VALUE, f"{where}: {msg}")


def _explain(msg: str, err: Any) -> str:
    if err["type"] == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        if pattern == docs.DNS_LABEL:
            return "must be a DNS label (lowercase letters, digits and '-', at most 63)"
        if pattern == docs.MODEL_NAME:
            return "must be a model name (letters, digits, '.', '_', '-')"
        if pattern == docs.QUALIFIED_NAME:
            return "must be an attribute name (optionally 'domain/' then an identifier)"
        if "Ki|Mi|Gi" in pattern:
            return "must be a Kubernetes quantity such as 80Gi, 64G or 32768Mi"
    return msg


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_fields(model: type[pydantic.BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The YAML field names allowed at ``loc`` (for 'did you mean')."""
    current: Any = model
    for element in loc:
        if isinstance(element, int) or not _is_model(current):
            current = _inner_model(current)
            if isinstance(element, int):
                continue
        if not _is_model(current):
            return []
        field = _field_by_alias(current, str(element))
        if field is None:
            return []
        current = _inner_model(field.annotation)
    if not _is_model(current):
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _field_by_alias(model: type[pydantic.BaseModel], alias: str) -> Any:
    for name, f in model.model_fields.items():
        if alias in (name, f.alias):
            return f
    return None


def _inner_model(tp: Any) -> Any:
    """The model inside ``list[X]``, ``X | None``, or X itself."""
    if _is_model(tp):
        return tp
    for arg in getattr(tp, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None

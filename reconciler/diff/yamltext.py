"""A small deterministic YAML emitter for previews and ``cuctl render``.

Why not a YAML library: output must be byte-identical across runs and versions, fast for
thousands of objects, and only ever holds JSON values. Strings that YAML could read as
something else (numbers, booleans, null, YAML 1.1 yes/no/on/off) are double-quoted.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@-]*$")
_KEYWORDS = frozenset(
    {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "nan", "inf"}
)


def scalar(value: Any) -> str:
    if type(value) is str:
        return _text(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return _text(str(value))


@functools.lru_cache(maxsize=1 << 14)
def _text(text: str) -> str:
    """A string scalar; cached because keys and most values repeat across objects (a
    5,000-claim preview emits about 200,000 scalars, a few thousand distinct)."""
    if _PLAIN.match(text) and text.lower() not in _KEYWORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _is_mapping(value: Any) -> bool:
    """``dict`` first: the ABC check for ``Mapping`` is several times slower."""
    return type(value) is dict or isinstance(value, Mapping)


_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})
"""Exact types emitted by :func:`scalar` without any container check (subclasses take the
general path, with the same result)."""


def _lines(value: Any, indent: str, sort_keys: bool, out: list[str]) -> None:
    if _is_mapping(value):
        keys = sorted(value) if sort_keys else list(value)
        for key in keys:
            item = value[key]
            if type(item) in _SCALAR_TYPES:
                out.append(f"{indent}{scalar(key)}: {scalar(item)}")
            elif isinstance(item, list):
                if item:
                    out.append(f"{indent}{scalar(key)}:")
                    _lines(item, indent, sort_keys, out)
                else:
                    out.append(f"{indent}{scalar(key)}: []")
            elif _is_mapping(item):
                if item:
                    out.append(f"{indent}{scalar(key)}:")
                    _lines(item, indent + "  ", sort_keys, out)
                else:
                    out.append(f"{indent}{scalar(key)}: {{}}")
            else:
                out.append(f"{indent}{scalar(key)}: {scalar(item)}")
        return
    if isinstance(value, list):
        for item in value:
            if (isinstance(item, list) or _is_mapping(item)) and item:
                sub: list[str] = []
                _lines(item, indent + "  ", sort_keys, sub)
                first = sub[0][len(indent) + 2 :]
                out.append(f"{indent}- {first}")
                out.extend(sub[1:])
            else:
                out.append(f"{indent}- {_empty_or_scalar(item)}")
        return
    out.append(f"{indent}{scalar(value)}")


def _empty_or_scalar(value: Any) -> str:
    if _is_mapping(value):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def dump(value: Any, *, sort_keys: bool = False) -> str:
    out: list[str] = []
    _lines(value, "", sort_keys, out)
    return "\n".join(out) + "\n"


def dump_all(values: Iterable[Any], *, sort_keys: bool = False) -> str:
    return "".join("---\n" + dump(v, sort_keys=sort_keys) for v in values)

"""A small deterministic YAML emitter for previews and ``cuctl render``.

Why not a YAML library: output must be byte-identical across runs and versions, fast for
thousands of objects, and only ever holds JSON values. Strings that YAML could read as
something else (numbers, booleans, null, YAML 1.1 yes/no/on/off) are double-quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@-]*$")
_KEYWORDS = frozenset(
    {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "nan", "inf"}
)


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _KEYWORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _lines(value: Any, indent: str, sort_keys: bool, out: list[str]) -> None:
    if isinstance(value, Mapping):
        keys = sorted(value) if sort_keys else list(value)
        for key in keys:
            item = value[key]
            if isinstance(item, Mapping) and item:
                out.append(f"{indent}{scalar(key)}:")
                _lines(item, indent + "  ", sort_keys, out)
            elif isinstance(item, list) and item:
                out.append(f"{indent}{scalar(key)}:")
                _lines(item, indent, sort_keys, out)
            else:
                out.append(f"{indent}{scalar(key)}: {_empty_or_scalar(item)}")
        return
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping | list) and item:
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
    if isinstance(value, Mapping):
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

"""CEL literals: the one way a value from the desired state enters a generated expression.

Every string the planner puts into CEL (DeviceClass selectors, claim selectors, the fence's
admission policy) goes through :func:`string`, so a value is always data, never code: a
quote, backslash, newline or ``'] || true || ['`` in a name stays inside its literal.
Validation refuses most such values earlier (``reconciler.model.identities``, the DNS and
qualified-name patterns); this is the second wall, and it is total on its own.

The literal is double-quoted. Printable ASCII other than ``"`` and ``\\`` is written as is;
everything else is a ``\\u``/``\\U`` escape of its code point, which the CEL grammar defines
for string literals (cel-spec ``langdef.md``, "String and Bytes Values"). Lone surrogates
are not Unicode scalar values and cannot be written in CEL at all: they raise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

__all__ = ["literal", "string", "strings"]


def _escape(char: str) -> str:
    code = ord(char)
    if char in '"\\':
        return "\\" + char
    if 0x20 <= code < 0x7F:
        return char
    if 0xD800 <= code <= 0xDFFF:
        raise ValueError(f"U+{code:04X} is a lone surrogate, not a character CEL can hold")
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


@functools.lru_cache(maxsize=4096)
def string(text: str) -> str:
    """``text`` as a CEL string literal that evaluates to exactly ``text``. Cached: every
    claim repeats the same attribute names and values (half a million characters escaped
    one by one at 20,000 claims); a lone surrogate raises and is not cached."""
    return '"' + "".join(_escape(c) for c in text) + '"'


def strings(items: Iterable[str]) -> str:
    """A CEL list literal of strings: ``["a", "b"]``."""
    return "[" + ", ".join(string(i) for i in items) + "]"


def literal(value: str | int | bool) -> str:
    """A typed CEL literal: ``"gpu"``, ``0``, ``true`` (``0 == "0"`` is a CEL type error)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return string(value)

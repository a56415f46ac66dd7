"""Parsed JSON that shares its repeated parts, so 25,000 objects fit in a controller's memory.

Parsed JSON costs about six times its text (measured on the generated fleet's objects): every
``{"string": "inference"}`` attribute, every ``{"value": "25"}`` capacity and every key is a
new object, tens of thousands of times over. :class:`Sharer` gives equal small maps of
scalars one shared instance and interns short strings. On the objects a 1,000-node fleet
stores, that cut their size from 75 to 31 MB (tracemalloc).

Sharing is safe only because nothing modifies an object once it is read or planned: the
diff's normalisers copy the maps they edit, and apply copies what it sends (the same rule
that lets plans share objects, docs/architecture.md "Incremental planning").

The table of shared maps would otherwise keep every map it ever saw: :meth:`Sharer.share`
counts, and once the table holds twice the maps it held after the last rebuild, the owner
rebuilds it from the objects it still holds (:meth:`Sharer.rebuild`), which keeps their
instances and drops the rest.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SHORT = 64
"""Strings up to this length are interned (names, uids, attribute values), longer ones not
(CEL expressions, certificates): CPython frees an interned string when nothing uses it."""
LEAF_KEYS = 2
"""Maps of at most this many scalar values are shared (``{"string": …}``, ``{"value": …}``)."""
MIN_TABLE = 4096


def _scalar(value: Any) -> bool:
    kind = type(value)
    return kind is str or kind is int or kind is bool or kind is float or value is None


@dataclass
class Sharer:
    """One table of shared small maps; strings go to the interpreter's own table."""

    _maps: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    _rebuilt_at: int = MIN_TABLE

    def share(self, value: Any) -> Any:
        """``value`` with its small maps shared and its short strings interned (a new object;
        ``value`` itself is not modified)."""
        kind = type(value)
        if kind is dict:
            out = {sys.intern(k) if type(k) is str else k: self.share(v) for k, v in value.items()}
            if len(out) <= LEAF_KEYS and all(_scalar(v) for v in out.values()):
                # The type is part of the key: True == 1 == 1.0, but they are not the same JSON.
                key = tuple((k, type(v), v) for k, v in out.items())
                return self._maps.setdefault(key, out)
            return out
        if kind is list:
            return [self.share(v) for v in value]
        if kind is str and len(value) <= SHORT:
            return sys.intern(value)
        return value

    def crowded(self) -> bool:
        """Whether the table has doubled since the last rebuild (time to call it)."""
        return len(self._maps) > 2 * self._rebuilt_at

    def rebuild(self, held: Iterable[Any]) -> None:
        """Keep only the shared maps that ``held`` (every object still kept) uses."""
        self._maps = {}
        for value in held:
            self._collect(value)
        self._rebuilt_at = max(MIN_TABLE, len(self._maps))

    def _collect(self, value: Any) -> None:
        kind = type(value)
        if kind is dict:
            if len(value) <= LEAF_KEYS and all(_scalar(v) for v in value.values()):
                self._maps.setdefault(tuple((k, type(v), v) for k, v in value.items()), value)
                return
            for v in value.values():
                self._collect(v)
        elif kind is list:
            for v in value:
                self._collect(v)

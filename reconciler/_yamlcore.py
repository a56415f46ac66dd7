"""The YAML 1.2 core schema on ruamel.yaml's C parser: fast, and no constructor ever runs.

Shared by :mod:`reconciler.validate.syntax` (desired state: every limit, every position) and
:mod:`reconciler.observe.snapshot` (kubectl output, plain data). Why a module of its own:
both layers load YAML that arrives from outside, and both need the three things here:

- :func:`yaml` composes nodes with the C parser of ``ruamel.yaml.clib`` (the pure-Python
  parser when it is absent) and a resolver answering from a cache: ruamel's own resolver
  re-derives the YAML version for every scalar, about half of the C parser's load time;
- :func:`scalar_of` constructs core-schema scalars ourselves (timestamps stay strings, as
  the Kubernetes API serves them), so no tag can reach a constructor;
- :func:`too_deep` refuses nesting the C parser cannot survive *before* parsing: it
  recurses without a guard and kills the process (segmentation fault) somewhere past
  20,000 levels, whether written as flow brackets ``[[[`` or compact block sequences
  ``- - -``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import ruamel.yaml
import ruamel.yaml.nodes
import ruamel.yaml.resolver
import ruamel.yaml.tag

CORE = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (f"{CORE}{t}" for t in ("str", "int", "float", "bool", "null"))
MAP, SEQ, TIMESTAMP, MERGE = (f"{CORE}{t}" for t in ("map", "seq", "timestamp", "merge"))
ALLOWED_TAGS = frozenset({STR, INT, FLOAT, BOOL, NULL, MAP, SEQ, TIMESTAMP})


def _core_resolvers() -> dict[str | None, list[tuple[str, Any]]]:
    """ruamel's YAML 1.2 implicit resolvers, by first character (None = any)."""
    table: dict[str | None, list[tuple[str, Any]]] = {}  # patterns are ruamel LazyEvals
    for versions, tag_, regexp, first in ruamel.yaml.resolver.implicit_resolvers:
        if (1, 2) not in versions:
            continue
        for ch in first if first is not None else [None]:
            table.setdefault(ch, []).append((tag_, regexp))
    return table


_RESOLVERS = _core_resolvers()
_TAGS: dict[str, ruamel.yaml.tag.Tag] = {}
TAG_NAMES: dict[int, str] = {}
"""id() of each cached Tag object → its name: a resolved node's tag, looked up without str()."""


def tag(name: str) -> ruamel.yaml.tag.Tag:
    if name not in _TAGS:
        _TAGS[name] = ruamel.yaml.tag.Tag(suffix=name)
        TAG_NAMES[id(_TAGS[name])] = name
    return _TAGS[name]


@functools.lru_cache(maxsize=1 << 16)
def plain_tag(value: str) -> ruamel.yaml.tag.Tag:
    """The YAML 1.2 core-schema tag of a plain scalar; same answers as ruamel, cached."""
    first = value[0] if value else ""
    for tag_, regexp in (*_RESOLVERS.get(first, ()), *_RESOLVERS.get(None, ())):
        if regexp.match(value):
            return tag(tag_)
    return tag(STR)


_STR_TAG, _SEQ_TAG, _MAP_TAG = tag(STR), tag(SEQ), tag(MAP)


class CoreResolver(ruamel.yaml.resolver.VersionedResolver):
    """Documents here are always YAML 1.2: answer from a cache (see the module docstring)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ruamel.yaml.nodes.ScalarNode:
            return plain_tag(value) if implicit[0] else _STR_TAG
        return _SEQ_TAG if kind is ruamel.yaml.nodes.SequenceNode else _MAP_TAG

    # Path resolvers (``add_path_resolver``) are never registered here: the composer's two
    # calls per node need not look for them.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


def yaml() -> ruamel.yaml.YAML:
    """A composer on the C parser with :class:`CoreResolver`; duplicates are left to callers."""
    loader = ruamel.yaml.YAML(typ="safe", pure=False)
    loader.Resolver = CoreResolver
    loader.allow_duplicate_keys = True
    return loader


def tag_name(node: ruamel.yaml.nodes.Node) -> str:
    """The node's tag as a string; resolved tags are our cached objects, looked up by id."""
    name = TAG_NAMES.get(id(node.ctag))
    return name if name is not None else str(node.tag)


# -- nesting, checked before the C parser sees the text -------------------------------------

NESTING_LIMIT = 1000
"""Far above any real document (validation allows 64 levels), far below the crash."""
_FLOW_BRACKETS = re.compile(r"[\[\]{}]")


@functools.lru_cache(maxsize=4)
def _deep_block(limit: int) -> re.Pattern[str]:
    """A line whose indentation plus compact ``- `` / ``? `` indicators is longer than
    ``limit / 2``: each block nesting level costs at least one column of that prefix (two
    levels at most per column, with indentless sequences), so shorter prefixes are safe.
    Only long prefixes match, so a normal file costs one cheap scan and no match objects."""
    return re.compile(rf"^(?:[ \t]|[-?](?=[ \t])){{{limit // 2 + 1},}}", re.MULTILINE)


def too_deep(text: str, limit: int = NESTING_LIMIT) -> tuple[int, int] | None:
    """(line, column) where nesting may exceed ``limit``, or None; an upper bound, cheap.

    Brackets inside strings are counted too, so it can only over-count.
    """
    if text.count("[") + text.count("{") >= limit:
        depth = 0
        for match in _FLOW_BRACKETS.finditer(text):
            depth += 1 if match.group() in "[{" else -1
            if depth > limit:
                return _position(text, match.start())
    deep = _deep_block(limit).search(text)
    return _position(text, deep.start()) if deep is not None else None


def _position(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


# -- core-schema scalars ----------------------------------------------------------------------

_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def scalar_of(value: str, tag_: str) -> Any:
    """Construct a core-schema scalar (YAML 1.2). Timestamps stay strings."""
    if tag_ in (STR, TIMESTAMP):
        return value
    if tag_ == NULL:
        return None
    if tag_ == BOOL:
        if value in _BOOLS:
            return _BOOLS[value]
        return value.lower() in ("yes", "on", "y")
    if tag_ == INT:
        return _int(value)
    if tag_ == FLOAT:
        return _float(value)
    return value


def _int(value: str) -> int | str:
    text = value.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    try:
        if text.startswith(("0x", "0X")):
            return sign * int(text[2:], 16)
        if text.startswith(("0o", "0O")):
            return sign * int(text[2:], 8)
        if text.startswith(("0b", "0B")):
            return sign * int(text[2:], 2)
        return sign * int(text)
    except ValueError:
        return value


def _float(value: str) -> float | str:
    text = value.replace("_", "").lower()
    if text in (".inf", "+.inf"):
        return math.inf
    if text == "-.inf":
        return -math.inf
    if text == ".nan":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return value

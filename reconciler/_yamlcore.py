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
import ruamel.yaml.error
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


# -- node budget, checked before the composer builds a node graph ------------------------------

_SEPARATORS = ",:-[{?\n"


def node_bound(text: str) -> int:
    """An upper bound on the nodes composing ``text`` yields, from one cheap scan.

    Every node but a document's root starts after an indicator (``,`` ``:`` ``-`` ``[``
    ``{`` ``?``) or a line break, and each of those starts at most two (a flow mapping's
    ``{a, b}`` adds an implicit null value per key). Quoted text, comments and timestamps
    only make the bound looser, never lower, so a text under it is certainly small enough.
    """
    return 2 * (sum(text.count(ch) for ch in _SEPARATORS) + 1)  # counts allocate nothing


def count_nodes(text: str, stop_after: int) -> int:
    """The exact number of nodes composing ``text`` would create, counted from parser events
    (nothing is kept, so memory stays flat); stops counting once past ``stop_after``.

    Raises ruamel's YAMLError for text that does not parse (the composer would too).
    """
    import ruamel.yaml.events as events

    counted = 0
    node_events = (events.ScalarEvent, events.SequenceStartEvent, events.MappingStartEvent)
    for event in yaml().parse(text):
        if isinstance(event, node_events):
            counted += 1
            if counted > stop_after:
                break
    return counted


class Refused(Exception):
    """A document :func:`plain_documents` will not build: where, and why (a full sentence)."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def plain_documents(
    text: str, *, max_nodes: int = 200_000, max_depth: int = 64, max_documents: int = 1000
) -> list[Any]:
    """Every non-empty document of ``text`` as plain data, under the loader's limits.

    For readers that need values but no positions (the history walk, past commits): the
    same bounds as validation's loader (nesting refused before parsing, ``max_nodes`` for the
    whole text *counting every alias expansion*, depth, core-schema tags only), so an old
    commit can cost no more memory or stack than a new one. Raises :class:`Refused`; never
    a RecursionError, a constructor's exception or a parser traceback.
    """
    where = too_deep(text)
    if where is not None:
        raise Refused(*where, f"nested more than {NESTING_LIMIT} levels")
    if node_bound(text) > max_nodes:
        try:
            over = count_nodes(text, max_nodes) > max_nodes
        except ruamel.yaml.error.YAMLError as exc:
            raise Refused(*_mark(exc), f"not valid YAML: {_first_line(exc)}") from exc
        if over:
            raise Refused(1, 1, f"more than {max_nodes} YAML nodes")
    builder = _PlainBuilder(max_nodes, max_depth)
    out: list[Any] = []
    try:
        for index, node in enumerate(yaml().compose_all(text)):
            if index >= max_documents:
                raise Refused(*_start(node), f"more than {max_documents} documents")
            if node is None or (
                type(node) is ruamel.yaml.nodes.ScalarNode
                and tag_name(node) == NULL
                and not node.value
            ):
                continue
            out.append(builder.build(node, 0, ()))
    except ruamel.yaml.error.YAMLError as exc:
        raise Refused(*_mark(exc), f"not valid YAML: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise Refused(1, 1, "nested too deeply to parse") from exc
    return out


def _start(node: ruamel.yaml.nodes.Node | None) -> tuple[int, int]:
    if node is None:
        return 1, 1
    return node.start_mark.line + 1, node.start_mark.column + 1


def _mark(exc: BaseException) -> tuple[int, int]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _PlainBuilder:
    """Nodes → plain data; every node built counts, so aliases cannot multiply memory."""

    __slots__ = ("max_depth", "max_nodes", "nodes")

    def __init__(self, max_nodes: int, max_depth: int) -> None:
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.nodes = 0

    def build(self, node: ruamel.yaml.nodes.Node, depth: int, stack: tuple[int, ...]) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise Refused(
                *_start(node), f"expands to more than {self.max_nodes} nodes (aliases counted)"
            )
        name = tag_name(node)
        if name not in ALLOWED_TAGS:
            raise Refused(*_start(node), f"tag {name} is not allowed")
        if type(node) is ruamel.yaml.nodes.ScalarNode:
            return scalar_of(node.value, name)
        if depth >= self.max_depth:
            raise Refused(*_start(node), f"nested deeper than {self.max_depth} levels")
        if id(node) in stack:
            raise Refused(*_start(node), "an alias refers to a node that contains it")
        inner = (*stack, id(node))
        if isinstance(node, ruamel.yaml.nodes.SequenceNode):
            return [self.build(child, depth + 1, inner) for child in node.value]
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not ruamel.yaml.nodes.ScalarNode:
                raise Refused(*_start(key_node), "a mapping key must be a plain scalar")
            key = self.build(key_node, depth + 1, inner)
            if isinstance(key, float) and math.isnan(key):
                key = "nan"
            out[key] = self.build(value_node, depth + 1, inner)
        return out

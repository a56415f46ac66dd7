"""Safe YAML loading with a position for every node: bytes in, plain data and locations out.

Why composing instead of loading: ruamel.yaml's *compose* step builds the node graph without
constructing any object, so no tag can run a constructor, and every node keeps its line and
column. We then build plain Python values ourselves, enforcing the limits below on the way.
Each limit answers one known attack or accident on a file that arrives in a pull request:

=====================  ==========================================================  ========
limit                   what it stops                                               code
=====================  ==========================================================  ========
size                    a huge file exhausting memory before parsing                CU102
strict UTF-8            mojibake, UTF-16 files (named), binary files                CU103
tags                    ``!!python/object`` and friends; only core-schema tags      CU104
alias expansion         "billion laughs": aliases expanding into millions of nodes  CU105
recursive aliases       ``&a [*a]``: infinite structures                            CU106
duplicate keys          the later key silently winning in most parsers             CU107
documents per file      a stream of a million empty ``---`` documents               CU108
nesting depth           deep ``[[[[...]]]]`` blowing the stack                      CU109
complex keys            ``? [a, b]`` keys that cannot be field names                CU112
merge keys              ``<<:`` merges whose precedence confuses reviewers         CU115
revision node budget    many files (or one flow list) composing into GBs of nodes   CU117
=====================  ==========================================================  ========

The C parser of ``ruamel.yaml.clib`` is used when it is installed (about 4x faster); the
pure-Python parser otherwise. Both produce the same nodes and marks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

import ruamel.yaml
import ruamel.yaml.error
import ruamel.yaml.nodes
import ruamel.yaml.resolver
import ruamel.yaml.tag

from reconciler import _yamlcore
from reconciler.model import codes
from reconciler.model import diagnostics as diag

Path = tuple[str | int, ...]

# The YAML 1.2 core schema, the cached resolver and the nesting pre-check are shared with
# reconciler.observe.snapshot (reconciler/_yamlcore.py).
_CORE, _STR, _NULL, _MAP, _SEQ, _MERGE = (
    _yamlcore.CORE,
    _yamlcore.STR,
    _yamlcore.NULL,
    _yamlcore.MAP,
    _yamlcore.SEQ,
    _yamlcore.MERGE,
)
_ALLOWED_TAGS = _yamlcore.ALLOWED_TAGS
_yaml = _yamlcore.yaml
_tag_name = _yamlcore.tag_name
_scalar_of = _yamlcore.scalar_of
_TAG_NAMES = _yamlcore.TAG_NAMES


@dataclass(frozen=True, slots=True)
class Limits:
    """Loading limits; the defaults suit hand-written desired-state files."""

    max_file_bytes: int = 1 * 2**20
    max_documents: int = 1000
    max_nodes: int = 200_000
    """Nodes per document after alias expansion (a 1 MiB file holds far fewer)."""
    max_alias_nodes: int = 10_000
    """Nodes per document reached a second time through an alias."""
    max_depth: int = 64


DOCUMENT_LIMITS = Limits()
SNAPSHOT_LIMITS = Limits(max_file_bytes=24 * 2**20, max_documents=1, max_nodes=20_000_000)
"""The committed snapshot: 24 MiB holds about 50,000 devices (200 nodes / 1,520 devices are
0.7 MiB) in kubectl's block style. What bounds its memory is the revision's node budget
(:data:`NODE_BUDGET`), not its size: the same bytes written as one flow list are many more
nodes."""

NODE_BUDGET = 750_000
"""YAML nodes one revision may expand to, over every file and every path, aliases expanded.

Validation keeps every composed node (for positions) and the data built from it: 270 bytes
per node measured for a flow list of numbers, 440 for block mappings (BENCHMARKS.md, "Memory
bounded by the commit"), so the budget is at most about 330 MB on top of the process: with
the bytes budget (reconciler.source.tree.MAX_TOTAL_BYTES) under the controller's 512Mi.
It is checked *before* a file is composed: a cheap upper bound from one scan of the text,
and an exact count from the parser's events (nothing kept) only when that bound is over
what is left."""


@dataclass(slots=True)
class Budget:
    """What is left of :data:`NODE_BUDGET` while one revision loads; shared by every file."""

    limit: int = NODE_BUDGET
    left: int = NODE_BUDGET
    exhausted: bool = False
    """Set once a file was refused for it: the caller stops loading (one fatal error)."""

    def refuse(self, file: str, line: int, column: int, needed: str) -> diag.Diagnostic:
        self.exhausted = True
        used = self.limit - self.left
        return diag.Diagnostic(
            file,
            line,
            column,
            codes.Code.REVISION_TOO_LARGE,
            f"this file needs {needed} YAML nodes, but only {self.left} of the revision's "
            f"{self.limit}-node budget are left ({used} used by the files before it; every "
            "file and every path counted, aliases expanded). The revision is refused so "
            "memory stays bounded: remove or split large files, drop aliases, or exclude "
            "files in ClusterSettings.spec.layout.exclude",
        )


class Position(NamedTuple):
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    """One YAML document as plain data, plus its node graph for positions.

    Positions are looked up lazily, by walking the composed nodes, only when something is
    reported: recording the position of every node up front cost more than parsing.
    """

    file: str
    index: int
    data: Any
    root: ruamel.yaml.nodes.Node = field(repr=False, compare=False)

    @property
    def start(self) -> Position:
        return _pos(self.root)

    def has(self, path: Path) -> bool:
        """Whether every element of ``path`` names a node."""
        node: ruamel.yaml.nodes.Node | None = self.root
        for element in path:
            node = None if node is None else _child(node, element)[1]
        return node is not None

    def locate(self, path: Path, *, key: bool = False) -> Position:
        """The position of the deepest existing node along ``path``.

        Path elements that are not nodes (pydantic's union-member tags) are skipped, so a
        validation error's ``loc`` finds the node it is about, or its nearest ancestor.
        With ``key=True`` the position of the mapping key is preferred (unknown fields).
        """
        node = self.root
        key_node: ruamel.yaml.nodes.Node | None = None
        for element in path:
            found_key, found = _child(node, element)
            if found is not None:
                node, key_node = found, found_key
        if key and key_node is not None:
            return _pos(key_node)
        return _pos(node)


def _child(
    node: ruamel.yaml.nodes.Node, element: str | int
) -> tuple[ruamel.yaml.nodes.Node | None, ruamel.yaml.nodes.Node | None]:
    """(key node, value node) of ``element`` under ``node``; (None, None) if absent."""
    if isinstance(node, ruamel.yaml.nodes.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ruamel.yaml.nodes.ScalarNode) and _scalar(key_node) == element:
                return key_node, value_node
    elif (
        isinstance(node, ruamel.yaml.nodes.SequenceNode)
        and isinstance(element, int)
        and not isinstance(element, bool)
        and 0 <= element < len(node.value)
    ):
        return None, node.value[element]
    return None, None


class _Abort(Exception):
    """Stops loading one file; carries the diagnostic."""

    def __init__(self, diagnostic: diag.Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def load(
    file: str, content: bytes, limits: Limits = DOCUMENT_LIMITS, budget: Budget | None = None
) -> tuple[list[LoadedDocument], list[diag.Diagnostic]]:
    """Load every document of one file. Never raises for bad input: problems are diagnostics.

    A file with any loading error yields no documents at all: half a file is not a safe
    basis for deciding what to delete. With a ``budget``, the file's nodes are checked
    against what is left of it before composing, and charged to it after.
    """
    try:
        text = _decode(file, content, limits)
        if budget is None:
            return _compose(file, text, limits, None), []
        _check_budget(file, text, budget)
        return _compose(file, text, limits, budget), []
    except _Abort as abort:
        return [], [abort.diagnostic]


def _check_budget(file: str, text: str, budget: Budget) -> None:
    """Refuse ``text`` before composing it when its nodes cannot fit what is left."""
    if _yamlcore.node_bound(text) <= budget.left:
        return
    try:
        needed = _yamlcore.count_nodes(text, budget.left)
    except ruamel.yaml.error.YAMLError:
        return  # composing reports the syntax error, at its position
    if needed > budget.left:
        raise _Abort(budget.refuse(file, 1, 1, f"more than {budget.left}"))


def _decode(file: str, content: bytes, limits: Limits) -> str:
    if len(content) > limits.max_file_bytes:
        raise _Abort(
            diag.Diagnostic(
                file,
                1,
                1,
                codes.Code.FILE_TOO_LARGE,
                f"file is {len(content)} bytes, over the {limits.max_file_bytes}-byte limit; "
                "split it into several files",
            )
        )
    if content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    encoding = other_encoding(content)
    if encoding is not None:
        raise _Abort(
            diag.Diagnostic(
                file,
                1,
                1,
                codes.Code.NOT_UTF8,
                f"file is {encoding}, not UTF-8; save it as UTF-8 "
                f"(iconv -f {encoding.split(' ')[0]} -t UTF-8)",
            )
        )
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = content[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise _Abort(
            diag.Diagnostic(
                file,
                line,
                column,
                codes.Code.NOT_UTF8,
                f"byte 0x{content[exc.start]:02x} is not valid UTF-8; save the file as UTF-8",
            )
        ) from exc


_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32LE (byte-order mark FF FE 00 00)"),
    (b"\x00\x00\xfe\xff", "UTF-32BE (byte-order mark 00 00 FE FF)"),
    (b"\xff\xfe", "UTF-16LE (byte-order mark FF FE)"),
    (b"\xfe\xff", "UTF-16BE (byte-order mark FE FF)"),
)


def other_encoding(content: bytes) -> str | None:
    """The encoding a file that is not UTF-8 is most likely in, when that is clear: a UTF-16
    or UTF-32 byte-order mark, or (no mark) ASCII text with a NUL after every character,
    which is what Windows editors and PowerShell's ``>`` write."""
    for bom, name in _BOMS:
        if content.startswith(bom):
            return name
    head = content[:512]
    if len(head) >= 4 and head.count(0) * 3 >= len(head):
        if head[1::2].count(0) * 4 >= len(head[1::2]) * 3:
            return "UTF-16LE (no byte-order mark)"
        if head[0::2].count(0) * 4 >= len(head[0::2]) * 3:
            return "UTF-16BE (no byte-order mark)"
    return None


def _check_flow_depth(file: str, text: str) -> None:
    """Refuse nesting the C parser cannot survive, before parsing (flow or block style)."""
    where = _yamlcore.too_deep(text)
    if where is not None:
        raise _Abort(
            diag.Diagnostic(
                file,
                *where,
                codes.Code.TOO_DEEP,
                f"nested more than {_yamlcore.NESTING_LIMIT} levels; flatten the structure",
            )
        )


def _compose(file: str, text: str, limits: Limits, budget: Budget | None) -> list[LoadedDocument]:
    _check_flow_depth(file, text)
    documents: list[LoadedDocument] = []
    stream = _yaml().compose_all(text)
    index = 0
    try:
        for node in stream:
            index += 1
            if index > limits.max_documents:
                raise _Abort(
                    diag.Diagnostic(
                        file,
                        _line(node),
                        _column(node),
                        codes.Code.TOO_MANY_DOCUMENTS,
                        f"more than {limits.max_documents} YAML documents in one file; "
                        "split the file",
                    )
                )
            if node is None or _is_empty(node):
                continue  # an empty document (a stray or trailing ``---``) is not an error
            builder = _Builder(file, index - 1, limits, budget)
            documents.append(builder.document(node))
            if budget is not None:
                budget.left -= builder.nodes
    except ruamel.yaml.error.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "end of stream" in str(exc.problem or ""):
            mark = exc.context_mark  # an unterminated quote or bracket: point at its start
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise _Abort(
            diag.Diagnostic(
                file,
                line,
                column,
                codes.Code.YAML_SYNTAX,
                f"YAML syntax error: {problem or exc}; fix the YAML at this position",
            )
        ) from exc
    except ruamel.yaml.error.YAMLError as exc:
        raise _Abort(
            diag.Diagnostic(
                file,
                *_mark_of(exc, text),
                codes.Code.YAML_SYNTAX,
                f"YAML syntax error: {_first_line(exc)}; fix the YAML at this position",
            )
        ) from exc
    except RecursionError as exc:
        raise _Abort(
            diag.Diagnostic(
                file,
                1,
                1,
                codes.Code.TOO_DEEP,
                "YAML nesting too deep to parse; flatten the structure",
            )
        ) from exc
    return documents


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _mark_of(exc: BaseException, text: str) -> tuple[int, int]:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "mark", None)
    if mark is not None:
        return mark.line + 1, mark.column + 1
    position = getattr(exc, "position", None)  # ReaderError: a character offset
    if isinstance(position, int) and 0 <= position <= len(text):
        before = text[:position]
        return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
    return 1, 1


def _is_empty(node: ruamel.yaml.nodes.Node) -> bool:
    return isinstance(node, ruamel.yaml.nodes.ScalarNode) and node.tag == _NULL and not node.value


def _line(node: ruamel.yaml.nodes.Node | None) -> int:
    return 1 if node is None else node.start_mark.line + 1


def _column(node: ruamel.yaml.nodes.Node | None) -> int:
    return 1 if node is None else node.start_mark.column + 1


def _pos(node: ruamel.yaml.nodes.Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    """Turns one composed document into plain data, enforcing the limits as it goes."""

    __slots__ = (
        "alias_nodes",
        "budget",
        "expanding",
        "file",
        "index",
        "limits",
        "max_nodes",
        "nodes",
        "seen",
    )

    def __init__(self, file: str, index: int, limits: Limits, budget: Budget | None) -> None:
        self.file = file
        self.index = index
        self.limits = limits
        self.budget = budget
        self.max_nodes = limits.max_nodes if budget is None else min(limits.max_nodes, budget.left)
        """The per-document limit, or what is left of the revision's budget if less."""
        self.nodes = 0
        self.alias_nodes = 0
        self.expanding = 0
        self.seen: set[int] = set()

    def document(self, node: ruamel.yaml.nodes.Node) -> LoadedDocument:
        data = self.build(node, (), 0)
        if not isinstance(data, dict):
            kind = {list: "list", str: "string", type(None): "null"}.get(
                type(data), type(data).__name__
            )
            raise _Abort(
                self.diag(
                    node,
                    codes.Code.NOT_A_MAPPING,
                    f"document is a {kind}, not a mapping; a document must have apiVersion, "
                    "kind, metadata and spec",
                )
            )
        return LoadedDocument(self.file, self.index, data, node)

    def diag(self, node: ruamel.yaml.nodes.Node, code: codes.Code, message: str) -> diag.Diagnostic:
        return diag.Diagnostic(self.file, _line(node), _column(node), code, message)

    def count(self, node: ruamel.yaml.nodes.Node) -> None:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            if self.budget is not None and self.max_nodes < self.limits.max_nodes:
                raise _Abort(
                    self.budget.refuse(
                        self.file, _line(node), _column(node), f"more than {self.max_nodes}"
                    )
                )
            raise _Abort(
                self.diag(
                    node,
                    codes.Code.ALIAS_EXPANSION,
                    f"document expands to more than {self.limits.max_nodes} nodes; "
                    "split it or remove aliases",
                )
            )
        if self.expanding:
            self.alias_nodes += 1
            if self.alias_nodes > self.limits.max_alias_nodes:
                raise _Abort(
                    self.diag(
                        node,
                        codes.Code.ALIAS_EXPANSION,
                        f"aliases expand to more than {self.limits.max_alias_nodes} nodes "
                        "(a 'billion laughs' pattern); write the values out instead of aliasing",
                    )
                )

    def build(self, node: ruamel.yaml.nodes.Node, stack: tuple[int, ...], depth: int) -> Any:
        ident = id(node)
        if ident in self.seen and not isinstance(node, ruamel.yaml.nodes.ScalarNode):
            # A collection reached again through an alias: everything below it is expansion.
            self.expanding += 1
            try:
                return self.build_node(node, ident, stack, depth)
            finally:
                self.expanding -= 1
        self.seen.add(ident)
        return self.build_node(node, ident, stack, depth)

    def build_node(
        self, node: ruamel.yaml.nodes.Node, ident: int, stack: tuple[int, ...], depth: int
    ) -> Any:
        self.count(node)
        if depth > self.limits.max_depth:
            raise _Abort(
                self.diag(
                    node,
                    codes.Code.TOO_DEEP,
                    f"nesting deeper than {self.limits.max_depth} levels; flatten the structure",
                )
            )
        tag = _tag_name(node)
        if tag not in _ALLOWED_TAGS:
            raise _Abort(
                self.diag(
                    node,
                    codes.Code.CUSTOM_TAG,
                    f"tag {_short_tag(tag)} is not allowed; remove it (only plain YAML "
                    "values, lists and mappings are accepted)",
                )
            )
        is_scalar = isinstance(node, ruamel.yaml.nodes.ScalarNode)
        if is_scalar == (tag in (_MAP, _SEQ)) or (
            isinstance(node, ruamel.yaml.nodes.SequenceNode) != (tag == _SEQ) and not is_scalar
        ):
            raise _Abort(
                self.diag(
                    node,
                    codes.Code.CUSTOM_TAG,
                    f"tag {_short_tag(tag)} does not fit this value; remove the tag",
                )
            )
        if is_scalar:
            return _scalar_of(node.value, tag)
        if ident in stack:
            raise _Abort(
                self.diag(
                    node,
                    codes.Code.RECURSIVE_ALIAS,
                    "alias refers to a node that contains it (a recursive structure); "
                    "remove the alias",
                )
            )
        inner = (*stack, ident)
        depth += 1
        if isinstance(node, ruamel.yaml.nodes.SequenceNode):
            return [self.child(child, inner, depth) for child in node.value]
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if (
                type(key_node) is ruamel.yaml.nodes.ScalarNode
                and _TAG_NAMES.get(id(key_node.ctag)) == _STR
            ):
                # The common key, a plain string: what the checks below conclude for it.
                key = key_node.value
                if key in result:
                    self.duplicate(node, key_node, key)
                result[key] = self.child(value_node, inner, depth)
                continue
            key_tag = _tag_name(key_node)
            if key_tag == _MERGE:
                raise _Abort(
                    self.diag(
                        key_node,
                        codes.Code.MERGE_KEY,
                        "merge keys (<<) are not supported; write the fields out so "
                        "reviewers see the effective values",
                    )
                )
            if not isinstance(key_node, ruamel.yaml.nodes.ScalarNode):
                raise _Abort(
                    self.diag(
                        key_node,
                        codes.Code.COMPLEX_KEY,
                        "a mapping key must be a plain scalar, not a list or mapping; "
                        "use a string key",
                    )
                )
            if key_tag not in _ALLOWED_TAGS:
                raise _Abort(
                    self.diag(
                        key_node,
                        codes.Code.CUSTOM_TAG,
                        f"tag {_short_tag(key_tag)} is not allowed; remove it",
                    )
                )
            key = _scalar_of(key_node.value, key_tag)
            if isinstance(key, float) and math.isnan(key):
                key = "nan"
            if key in result:
                self.duplicate(node, key_node, key)
            result[key] = self.child(value_node, inner, depth)
        return result

    def duplicate(
        self, node: ruamel.yaml.nodes.Node, key_node: ruamel.yaml.nodes.Node, key: Any
    ) -> NoReturn:
        earlier = next(k for k, _ in node.value if _scalar(k) == key)
        first = _scalar(earlier)
        if type(first) is not type(key):
            # YAML 1.2 keeps ``1`` and ``true`` (or ``1`` and ``1.0``) apart; loaded data cannot.
            raise _Abort(
                self.diag(
                    key_node,
                    codes.Code.DUPLICATE_KEY,
                    f"key {key_node.value!r} ({_kind_of(key)}) and key {earlier.value!r} "
                    f"({_kind_of(first)}, line {_line(earlier)}) are different YAML keys "
                    "but the same value once loaded; quote them as strings "
                    f"('\"{key_node.value}\"', '\"{earlier.value}\"') or keep one",
                )
            )
        raise _Abort(
            self.diag(
                key_node,
                codes.Code.DUPLICATE_KEY,
                f"duplicate key {key!r} (first at line {_line(earlier)}); keep one of them",
            )
        )

    def child(self, node: ruamel.yaml.nodes.Node, stack: tuple[int, ...], depth: int) -> Any:
        """Fast path for the common case, a plain scalar: no alias or depth bookkeeping.

        Aliased scalars need none: they share one string object, so they cannot blow up
        memory; only aliased collections can (counted in :meth:`build`).
        """
        if type(node) is ruamel.yaml.nodes.ScalarNode:
            tag = _TAG_NAMES.get(id(node.ctag))
            if tag is not None:
                if self.expanding or self.nodes >= self.max_nodes:
                    self.count(node)  # the limits' bookkeeping and messages
                else:
                    self.nodes += 1  # what count() does below every limit, inlined
                return _scalar_of(node.value, tag)
        return self.build(node, stack, depth)


def _kind_of(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number"}.get(type(value), "a string")


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _scalar(node: ruamel.yaml.nodes.Node) -> Any:
    return _scalar_of(node.value, _tag_name(node))

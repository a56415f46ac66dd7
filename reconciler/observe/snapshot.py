"""A snapshot file as a Source: what ``kubectl get -o yaml`` prints, for offline planning.

Accepted shapes: a ``kind: List`` (or any ``*List``) with ``items``, or a multi-document
YAML stream of objects. Every problem is an :class:`~reconciler.errors.ObserveError` that
names the file (and the item index), never a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ruamel.yaml.error
import ruamel.yaml.nodes

from reconciler import _gc, _yamlcore, errors
from reconciler.model import observed as obs
from reconciler.observe import sources

MAX_BYTES = 64 * 2**20
"""A snapshot larger than this is refused before it is read (validation's snapshot limit)."""
MAX_DEPTH = 64
"""kubectl output nests about a dozen levels; deeper is not a Kubernetes object."""


class _Refused(Exception):
    def __init__(self, node: ruamel.yaml.nodes.Node, message: str) -> None:
        super().__init__(message)
        self.line = node.start_mark.line + 1
        self.column = node.start_mark.column + 1


def _plain(node: ruamel.yaml.nodes.Node, depth: int, seen: set[int]) -> Any:
    """Composed nodes → dict/list/str/int/float/bool/None, in linear time and memory.

    A collection reached twice is an alias (``&a``/``*a``): kubectl never writes one, and
    expanding them is how a small file becomes a huge structure, so it is refused.
    """
    tag = _yamlcore.tag_name(node)
    if type(node) is ruamel.yaml.nodes.ScalarNode and tag in _yamlcore.ALLOWED_TAGS:
        return _yamlcore.scalar_of(node.value, tag)
    if tag not in _yamlcore.ALLOWED_TAGS:
        raise _Refused(node, f"tag {tag} is not allowed in a snapshot")
    if id(node) in seen:
        raise _Refused(node, "YAML aliases are not allowed in a snapshot (kubectl writes none)")
    seen.add(id(node))
    if depth > MAX_DEPTH:
        raise _Refused(node, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ruamel.yaml.nodes.SequenceNode):
        return [_plain(child, depth + 1, seen) for child in node.value]
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ruamel.yaml.nodes.ScalarNode):
            raise _Refused(key_node, "a mapping key must be a plain scalar")
        key = str(_plain(key_node, depth + 1, seen))
        if key in out:
            raise _Refused(key_node, f"duplicate key {key!r}")
        out[key] = _plain(value_node, depth + 1, seen)
    return out


def _load(text: str, name: str) -> list[Any]:
    """Every non-empty document of ``text``, as plain data (C parser, bounded, no constructors)."""
    if len(text) > MAX_BYTES:
        raise errors.ObserveError(f"{name}: snapshot is over {MAX_BYTES} bytes; split it")
    where = _yamlcore.too_deep(text)
    if where is not None:
        raise errors.ObserveError(
            f"{name}:{where[0]}:{where[1]}: nested too deeply to be a snapshot"
        )
    try:
        # Node graphs are large and acyclic: the collector would walk them and find nothing.
        with _gc.paused():
            return _documents(_yamlcore.yaml().compose_all(text), name)
    except ruamel.yaml.error.YAMLError as exc:
        raise errors.ObserveError(f"{name}: not valid YAML: {exc}") from exc


def _documents(nodes: Iterable[ruamel.yaml.nodes.Node | None], name: str) -> list[Any]:
    try:
        return [_plain(node, 0, set()) for node in nodes if node is not None and not _empty(node)]
    except _Refused as exc:
        raise errors.ObserveError(f"{name}:{exc.line}:{exc.column}: {exc}") from exc


def _empty(node: ruamel.yaml.nodes.Node) -> bool:
    """An empty document (a stray or trailing ``---``)."""
    return type(node) is ruamel.yaml.nodes.ScalarNode and _yamlcore.tag_name(node) == _yamlcore.NULL


def parse(text: str, name: str) -> tuple[Mapping[str, Any], ...]:
    return _items(_load(text, name), name)


def parse_composed(
    nodes: Iterable[ruamel.yaml.nodes.Node], name: str
) -> tuple[Mapping[str, Any], ...]:
    """:func:`parse` for text already composed by :func:`reconciler._yamlcore.yaml` (as
    validation composes the repository's snapshot): every check but the text-level ones
    (size, nesting), which the composing caller ran with the same limits or stricter."""
    with _gc.paused():
        return _items(_documents(nodes, name), name)


def _items(documents: list[Any], name: str) -> tuple[Mapping[str, Any], ...]:
    items: list[Any] = []
    for doc in documents:
        if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("List"):
            items.extend(doc.get("items") or [])
        else:
            items.append(doc)
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not item.get("kind"):
            raise errors.ObserveError(f"{name}: item {i} is not a Kubernetes object (no kind)")
        out.append(item)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path

    def read(self) -> obs.RawObjects:
        try:
            if self.path.stat().st_size > MAX_BYTES:
                raise errors.ObserveError(
                    f"{self.path}: snapshot is over {MAX_BYTES} bytes; split it"
                )
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.ObserveError(f"{self.path}: cannot read snapshot: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise errors.ObserveError(f"{self.path}: snapshot is not UTF-8 text") from exc
        return sources.classify(parse(text, str(self.path)))


@dataclass(frozen=True, slots=True)
class Composed:
    """A snapshot file's text already composed (by validation): read as :class:`Snapshot`
    reads the file, errors included, without parsing the text a second time."""

    root: ruamel.yaml.nodes.Node
    name: str

    def read(self) -> obs.RawObjects:
        return sources.classify(parse_composed([self.root], self.name))

"""A snapshot file as a Source: what ``kubectl get -o yaml`` prints, for offline planning.

Accepted shapes: a ``kind: List`` (or any ``*List``) with ``items``, or a multi-document
YAML stream of objects. Every problem is an :class:`~reconciler.errors.ObserveError` that
names the file (and the item index), never a stack trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from reconciler import errors
from reconciler.model import observed as obs
from reconciler.observe import sources


def _plain(value: Any) -> Any:
    """ruamel's containers → dict/list/str/int/bool (deterministic, JSON-shaped)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def parse(text: str, name: str) -> tuple[Mapping[str, Any], ...]:
    try:
        documents = [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]
    except YAMLError as exc:
        raise errors.ObserveError(f"{name}: not valid YAML: {exc}") from exc
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
        out.append(_plain(item))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Snapshot:
    path: Path

    def read(self) -> obs.RawObjects:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.ObserveError(f"{self.path}: cannot read snapshot: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise errors.ObserveError(f"{self.path}: snapshot is not UTF-8 text") from exc
        return sources.classify(parse(text, str(self.path)))

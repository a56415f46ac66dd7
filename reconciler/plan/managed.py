"""Managed fields: which parts of a live object our field manager owns, and which others own.

The apiserver records, per field manager, the set of fields it set (``metadata.managedFields``,
format ``FieldsV1``: nested ``f:<field>``, ``k:<json key>``, ``v:<json value>``, ``.`` = this
node). Two questions are answered from it, purely:

* the *owned view* of a live object: the live values of exactly the fields our manager
  applied. It is what the live diff compares with the target, so apiserver defaults and
  fields that admission or other controllers add are never drift, with no hand-kept table
  of defaults (the apiserver's own bookkeeping decides);
* the *foreign fields*: non-status fields that another manager set on an object we own.
  They are drift; apply replaces the object (PUT, :func:`replacement`), so they are gone
  whatever they were, then hands every field to our Apply entry (:func:`take_over`). A
  short allow-list names the metadata that other controllers legitimately add
  (:data:`ALLOWED_FOREIGN`); a replace keeps it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from reconciler.model import ownership

FieldSet = Mapping[str, Any]

ALLOWED_FOREIGN: tuple[tuple[str, ...], ...] = (
    # Argo CD's tracking annotation and label (argo-cd docs: "Resource Tracking").
    ("f:metadata", "f:annotations", "f:argocd.argoproj.io/tracking-id"),
    ("f:metadata", "f:labels", "f:app.kubernetes.io/instance"),
    # kube-controller-manager protects allocated ResourceClaims from deletion with this.
    ("f:metadata", "f:finalizers", 'v:"resource.kubernetes.io/delete-protection"'),
)
"""Fields another manager may own on our objects without it counting as drift."""

_COMPARED_METADATA = ("labels", "annotations", "finalizers")


def _entries(obj: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    meta = obj.get("metadata")
    fields = meta.get("managedFields") if isinstance(meta, Mapping) else None
    return [e for e in fields if isinstance(e, Mapping)] if isinstance(fields, list) else []


def _is_main(entry: Mapping[str, Any]) -> bool:
    """Entries for the object itself, not the status subresource."""
    return not entry.get("subresource")


def merge(a: FieldSet, b: FieldSet) -> dict[str, Any]:
    """The union of two field sets."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in a.items()}
    for key, sub in b.items():
        if key in out and isinstance(out[key], Mapping) and isinstance(sub, Mapping):
            out[key] = merge(out[key], sub)
        else:
            out[key] = sub
    return out


def applies(obj: Mapping[str, Any], manager: str = ownership.FIELD_MANAGER) -> bool:
    """Whether ``manager`` applied fields to ``obj`` (``owned(obj) is not None``, unmerged)."""
    return any(
        entry.get("manager") == manager and entry.get("operation") == "Apply" and _is_main(entry)
        for entry in _entries(obj)
    )


def owned(obj: Mapping[str, Any], manager: str = ownership.FIELD_MANAGER) -> dict[str, Any] | None:
    """The fields ``manager`` applied (server-side apply) to ``obj``; None when unknown."""
    found: dict[str, Any] | None = None
    for entry in _entries(obj):
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and _is_main(entry)
        ):
            fields = entry.get("fieldsV1")
            found = merge(found or {}, fields if isinstance(fields, Mapping) else {})
    return found


def _key_matches(item: Any, key_json: str) -> bool:
    try:
        key = json.loads(key_json)
    except json.JSONDecodeError:
        return False
    return (
        isinstance(item, Mapping)
        and isinstance(key, dict)
        and all(item.get(k) == v for k, v in key.items())
    )


def _is_leaf(fs: FieldSet) -> bool:
    return not fs or set(fs) == {"."}


_NONE = object()


def within(value: Any, target: Any) -> Any:
    """``value`` without the map keys ``target`` lacks, recursively (lists by position).

    Inside a value we own atomically (an atomic list), a key we did not send can only be an
    apiserver default: nobody else can own a part of an atomic value.
    """
    if isinstance(value, Mapping) and isinstance(target, Mapping):
        return {k: within(v, target[k]) for k, v in value.items() if k in target}
    if isinstance(value, list) and isinstance(target, list) and len(value) == len(target):
        return [within(v, t) for v, t in zip(value, target, strict=True)]
    return value


def project(value: Any, fs: FieldSet, target: Any = _NONE) -> Any:
    """``value`` restricted to the field set ``fs`` (an empty set keeps the whole value).

    With ``target`` (the object we would apply), values owned as a whole are cut by
    :func:`within`, so the defaults inside an atomic list are not a difference either.
    """
    if _is_leaf(fs):
        return value if target is _NONE else within(value, target)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            child = fs.get(f"f:{key}")
            if child is not None:
                sub_target = target.get(key, _NONE) if isinstance(target, Mapping) else _NONE
                out[key] = project(sub, child if isinstance(child, Mapping) else {}, sub_target)
        return out
    if isinstance(value, list):
        items = []
        for item in value:
            for key, child in fs.items():
                sub = child if isinstance(child, Mapping) else {}
                if key.startswith("k:") and _key_matches(item, key[2:]):
                    items.append(project(item, sub))
                    break
                if key.startswith("v:") and _json_equal(key[2:], item):
                    items.append(item)
                    break
        return items
    return value


def _json_equal(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except json.JSONDecodeError:
        return False


def owned_view(
    live: Mapping[str, Any],
    target: Mapping[str, Any] | None = None,
    manager: str = ownership.FIELD_MANAGER,
) -> dict[str, Any]:
    """``live`` with ``spec`` and metadata maps cut down to what ``manager`` applied.

    The planner (is a live claim's immutable spec really different?) and the diff's
    normalizer both use it, so they can never disagree; apiserver defaults and fields set by
    admission are never drift, with no hand-kept table of defaults to age.

    An object without an Apply entry for ``manager`` (an offline snapshot, a test fixture)
    is returned unchanged: there is nothing to cut by, and a foreign object is never ours.
    """
    fs = owned(live, manager)
    out = dict(live)
    if fs is None:
        return out
    if "spec" in out:
        spec_target = target.get("spec", _NONE) if target is not None else _NONE
        out["spec"] = project(out["spec"], fs.get("f:spec") or {"f:": {}}, spec_target)
    meta = out.get("metadata")
    if isinstance(meta, Mapping):
        meta = dict(meta)
        meta_fs = fs.get("f:metadata")
        meta_fs = meta_fs if isinstance(meta_fs, Mapping) else {}
        for name in _COMPARED_METADATA:
            if name not in meta:
                continue
            child = meta_fs.get(f"f:{name}")
            if child is None:
                del meta[name]
            else:
                meta[name] = project(meta[name], child if isinstance(child, Mapping) else {})
        out["metadata"] = meta
    return out


def _leaves(fs: FieldSet, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    children = [k for k in fs if k != "."]
    if not children:
        yield prefix
        return
    for key in children:
        sub = fs[key]
        yield from _leaves(sub if isinstance(sub, Mapping) else {}, (*prefix, key))


def _allowed(path: tuple[str, ...]) -> bool:
    return any(path[: len(a)] == a for a in ALLOWED_FOREIGN)


def foreign(
    live: Mapping[str, Any], manager: str = ownership.FIELD_MANAGER
) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Per other manager, the non-status, non-allow-listed field paths it owns on ``live``."""
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for entry in _entries(live):
        name = str(entry.get("manager", ""))
        if not _is_main(entry) or (name == manager and entry.get("operation") == "Apply"):
            continue
        fields = entry.get("fieldsV1")
        paths = tuple(
            p
            for p in _leaves(fields if isinstance(fields, Mapping) else {})
            if p and not _allowed(p)
        )
        if paths:
            key = f"{name} ({entry.get('operation', '')})"
            out[key] = tuple(sorted({*out.get(key, ()), *paths}))
    return out


def render_path(path: tuple[str, ...]) -> str:
    """``f:spec``/``f:deviceSelector`` → ``spec.deviceSelector`` (list keys in brackets)."""
    out = ""
    for part in path:
        kind, _, rest = part.partition(":")
        if kind == "f":
            out += f".{rest}" if out else rest
        else:
            out += f"[{rest}]"
    return out


def fieldset_of(value: Any) -> dict[str, Any]:
    """The field set server-side apply records for an applied configuration.

    Lists count as atomic (every list cu-reconciler writes is ``listType=atomic`` in
    resource.k8s.io/v1 and admissionregistration/v1) except ``metadata.finalizers``, a set.
    Used by the in-memory writer, so tests of callers see realistic managedFields.
    """
    out: dict[str, Any] = {}
    for key, sub in value.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        if key == "metadata" and isinstance(sub, Mapping):
            meta: dict[str, Any] = {}
            for name in _COMPARED_METADATA:
                item = sub.get(name)
                if name == "finalizers" and isinstance(item, list):
                    meta["f:finalizers"] = {f"v:{json.dumps(f)}": {} for f in item}
                elif isinstance(item, Mapping):
                    meta[f"f:{name}"] = {f"f:{k}": {} for k in item}
            out["f:metadata"] = meta
            continue
        out[f"f:{key}"] = fieldset_of(sub) if isinstance(sub, Mapping) and sub else {}
    return out


def _allowed_values(live: Mapping[str, Any]) -> dict[str, Any]:
    """The allow-listed metadata other managers set on ``live`` (:data:`ALLOWED_FOREIGN`)."""
    meta = live.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    out: dict[str, Any] = {}
    for path in ALLOWED_FOREIGN:
        field, leaf = path[1][2:], path[2]
        value = meta.get(field)
        if leaf.startswith("v:") and isinstance(value, list):
            wanted = json.loads(leaf[2:])
            if wanted in value:
                out.setdefault(field, []).append(wanted)
        elif leaf.startswith("f:") and isinstance(value, Mapping) and leaf[2:] in value:
            out.setdefault(field, {})[leaf[2:]] = value[leaf[2:]]
    return out


def replacement(live: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    """The whole object a replace (PUT) writes to repair ``live`` into ``target``.

    Everything a hand edit added goes, including what server-side apply cannot take back
    (a merge patch turning ``validationActions: [Deny]`` into ``[Warn]`` leaves the apply
    merging ``["Warn", "Deny"]``, which validation refuses); the allow-listed metadata other
    controllers legitimately keep on our objects stays. ``uid`` and ``resourceVersion`` make
    the write conditional on the object being the one we judged.
    """
    meta = dict(target.get("metadata") or {})
    live_meta = live.get("metadata")
    live_meta = live_meta if isinstance(live_meta, Mapping) else {}
    for key in ("uid", "resourceVersion"):
        if live_meta.get(key):
            meta[key] = live_meta[key]
    for field, value in _allowed_values(live).items():
        if isinstance(value, list):
            meta[field] = [*(meta.get(field) or []), *value]
        else:
            meta[field] = {**(meta.get(field) or {}), **value}
    return {**{k: v for k, v in target.items() if k != "status"}, "metadata": meta}


def _subtract(fs: FieldSet, path: tuple[str, ...]) -> dict[str, Any]:
    out = {k: v for k, v in fs.items()}
    head, rest = path[0], path[1:]
    if head not in out:
        return out
    if not rest:
        del out[head]
        return out
    sub = out[head]
    pruned = _subtract(sub if isinstance(sub, Mapping) else {}, rest)
    if [k for k in pruned if k != "."]:
        out[head] = pruned
    else:
        del out[head]
    return out


def _restrict(fs: FieldSet, path: tuple[str, ...]) -> dict[str, Any] | None:
    node: Any = fs
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    tree: dict[str, Any] = dict(node) if isinstance(node, Mapping) else {}
    for part in reversed(path):
        tree = {part: tree}
    return tree


def _in_target(fs: FieldSet, target: Any) -> dict[str, Any]:
    """The part of ``fs`` whose ``f:`` path exists in ``target`` (list items: kept whole)."""
    out: dict[str, Any] = {}
    for key, sub in fs.items():
        if key == ".":
            out[key] = sub
        elif key.startswith("f:") and isinstance(target, Mapping) and key[2:] in target:
            child = target[key[2:]]
            if isinstance(sub, Mapping) and sub and isinstance(child, Mapping):
                inner = _in_target(sub, child)
                if inner:
                    out[key] = inner
            else:
                out[key] = sub
    return out


def take_over(
    live: Mapping[str, Any],
    manager: str = ownership.FIELD_MANAGER,
    target: Mapping[str, Any] | None = None,
) -> list[Any]:
    """``managedFields`` with every foreign, non-allow-listed field moved to our Apply entry.

    Written back (JSON patch, resourceVersion as precondition) right after a replace
    (:func:`replacement`): the replace restored the values, but the fields it changed are
    then owned by our manager's *Update* entry, which the next diff would call foreign.
    With ``target``, only fields the target sets move to us; the rest (a default the
    apiserver filled in again, like a taint's ``timeAdded``) is left unowned, as defaults are.
    """
    ours: dict[str, Any] | None = None
    kept: list[Any] = []
    for entry in _entries(live):
        fields = entry.get("fieldsV1")
        fs: FieldSet = fields if isinstance(fields, Mapping) else {}
        name = entry.get("manager")
        if not _is_main(entry):
            kept.append(dict(entry))
        elif name == manager and entry.get("operation") == "Apply":
            ours = merge(ours or {}, fs)
        else:
            moved: dict[str, Any] = dict(fs)
            allowed: dict[str, Any] = {}
            for path in ALLOWED_FOREIGN:
                moved = _subtract(moved, path)
                part = _restrict(fs, path)
                if part is not None:
                    allowed = merge(allowed, part)
            ours = merge(ours or {}, moved if target is None else _in_target(moved, target))
            if allowed:
                kept.append({**entry, "fieldsV1": allowed})
    mine = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": str(live.get("apiVersion", "")),
        "fieldsType": "FieldsV1",
        "fieldsV1": ours or {},
    }
    return [mine, *kept]


_UNSTAMPED = (ownership.REVISION_ANNOTATION, ownership.APPLIED_ANNOTATION)


def applied_digest(obj: Mapping[str, Any]) -> str:
    """A digest of what we apply (the revision annotation aside, it changes every commit).

    Apply stamps it on every object (:data:`ownership.APPLIED_ANNOTATION`); a live object
    whose stamp equals the target's digest, and on which nobody else set a field, needs no
    write. It also catches what the owned view cannot: a key we stopped sending inside a
    value we own whole (an atomic list), which looks the same as a server default.
    """
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    annotations = meta.get("annotations")
    kept = (
        {k: v for k, v in (annotations or {}).items() if k not in _UNSTAMPED}
        if isinstance(annotations, Mapping)
        else {}
    )
    body = {
        **{k: v for k, v in obj.items() if k not in ("metadata", "status")},
        "metadata": {**{k: v for k, v in meta.items() if k != "annotations"}, "annotations": kept},
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def stamped(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with its :func:`applied_digest` in the applied annotation."""
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        ownership.APPLIED_ANNOTATION: applied_digest(obj),
    }
    return {**obj, "metadata": meta}


def stamp_of(live: Mapping[str, Any]) -> str | None:
    meta = live.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = (
        annotations.get(ownership.APPLIED_ANNOTATION) if isinstance(annotations, Mapping) else None
    )
    return str(value) if value is not None else None


def covers(owned_fs: FieldSet, wanted: FieldSet) -> bool:
    """Every field of ``wanted`` is in ``owned_fs`` (a field someone removed is not)."""
    for key, sub in wanted.items():
        if key == ".":
            continue
        have = owned_fs.get(key)
        if have is None:
            return False
        if (
            isinstance(sub, Mapping)
            and sub
            and not covers(have if isinstance(have, Mapping) else {}, sub)
        ):
            return False
    return True

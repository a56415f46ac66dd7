"""Changes of meaning between two desired states: every field of every document, before → after.

A tenant's priority, ``preemptible`` or ``mayBorrow``, a factor or an adapter's value map
change what the reconciler *decides* without necessarily changing any Kubernetes object
(yet). A preview that only diffs objects would say "0 changes" for the edits that matter
most, so ``plan --base`` lists these too, and exits 1 when there is any (docs/plan.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import state as st

_KEYS = ("name", "pool", "deviceModel", "tenant")
"""List items with one of these fields are matched by it (a quota by pool), not by index."""


@dataclass(frozen=True, slots=True, order=True)
class FieldChange:
    kind: str
    name: str
    path: str
    """Dotted path inside the document, list items as ``[key=value]`` or ``[index]``."""
    before: str | None
    """JSON text of the old value; None when the field (or the document) is new."""
    after: str | None

    def render(self) -> str:
        old = "—" if self.before is None else self.before
        new = "—" if self.after is None else self.after
        where = f"{self.kind}/{self.name}" + (f" {self.path}" if self.path else "")
        return f"{where}: {old} → {new}"


def _documents(state: st.DesiredState) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in (
        state.settings,
        state.policy,
        *state.adapters,
        *state.pools,
        *state.tenants,
        *state.claims,
        *state.factor_tables,
        *((state.device_costs,) if state.device_costs is not None else ()),
    ):
        data = doc.model_dump(mode="json", by_alias=True)
        data.pop("apiVersion", None)
        name = (data.get("metadata") or {}).get("name", "")
        out[(str(data.get("kind")), str(name))] = data
    return out


def _key(item: Any, index: int) -> str:
    if isinstance(item, Mapping):
        for field in _KEYS:
            if field in item and isinstance(item[field], str | int):
                return f"[{field}={item[field]}]"
    return f"[{index}]"


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for k in sorted(value):
            yield from _flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{prefix}{_key(item, i)}")
    else:
        yield prefix, value


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def compare(base: st.DesiredState, revision: st.DesiredState) -> tuple[FieldChange, ...]:
    """Every field whose value differs between the two states, sorted (kind, name, path).

    A document added or removed is one change with no path.
    """
    old, new = _documents(base), _documents(revision)
    out: list[FieldChange] = []
    for key in sorted(old.keys() | new.keys()):
        kind, name = key
        if key not in old:
            out.append(FieldChange(kind, name, "", None, "added"))
            continue
        if key not in new:
            out.append(FieldChange(kind, name, "", "removed", None))
            continue
        before = dict(_flatten(old[key]))
        after = dict(_flatten(new[key]))
        for path in sorted(before.keys() | after.keys()):
            b, a = before.get(path, _MISSING), after.get(path, _MISSING)
            if b == a:
                continue
            out.append(
                FieldChange(
                    kind,
                    name,
                    path,
                    None if b is _MISSING else _text(b),
                    None if a is _MISSING else _text(a),
                )
            )
    return tuple(out)


_MISSING: Any = object()


_RECORDED = (
    ("priority", "spec.priority"),
    ("preemptible", "spec.preemptible"),
    ("mayBorrow", "spec.mayBorrow"),
)


def _recorded_value(text: str) -> Any:
    """An annotation part as the value the desired state holds (JSON), or the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def against_recorded(
    revision: st.DesiredState, recorded: Mapping[tuple[str, str], Mapping[str, str]]
) -> tuple[FieldChange, ...]:
    """The tenant fields that differ from what the live cluster last had applied (the
    quota annotations of our pool classes, :func:`reconciler.plan.report.recorded_settings`),
    in the paths and JSON text :func:`compare` uses, so ``plan`` against a cluster lists
    the edits ``plan --base`` lists: priority, ``preemptible``, ``mayBorrow``, and each
    recorded quota's guarantee and limit. A field the record lacks (written by an older
    version) is not compared; a tenant with no record at all is new, and its objects say so.
    """
    tenants = {t.metadata.name: t for t in revision.tenants}
    out: set[FieldChange] = set()
    for (name, pool), parts in recorded.items():
        tenant = tenants.get(name)
        if tenant is None:
            out.add(FieldChange("Tenant", name, "", "removed", None))
            continue
        spec = tenant.model_dump(mode="json", by_alias=True)["spec"]
        for key, path in _RECORDED:
            if key in parts and _recorded_value(parts[key]) != spec[key]:
                out.add(FieldChange("Tenant", name, path, parts[key], _text(spec[key])))
        quota = next((q for q in spec["quotas"] if q["pool"] == pool), None)
        for key in ("guaranteed", "limit"):
            base = f"spec.quotas[pool={pool}].{key}"
            now = None if quota is None else quota.get(key)
            was = float(parts[key]) if key in parts else None
            if key == "guaranteed" and was is None:
                continue
            if was != (None if now is None else float(now)):
                out.add(
                    FieldChange(
                        "Tenant",
                        name,
                        base,
                        None if was is None else _text(was),
                        None if now is None else _text(now),
                    )
                )
    return tuple(sorted(out))

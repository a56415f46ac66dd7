"""The delete guard: a plan that would prune too much of what we own is refused.

``policy.safety.maxDeleteFraction`` bounds the share of owned objects one plan may delete;
a plan that deletes every owned object is refused unless ``allowEmpty``. Replacements
(delete + create of an immutable claim) are not losses and do not count. The rule lives in
the pure core so the preview shows the refusal and apply can rely on it.

A guard cannot be lifted by the commit that needs it lifted: the pipeline checks again with
:func:`stricter` of the live revision's policy (the one that last applied) and the new one,
so raising ``maxDeleteFraction`` to 1.0 takes effect one reconcile *after* it is applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.model import documents as docs
from reconciler.model import ownership
from reconciler.plan import managed


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    meta = obj.get("metadata") or {}
    return (
        group,
        str(obj.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def counts_as_owned(obj: Mapping[str, Any]) -> bool:
    """Owned for the guard: our label and, on a live object, our applied fields.

    A foreign object wearing our label is never deleted (apply reports it as a conflict),
    so it must not count as a loss either. Offline objects have no managedFields at all.
    """
    meta = obj.get("metadata") or {}
    if not ownership.is_owned(obj):
        return False
    return "managedFields" not in meta or managed.applies(obj)


def check(
    live: Iterable[Mapping[str, Any]],
    target: Iterable[Mapping[str, Any]],
    policy: docs.Policy,
    key: Callable[[Mapping[str, Any]], tuple[str, str, str, str]] = object_key,
    counted: Callable[[Mapping[str, Any]], bool] = counts_as_owned,
    *,
    remembered: bool = False,
) -> str | None:
    """None when safe, else the refusal message. ``key`` and ``counted`` are
    :func:`object_key` and :func:`counts_as_owned`, or the same remembered per object
    (``remembered``: then every live object is counted on every plan, so a plan that
    deletes reads the managedFields of the objects that changed only, not of all)."""
    wanted = {key(o) for o in target}
    live = list(live)
    keys = [key(o) for o in live]
    if remembered:
        counts = [counted(o) for o in live]
        deletes = {k for k, c in zip(keys, counts, strict=True) if c and k not in wanted}
        if not deletes:
            return None
        owned = {k for k, c in zip(keys, counts, strict=True) if c}
    else:
        # Deletes first: most plans delete nothing, and then no live object's
        # managedFields need to be read to count what we own.
        deletes = {k for k, o in zip(keys, live, strict=True) if k not in wanted and counted(o)}
        if not deletes:
            return None
        owned = {k for k, o in zip(keys, live, strict=True) if k in deletes or counted(o)}
    safety = policy.spec.safety
    if not wanted & owned and not wanted and not safety.allow_empty:
        return (
            f"refused: the plan deletes all {len(owned)} owned objects and renders nothing; "
            "set policy.safety.allowEmpty to allow it"
        )
    share = len(deletes) / len(owned)
    if share > safety.max_delete_fraction and not (not wanted and safety.allow_empty):
        return (
            f"refused: the plan deletes {len(deletes)} of {len(owned)} owned objects "
            f"({share:.0%}), more than policy.safety.maxDeleteFraction "
            f"({safety.max_delete_fraction:.0%})"
        )
    return None


def stricter(live: docs.Policy | None, new: docs.Policy) -> docs.Policy:
    """``new`` with safety limits no looser than ``live``'s (None: no live revision)."""
    if live is None:
        return new
    a, b = live.spec.safety, new.spec.safety
    safety = b.model_copy(
        update={
            "max_delete_fraction": min(a.max_delete_fraction, b.max_delete_fraction),
            "allow_empty": a.allow_empty and b.allow_empty,
        }
    )
    return new.model_copy(update={"spec": new.spec.model_copy(update={"safety": safety})})


def stricter_limits(recorded: docs.SafetyPolicy | None, policy: docs.Policy) -> docs.Policy:
    """``policy`` with safety limits no looser than ``recorded`` (the limits the last apply
    left in the cluster; None: none recorded)."""
    if recorded is None:
        return policy
    live = policy.model_copy(update={"spec": policy.spec.model_copy(update={"safety": recorded})})
    return stricter(live, policy)


def live_revision(live: Iterable[Mapping[str, Any]]) -> str | None:
    """The revision most owned objects were last applied from (None when nothing is owned)."""
    counts: dict[str, int] = {}
    for obj in live:
        if not ownership.is_owned(obj):
            continue
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        rev = annotations.get(ownership.REVISION_ANNOTATION)
        if isinstance(rev, str) and rev:
            counts[rev] = counts.get(rev, 0) + 1
    return max(sorted(counts), key=lambda r: counts[r]) if counts else None

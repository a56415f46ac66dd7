"""Fields the apiserver fills in that we do not write: known server defaults, by kind.

Both the planner (is a live claim's immutable spec really different?) and the diff's
``ServerDefaults`` normalizer use this one table, so they can never disagree. A default is
removed from the live object only where the target does not set that field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

ANY = object()
"""Matches any value (server-set timestamps)."""

_CLAIM_SPEC: tuple[tuple[tuple[str, ...], object], ...] = (
    (("devices", "requests", "*", "exactly", "allocationMode"), "ExactCount"),
    (("devices", "requests", "*", "exactly", "count"), 1),
    (("devices", "requests", "*", "exactly", "tolerations", "*", "operator"), "Equal"),
    (("devices", "requests", "*", "firstAvailable", "*", "allocationMode"), "ExactCount"),
    (("devices", "requests", "*", "firstAvailable", "*", "count"), 1),
    (("devices", "requests", "*", "firstAvailable", "*", "tolerations", "*", "operator"), "Equal"),
)

DEFAULTS: Mapping[str, tuple[tuple[tuple[str, ...], object], ...]] = {
    "ResourceClaim": tuple((("spec", *p), v) for p, v in _CLAIM_SPEC),
    "ResourceClaimTemplate": tuple((("spec", "spec", *p), v) for p, v in _CLAIM_SPEC),
    "ResourceSlice": ((("spec", "devices", "*", "taints", "*", "timeAdded"), ANY),),
    "DeviceTaintRule": ((("spec", "taint", "timeAdded"), ANY),),
    "ValidatingAdmissionPolicy": (
        (("spec", "failurePolicy"), "Fail"),
        (("spec", "matchConstraints", "matchPolicy"), "Equivalent"),
        (("spec", "matchConstraints", "namespaceSelector"), {}),
        (("spec", "matchConstraints", "objectSelector"), {}),
        (("spec", "matchConstraints", "resourceRules", "*", "scope"), "*"),
    ),
    "ValidatingAdmissionPolicyBinding": (
        (("spec", "matchResources", "matchPolicy"), "Equivalent"),
        (("spec", "matchResources", "namespaceSelector"), {}),
        (("spec", "matchResources", "objectSelector"), {}),
        (("spec", "matchResources"), {}),
    ),
}


def _strip(live: Any, target: Any, path: tuple[str, ...], default: object) -> None:
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(live, list):
            return
        targets = target if isinstance(target, list) else []
        for i, item in enumerate(live):
            _strip(item, targets[i] if i < len(targets) else None, rest, default)
        return
    if not isinstance(live, dict) or head not in live:
        return
    sub_target = target.get(head) if isinstance(target, Mapping) else None
    if rest:
        _strip(live[head], sub_target, rest, default)
        return
    if isinstance(target, Mapping) and head in target:
        return
    if default is ANY or live[head] == default:
        del live[head]


def _found(live: Any, target: Any, path: tuple[str, ...], default: object) -> bool:
    """Would :func:`_strip` remove anything? (Read-only, so unchanged objects are not copied.)"""
    head, rest = path[0], path[1:]
    if head == "*":
        if type(live) is not list:
            return False
        targets = target if type(target) is list else []
        return any(
            _found(item, targets[i] if i < len(targets) else None, rest, default)
            for i, item in enumerate(live)
        )
    if type(live) is not dict or head not in live:
        return False
    sub_target = target.get(head) if type(target) is dict else None
    if rest:
        return _found(live[head], sub_target, rest, default)
    if type(target) is dict and head in target:
        return False
    return default is ANY or live[head] == default


def strip(live: Mapping[str, Any], target: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``live`` without the server defaults that ``target`` leaves unset.

    Only ``spec`` is deep-copied (every default lives there), and only for kinds that have
    defaults; the rest is a shallow copy.
    """
    out = dict(live)
    rules = DEFAULTS.get(str(live.get("kind", "")), ())
    wanted = target or {}
    if not rules or "spec" not in out or not any(_found(out, wanted, p, d) for p, d in rules):
        return out
    out["spec"] = json.loads(json.dumps(out["spec"]))  # a deep copy, several times faster
    for path, default in rules:
        _strip(out, target or {}, path, default)
    return out

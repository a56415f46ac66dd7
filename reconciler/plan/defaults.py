"""What the apiserver adds to our objects never counts as a difference.

Both the planner (is a live claim's immutable spec really different?) and the diff's
``ServerDefaults`` normalizer use :func:`strip`, so they can never disagree. It used to
delete a hand-copied table of apiserver defaults; it now keeps only the fields our field
manager applied (:mod:`reconciler.plan.managed`), which the apiserver itself records, so a
default added by a new Kubernetes release or a field set by admission is never drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.plan import managed


def strip(live: Mapping[str, Any], target: Mapping[str, Any] | None) -> dict[str, Any]:
    """A shallow copy of ``live`` reduced to what we applied (unchanged without managedFields).

    The cut is the live object's own managedFields, so a field we stopped sending still
    shows as a removal; ``target`` only trims the defaults inside values we own whole.
    """
    return managed.owned_view(live, target)

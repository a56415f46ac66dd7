"""Observation: read what the cluster holds, as plain objects, and normalise it.

Role: the I/O edge for the observed state. A :class:`~reconciler.observe.sources.Source`
returns :class:`~reconciler.model.observed.RawObjects` (Nodes, every ResourceSlice, every
ResourceClaim, and the objects carrying our owner label); :func:`observe` hands them to the
pure :func:`reconciler.model.observed.build`, which applies the vendor adapters and the
newest-complete-generation rule. Sources: a live cluster (``cluster``), a snapshot file
(``snapshot``), or an in-memory list for tests (``sources.InMemory``).
Never: writes to the cluster, or decides anything that planning decides.
"""

from __future__ import annotations

import dataclasses

from reconciler.model import inventory, presence
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.observe import sources


def observe(
    source: sources.Source, desired: st.DesiredState, memo: obs.Memo | None = None
) -> obs.ObservedState:
    """Read once from ``source`` and normalise with the desired adapters and driver name;
    ``memo`` (kept by the controller) spares the vendor pools whose slices did not change."""
    raw = source.read()
    state = obs.build(raw, desired.adapters, desired.settings.spec.driver_name, memo)
    spec = desired.settings.spec
    if raw.inventories is not None:
        name = desired.settings.metadata.name
        data = raw.inventories.get(inventory.name(name))
        state = dataclasses.replace(state, inventory=inventory.parse(data, name))
    return presence.apply(state, raw, spec.reconciler_namespace, spec.driver_name)


__all__ = ["observe"]

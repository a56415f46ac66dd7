"""Ownership marks: the labels and annotations that say "cu-reconciler made this object".

Every object the reconciler renders carries :data:`MANAGED_BY` so that the diff and the
prune step can tell our objects from everybody else's: we only ever propose to delete an
object that carries it. The Git revision goes into an annotation (not a label) because it
changes on every commit; the diff ignores it so a new commit alone rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "cu-reconciler"
MANAGED_BY: Mapping[str, str] = {MANAGED_BY_KEY: MANAGED_BY_VALUE}

PREFIX = "cu-reconciler.io"
POOL_LABEL = f"{PREFIX}/pool"
NODE_LABEL = f"{PREFIX}/node"
CLAIM_LABEL = f"{PREFIX}/claim"
TENANT_LABEL = f"{PREFIX}/tenant"
COMPONENT_LABEL = f"{PREFIX}/component"
TEMPLATE_LABEL = f"{PREFIX}/template"
REVISION_ANNOTATION = f"{PREFIX}/revision"
WORKLOAD_CLASS_ANNOTATION = f"{PREFIX}/workload-class"


def is_owned(obj: Mapping[str, object]) -> bool:
    """True when the object carries our managed-by label (the only licence to delete it)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return False
    labels = metadata.get("labels")
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE

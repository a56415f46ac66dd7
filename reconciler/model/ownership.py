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
SOURCE_ANNOTATION = f"{PREFIX}/source"
"""Names the repository (its ClusterSettings) whose revisions render the object."""
APPLIED_ANNOTATION = f"{PREFIX}/applied"
"""Digest of the configuration we last applied: equal digest, nothing to write."""
FIELD_MANAGER = "cu-reconciler"
"""The server-side apply field manager every write of ours uses."""
WORKLOAD_CLASS_ANNOTATION = f"{PREFIX}/workload-class"


OUR_KINDS = frozenset(
    {
        "DeviceClass",
        "ResourceQuota",
        "DeviceTaintRule",
        "ResourceSlice",
        "ResourceClaim",
        "ResourceClaimTemplate",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
)
"""Every kind the reconciler renders (and so may find carrying :data:`MANAGED_BY`)."""


def is_owned(obj: Mapping[str, object]) -> bool:
    """True when the object carries our managed-by label (the only licence to delete it)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return False
    labels = metadata.get("labels")
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_KEY) == MANAGED_BY_VALUE


def is_ours(obj: Mapping[str, object], source: str) -> bool:
    """The licence to update or delete: label, source annotation *and* our applied fields.

    The label alone can be put on anything by anyone; an object is ours only when our field
    manager applied it (``managedFields`` holds our ``Apply`` entry), it carries our label,
    and its source annotation names ``source``, the repository this run reconciles.
    """
    if not is_owned(obj):
        return False
    metadata = obj.get("metadata")
    assert isinstance(metadata, Mapping)
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping) or annotations.get(SOURCE_ANNOTATION) != source:
        return False
    entries = metadata.get("managedFields")
    return isinstance(entries, list) and any(
        isinstance(e, Mapping)
        and e.get("manager") == FIELD_MANAGER
        and e.get("operation") == "Apply"
        and not e.get("subresource")
        for e in entries
    )

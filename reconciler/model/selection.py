"""Which observed devices a pool's selector takes: the one definition, shared by all stages.

Pure functions over the document model and :mod:`reconciler.model.observed`. ``validate``
uses them to find pools that overlap on a device and pools that cannot hold their tenants'
guarantees; ``plan`` uses the same rules to assign devices, so validation and planning can
never disagree about pool membership. Semantics follow Kubernetes label selectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import quantity


def match_expression(req: docs.LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    if req.operator == "In":
        return labels.get(req.key) in req.values
    if req.operator == "NotIn":
        return labels.get(req.key) not in req.values
    if req.operator == "Exists":
        return req.key in labels
    return req.key not in labels


def labels_match(selector: docs.LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """A Kubernetes label selector; ``None`` (and an empty selector) selects everything."""
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    return all(match_expression(r, labels) for r in selector.match_expressions)


def common_field(device: obs.ObservedDevice, name: str) -> str | None:
    """A field of the common device description by its selector name."""
    return {
        "vendor": device.vendor,
        "model": device.model,
        "driverVersion": device.driver_version,
        "pcieRoot": device.pcie_root,
        "node": device.node,
        "uuid": device.uuid,
    }.get(name)


COMMON_FIELDS: frozenset[str] = frozenset(
    {"vendor", "model", "driverVersion", "pcieRoot", "node", "uuid"}
)
"""The names ``DeviceSelector.attributes`` may use."""


def selects(
    selector: docs.DeviceSelector, device: obs.ObservedDevice, node_labels: Mapping[str, str]
) -> bool:
    """Whether a pool's selector takes ``device`` on a node with ``node_labels``."""
    return _device_fits(selector, device) and labels_match(selector.node_selector, node_labels)


def takes_the_rest(selector: docs.DeviceSelector) -> bool:
    """An empty selector: the pool of every device no other pool selects (docs/desired-state.md).

    Without this, a "the rest" pool could not be written: it overlaps every other pool."""
    return not (
        selector.vendors
        or selector.models
        or selector.node_selector is not None
        or selector.min_memory is not None
        or selector.attributes
    )


def matching(
    selectors: Sequence[docs.DeviceSelector],
    devices: Iterable[obs.ObservedDevice],
    node_labels: Mapping[str, Mapping[str, str]],
) -> Iterator[tuple[obs.ObservedDevice, list[int]]]:
    """Per device, the indexes of the selectors that take it, in order: exactly
    :func:`selects` for every pair, with each node selector evaluated once per node instead
    of once per device (a node carries up to eight devices; a cluster, dozens of pools).
    An empty selector (:func:`takes_the_rest`) yields a device another selector takes."""
    rest = [takes_the_rest(s) for s in selectors]
    on_node: dict[str, list[bool]] = {}
    for device in devices:
        node_ok = on_node.get(device.node)
        if node_ok is None:
            labels = node_labels.get(device.node, {})
            node_ok = on_node[device.node] = [
                labels_match(s.node_selector, labels) for s in selectors
            ]
        taken = [i for i, s in enumerate(selectors) if node_ok[i] and _device_fits(s, device)]
        specific = [i for i in taken if not rest[i]]
        yield device, (specific or taken)


def _device_fits(selector: docs.DeviceSelector, device: obs.ObservedDevice) -> bool:
    """The device-level half of :func:`selects` (everything but the node's labels)."""
    if selector.vendors and device.vendor not in selector.vendors:
        return False
    if selector.models and device.model not in selector.models:
        return False
    if selector.min_memory is not None and device.memory_bytes < quantity.parse_quantity(
        selector.min_memory
    ):
        return False
    return not any(common_field(device, k) != v for k, v in selector.attributes.items())


def may_overlap(a: docs.DeviceSelector, b: docs.DeviceSelector) -> bool:
    """Statically, could one device match both selectors? False only when provably disjoint.

    Disjoint when the vendor or model lists do not intersect, when both pin the same common
    field to different values, or when their node selectors require different values of the
    same label (``matchLabels`` or single-valued ``In``). Anything subtler is "may overlap".
    """
    if takes_the_rest(a) != takes_the_rest(b):
        return False  # the empty one takes only what the other does not
    if a.vendors and b.vendors and not set(a.vendors) & set(b.vendors):
        return False
    if a.models and b.models and not set(a.models) & set(b.models):
        return False
    for key in a.attributes.keys() & b.attributes.keys():
        if a.attributes[key] != b.attributes[key]:
            return False
    return not _labels_disjoint(a.node_selector, b.node_selector)


def _required_values(selector: docs.LabelSelector | None) -> dict[str, set[str]]:
    """Per label key, the set of values a matching node must have one of."""
    out: dict[str, set[str]] = {}
    if selector is None:
        return out
    for key, value in selector.match_labels.items():
        out[key] = out.get(key, {value}) & {value}
    for req in selector.match_expressions:
        if req.operator == "In":
            out[req.key] = out.get(req.key, set(req.values)) & set(req.values)
    return out


def _labels_disjoint(a: docs.LabelSelector | None, b: docs.LabelSelector | None) -> bool:
    ra, rb = _required_values(a), _required_values(b)
    if any(not v for v in (*ra.values(), *rb.values())):
        return True  # one selector can match nothing at all
    for key in ra.keys() & rb.keys():
        if not ra[key] & rb[key]:
            return True
    for mine, other in ((a, rb), (b, ra)):
        if mine is None:
            continue
        for req in mine.match_expressions:
            if req.operator == "DoesNotExist" and req.key in other:
                return True
            if req.operator == "NotIn" and req.key in other and other[req.key] <= set(req.values):
                return True
    return False

"""Recreate a snapshot's Nodes and vendor ResourceSlices on the local control plane.

A snapshot (``kind: List`` as ``kubectl get -o yaml`` prints it, like
``examples/gitrepo/observed/snapshot.yaml``) describes a fleet; this makes it live, as
kubelets (here: kwok-style Node objects) and vendor drivers would. Claims are not loaded:
their allocations belong to the scheduler, which makes them for real from Pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient
from ruamel.yaml import YAML

from reconciler.devcluster import nodes, rawapi

FIELD_MANAGER = "vendor-driver-simulator"
SLICES = "/apis/resource.k8s.io/v1/resourceslices"


@dataclass(frozen=True, slots=True)
class Loaded:
    nodes: tuple[str, ...]
    slices: tuple[str, ...]


def read(path: Path) -> list[Mapping[str, Any]]:
    items = YAML(typ="safe").load(path.read_text(encoding="utf-8"))["items"]
    return list(items)


def load(api: ApiClient, path: Path) -> Loaded:
    """Create the snapshot's Nodes (Ready, schedulable) and server-side apply its slices."""
    items = read(path)
    node_names = []
    for obj in items:
        if obj["kind"] == "Node":
            meta = obj["metadata"]
            nodes.create_node(api, meta["name"], meta.get("labels"))
            node_names.append(meta["name"])
    slice_names = []
    for obj in items:
        if obj["kind"] == "ResourceSlice":
            name = obj["metadata"]["name"]
            body = {
                "apiVersion": obj["apiVersion"],
                "kind": "ResourceSlice",
                "metadata": {"name": name},
                "spec": obj["spec"],
            }
            rawapi.apply(api, f"{SLICES}/{name}", body, field_manager=FIELD_MANAGER)
            slice_names.append(name)
    return Loaded(tuple(node_names), tuple(slice_names))


def unload(api: ApiClient, loaded: Loaded) -> None:
    """Delete what :func:`load` made (NotFound is fine: a test may have withdrawn it)."""
    for name in loaded.slices:
        rawapi.delete(api, f"{SLICES}/{name}")
    for name in loaded.nodes:
        nodes.delete_node(api, name)

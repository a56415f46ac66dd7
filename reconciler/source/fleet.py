"""Many clusters, one repository: shared documents plus one directory per cluster.

Layout (examples/fleet)::

    tenants/ adapters/ factors/ policy.yaml     shared by every cluster
    clusters/<name>/cluster.yaml                 that cluster's ClusterSettings
    clusters/<name>/pools/ ...                   its pools (and any other cluster-only file)
    clusters/<name>/observed/snapshot.yaml       its committed snapshot

Each cluster sees an overlay: every shared file plus its own directory, never another
cluster's. That overlay is an ordinary :class:`~reconciler.source.tree.SourceTree` (same
revision, real repository paths, so diagnostics name the real files), so validation, planning
and rendering run unchanged, once per cluster. A repository without ``clusters/`` is a single
cluster, exactly as before.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler import errors
from reconciler.source import tree as source_tree

CLUSTERS_DIR = "clusters"


def names(tree: source_tree.SourceTree) -> tuple[str, ...]:
    """The clusters of a fleet repository, sorted; empty for a single-cluster repository."""
    prefix = CLUSTERS_DIR + "/"
    found = {
        p[len(prefix) :].split("/", 1)[0]
        for p in tree.files
        if p.startswith(prefix) and p.count("/") >= 2
    }
    return tuple(sorted(found))


def view(tree: source_tree.SourceTree, name: str) -> source_tree.SourceTree:
    """The overlay one cluster sees: shared files plus ``clusters/<name>/``."""
    if name not in names(tree):
        known = ", ".join(names(tree)) or "none"
        raise errors.SourceError(f"unknown cluster {name!r} (clusters in this repository: {known})")
    own = f"{CLUSTERS_DIR}/{name}/"
    files = {
        p: data
        for p, data in tree.files.items()
        if not p.startswith(CLUSTERS_DIR + "/") or p.startswith(own)
    }
    diagnostics = tuple(
        d
        for d in tree.diagnostics
        if not d.file.startswith(CLUSTERS_DIR + "/") or d.file.startswith(own)
    )
    return replace(tree, files=files, diagnostics=diagnostics)


def views(tree: source_tree.SourceTree) -> dict[str | None, source_tree.SourceTree]:
    """Every cluster's overlay; ``{None: tree}`` for a single-cluster repository."""
    clusters = names(tree)
    if not clusters:
        return {None: tree}
    return {name: view(tree, name) for name in clusters}


def select(tree: source_tree.SourceTree, cluster: str | None) -> source_tree.SourceTree:
    """The tree to plan or render: one cluster's overlay, or the whole single-cluster tree."""
    clusters = names(tree)
    if cluster is None:
        if clusters:
            raise errors.SourceError(
                f"this repository holds several clusters ({', '.join(clusters)}): "
                "choose one with --cluster NAME"
            )
        return tree
    return view(tree, cluster)

"""Integration fixtures for the write path: the example fleet, live, and a reconciler identity.

``fleet`` loads the example repository's device snapshot into the real control plane,
creates the managed namespaces and the reconciler's ServiceAccount with the RBAC of
deploy/rbac.yaml, and yields clients for the admin and for the reconciler; everything it
made (and every owned object) is removed afterwards, and teardown waits until the apiserver
no longer enforces the deleted fence (the session's other tests share the cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from kubernetes.client import ApiClient
from live_fleet import Fleet, delete_owned, wait_unfenced
from ruamel.yaml import YAML

from reconciler import devcluster
from reconciler.devcluster import identity, workloads
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.observe import cluster


@pytest.fixture
def fleet(
    control_plane: devcluster.ControlPlane, api: ApiClient, example_repo: git.Repo
) -> Iterator[Fleet]:
    repo = example_repo
    root = Path(repo.working_dir)

    loaded = devsnapshot.load(api, root / "observed" / "snapshot.yaml")
    settings = YAML(typ="safe").load((root / "cluster.yaml").read_text())
    namespaces: list[str] = settings["spec"]["managedNamespaces"]
    for ns in namespaces:
        identity.ensure_namespace(api, ns)
    account = identity.install_rbac(api)
    kubeconfig = identity.service_account_kubeconfig(api, control_plane.kubeconfig, *account)
    reconciler = cluster.connect(str(kubeconfig))
    try:
        yield Fleet(repo, api, reconciler, loaded)
    finally:
        reconciler.close()
        for ns in namespaces:
            workloads.force_delete_pods(api, ns)
        delete_owned(api)
        devsnapshot.unload(api, loaded)
        wait_unfenced(api, namespaces[0])

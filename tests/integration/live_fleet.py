"""The example fleet made live: a repository, admin and reconciler clients, helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import git
import tenant_loop
from kubernetes.client import ApiClient

from reconciler import kube
from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller import pipeline
from reconciler.devcluster import rawapi, workloads
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.model import kinds, ownership
from reconciler.observe import cluster
from reconciler.plan import fence

FENCE_KEY = tenant_loop.FENCE_KEY
OWNED = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"


@dataclass
class Recording:
    """A real writer that records (verb, subject, dry_run) for every call, and the kinds
    whose holders it listed."""

    inner: writers.Writer
    calls: list[tuple[str, str, bool]] = field(default_factory=list)
    lists: list[str] = field(default_factory=list)

    def whoami(self) -> str:
        return self.inner.whoami()

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        self.calls.append(("apply", writers.subject_of(obj), dry_run))
        return self.inner.apply(obj, dry_run=dry_run)

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        self.calls.append(("delete", writers.subject_of(obj), dry_run))
        return self.inner.delete(obj, dry_run=dry_run)

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        self.calls.append(("managed-fields", writers.subject_of(live), dry_run))
        return self.inner.set_managed_fields(live, fields, dry_run=dry_run)

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        self.calls.append(("replace", writers.subject_of(obj), dry_run))
        return self.inner.replace(obj, dry_run=dry_run)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.inner.get(obj)

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        self.lists.append(kind)
        return self.inner.holders(kind)


@dataclass
class Fleet:
    repo: git.Repo
    admin: ApiClient
    reconciler: ApiClient
    loaded: devsnapshot.Loaded

    def reconcile(
        self,
        api: ApiClient | None = None,
        *,
        writer: writers.Writer | None = None,
        options: applying.ApplyOptions = applying.ApplyOptions(),
        rev: str = "HEAD",
        memo: pipeline.Memo | None = None,
    ) -> pipeline.Outcome:
        client = api or self.reconciler
        return pipeline.reconcile(
            pipeline.Request(str(self.repo.working_dir), rev),
            cluster.Cluster(client),
            writer or writers.KubeWriter(client),
            options,
            memo=memo,
        )


def owned(api: ApiClient) -> list[dict[str, Any]]:
    out = []
    for kind in (
        "ResourceSlice",
        "DeviceClass",
        "DeviceTaintRule",
        "ResourceClaim",
        "ResourceClaimTemplate",
        "ResourceQuota",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ):
        k = kinds.of(kind)
        body = rawapi.request(api, "GET", k.collection_path(), query={"labelSelector": OWNED})
        out += [{"apiVersion": k.api_version, "kind": kind, **o} for o in body["items"]]
    return out


def delete_owned(api: ApiClient) -> None:
    for obj in owned(api):
        rawapi.delete(api, writers.path_of(obj))
    delete_inventories(api)


def delete_inventories(api: ApiClient) -> None:
    """The inventories (model/inventory.py) go with what they list."""
    path = "/api/v1/namespaces/cu-system/configmaps"
    query = {"labelSelector": cluster.INVENTORY_SELECTOR}
    for item in rawapi.request(api, "GET", path, query=query)["items"]:
        rawapi.delete(api, f"{path}/{item['metadata']['name']}")


FENCE_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "DeviceTaintRule")


def exists(api: ApiClient, path: str) -> bool:
    resp = kube.call(api, "GET", path)
    if resp.status == 404:
        return False
    if not resp.ok:
        raise AssertionError(f"GET {path}: {resp.reason()}")
    return True


def _fence_left(api: ApiClient) -> list[str]:
    left = []
    for kind in FENCE_KINDS:
        k = kinds.of(kind)
        body = rawapi.request(api, "GET", k.collection_path())
        for obj in body["items"]:
            name = obj["metadata"]["name"]
            if (
                name == fence.POLICY_NAME
                or (obj["metadata"].get("labels") or {}).get(ownership.MANAGED_BY_KEY)
                == ownership.MANAGED_BY_VALUE
            ):
                left.append(f"{kind}/{name}")
    return left


def wait_unfenced(api: ApiClient, namespace: str, timeout: float = 90.0) -> None:
    """Wait until no fence object is left and the apiserver no longer enforces the policy.

    The cluster is shared by the test session: a deleted policy stays enforced until the
    apiserver's policy cache catches up, and would deny the next test's claims (403).
    """
    workloads.wait_for(
        lambda: not _fence_left(api), timeout=timeout, what=f"fence objects {_fence_left(api)}"
    )
    tenant_loop.wait_fence(api, namespace, enforced=False, timeout=timeout)


def wait_fenced(api: ApiClient, namespace: str, timeout: float = 90.0) -> None:
    """Wait until the apiserver enforces a just-created fence policy.

    Policies reach the admission plugin through its informer, a moment after the create; a
    production install closes that moment with the bootstrap fence (deploy/fence-policy.yaml)
    applied before the controller starts, which a test fleet built from nothing does not have.
    """
    tenant_loop.wait_fence(api, namespace, enforced=True, timeout=timeout)

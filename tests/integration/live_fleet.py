"""The example fleet made live: a repository, admin and reconciler clients, helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import git
from kubernetes.client import ApiClient

from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller import pipeline
from reconciler.devcluster import rawapi
from reconciler.devcluster import snapshot as devsnapshot
from reconciler.model import kinds, ownership
from reconciler.observe import cluster

OWNED = f"{ownership.MANAGED_BY_KEY}={ownership.MANAGED_BY_VALUE}"


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
    ) -> pipeline.Outcome:
        client = api or self.reconciler
        return pipeline.reconcile(
            pipeline.Request(str(self.repo.working_dir), rev),
            cluster.Cluster(client),
            writer or writers.KubeWriter(client),
            options,
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

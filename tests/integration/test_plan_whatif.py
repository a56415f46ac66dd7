"""``cuctl plan --what-if`` against the real apiserver: the consequences are shown and nothing
is written (every object we own, every ResourceSlice and ResourceClaim keeps its
resourceVersion)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiClient
from live_fleet import Fleet, owned
from typer.testing import CliRunner

from reconciler import cli, devcluster
from reconciler.devcluster import rawapi

pytestmark = pytest.mark.integration


def versions(api: ApiClient) -> dict[tuple[str, str, str], str]:
    out = {}
    for obj in owned(api):
        meta = obj["metadata"]
        out[(obj["kind"], meta.get("namespace", ""), meta["name"])] = meta["resourceVersion"]
    for path, kind in (
        ("/apis/resource.k8s.io/v1/resourceslices", "ResourceSlice"),
        ("/apis/resource.k8s.io/v1/resourceclaims", "ResourceClaim"),
    ):
        for item in rawapi.request(api, "GET", path)["items"]:
            meta: dict[str, Any] = item["metadata"]
            out[(kind, meta.get("namespace", ""), meta["name"])] = meta["resourceVersion"]
    return out


def test_what_if_against_the_live_cluster_shows_the_loss_and_writes_nothing(
    fleet: Fleet, control_plane: devcluster.ControlPlane
) -> None:
    outcome = fleet.reconcile()
    assert outcome.ok, outcome
    before = versions(fleet.admin)
    __import__("reconciler.cli.plan")
    result = CliRunner().invoke(
        cli.app,
        [
            "plan",
            str(fleet.repo.working_dir),
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "--what-if",
            "lose node h100-01",
            "--what-if",
            "lose node h100-02",
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 1, result.stderr
    preview = json.loads(result.stdout)
    assert preview["whatIf"] == [
        "lose node h100-01: 8 devices removed",
        "lose node h100-02: 8 devices removed",
    ]
    pools = {p["pool"]: p for p in preview["pools"]}
    prod = pools["inference-prod"]
    assert prod["beforeCU"] != prod["afterCU"], prod
    deleted = {f"{c['kind']}/{c['name']}" for c in preview["changes"] if c["action"] == "delete"}
    assert {"ResourceSlice/cu-h100-01-0", "DeviceTaintRule/cu-fence-nvidia-h100-01"} <= deleted
    assert versions(fleet.admin) == before, "a what-if must write nothing"

"""The fence audit on the real apiserver: claims made around a missing fence are found.

Before install (no admission policy, no fence rules) an admin creates, in tenant namespaces
and in an unmanaged one, a ResourceClaim that tolerates the fence taint, one that tolerates
every taint, and one the real scheduler allocates an A100 for (a device the example sells as
CU). Then the real CLI runs as the reconciler's ServiceAccount: ``cuctl apply`` installs the
fence and lists each claim as a finding, ``cuctl plan`` (in sync otherwise) names them and
exits 1, and the A100 the claim holds is not free CU; once the claims are gone the plan exits
0 and that A100's CU is free again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from kubernetes.client import ApiClient
from live_fleet import FENCE_KEY, Fleet, exists, wait_unfenced

from reconciler import devcluster
from reconciler.devcluster import rawapi, workloads
from reconciler.model import observed as obs
from reconciler.plan import fence

pytestmark = pytest.mark.integration

A100 = "NVIDIA A100-SXM4-80GB"
CLASS = "audit-test-a100"
"""An admin's own DeviceClass for the example's A100s (the pool ``batch`` sells them as CU)."""


def _cuctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _plan(root: str, kubeconfig: str) -> tuple[int, dict[str, Any]]:
    done = _cuctl("plan", root, "--kubeconfig", kubeconfig, "-o", "json", "--no-diffs")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def _batch_free(report: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """The batch pool's free CU and the CU of one A100 there."""
    [batch] = [p for p in report["pools"] if p["pool"] == "batch"]
    [row] = [r for r in batch["arithmetic"] if r["model"] == "A100-SXM4-80GB"]
    return Decimal(batch["freeCU"]), Decimal(row["cuEach"])


def _claim(name: str, tolerations: list[dict[str, str]]) -> dict[str, Any]:
    return workloads.resource_claim(name, CLASS, tolerations=tolerations)


@pytest.fixture
def admin_class(api: ApiClient) -> Iterator[str]:
    selector = f'device.attributes["gpu.nvidia.com"].productName == "{A100}"'
    name = devcluster.create_device_class(api, "nvidia", CLASS, selectors=[selector])
    yield name
    rawapi.delete(api, f"/apis/resource.k8s.io/v1/deviceclasses/{name}")


def _delete_claim(api: ApiClient, namespace: str, name: str) -> None:
    path = f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}"
    rawapi.delete(api, path)
    workloads.wait_for(
        lambda: not exists(api, path),
        timeout=60,
        what=f"claim {namespace}/{name} to be gone",
    )


def test_claims_around_a_missing_fence_are_findings_and_their_devices_are_not_free(
    fleet: Fleet, control_plane: devcluster.ControlPlane, namespace: str, admin_class: str
) -> None:
    api = fleet.admin
    kubeconfig = str(next(control_plane.kubeconfig.parent.glob("cu-system-*.kubeconfig")))
    root = str(fleet.repo.working_dir)
    wait_unfenced(api, "research")  # as before install: no fence enforced anywhere

    # 1. Around the missing fence: an admin's claims in two tenant namespaces and another.
    tolerate_key = [{"key": FENCE_KEY, "operator": "Exists", "effect": "NoSchedule"}]
    workloads.create(api, "ml-dev", _claim("tolerates-fence", tolerate_key))
    workloads.create(api, namespace, _claim("tolerates-all", [{"operator": "Exists"}]))
    workloads.create(api, "research", _claim("holds-a100", []))
    workloads.create(api, "research", workloads.pod("holds-a100", claims={"gpu": "holds-a100"}))
    workloads.wait_scheduled(api, "research", "holds-a100", timeout=90)
    allocated = workloads.get(api, "research", "ResourceClaim", "holds-a100")
    [result] = allocated["status"]["allocation"]["devices"]["results"]
    held = f"{result['driver']}/{result['pool']}/{result['device']}"
    assert result["pool"].startswith("a100-"), held
    bypass = {
        "ResourceClaim ml-dev/tolerates-fence": "tolerates the fence taint",
        f"ResourceClaim {namespace}/tolerates-all": "tolerates every taint",
        "ResourceClaim research/holds-a100": f"holds CU-managed vendor devices {held}",
    }

    try:
        # 2. The real apply installs the fence and lists every such claim.
        applied = _cuctl("apply", root, "--kubeconfig", kubeconfig)
        assert applied.returncode == 0, applied.stderr[-3000:]
        findings = [
            line for line in applied.stderr.splitlines() if line.startswith("cuctl apply: finding")
        ]
        assert len(findings) == 3, applied.stderr[-3000:]
        took = re.search(
            r"^cuctl apply: took ([\d.]+) s \(fetch [\d.]+, .*apply ([\d.]+)\)$",
            applied.stderr,
            re.MULTILINE,
        )
        assert took and float(took[1]) >= float(took[2]) > 0, "where the time went is printed"
        for subject, why in bypass.items():
            assert any(subject in f and why in f for f in findings), (subject, findings)
        policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
        assert exists(api, f"{policies}/{fence.POLICY_NAME}"), "the apply installed the fence"

        # 3. The plan is otherwise in sync, names the claims and exits 1.
        code, report = _plan(root, kubeconfig)
        assert report["changes"] == [] and report["shortfalls"] == [], report["changes"][:3]
        got = {f["subject"]: f for f in report["findings"]}
        assert set(got) == set(bypass), got
        for subject, why in bypass.items():
            assert got[subject]["code"] == str(obs.FindingCode.FENCE_BYPASS)
            assert why in got[subject]["message"]
        assert code == 1 and report["exitCode"] == 1
        free_held, cu_each = _batch_free(report)
    finally:
        workloads.force_delete_pods(api, "research")
        for ns, name in (
            ("ml-dev", "tolerates-fence"),
            (namespace, "tolerates-all"),
            ("research", "holds-a100"),
        ):
            _delete_claim(api, ns, name)

    # 4. Without them the plan exits 0, and the A100 the claim held is free CU again.
    code, report = _plan(root, kubeconfig)
    assert report["findings"] == [], report["findings"]
    assert code == 0, report["changes"][:3]
    free, _ = _batch_free(report)
    assert free - free_held == cu_each, (free, free_held, cu_each)

"""The fence audit: claims around the fence are findings and their devices are not free."""

from __future__ import annotations

from reconciler.model import observed as obs
from reconciler.model import ownership
from reconciler.plan import audit

KEY = "cu-reconciler.io/managed"
GPU0 = obs.DeviceId("gpu.nvidia.com", "node-a", "gpu-0")
GPU1 = obs.DeviceId("gpu.nvidia.com", "node-a", "gpu-1")
CU_NAMES = {("node-a", "nvidia-gpu-0"): GPU0}


def _claim(
    name: str,
    *,
    tolerated: tuple[str, ...] = (),
    held: obs.DeviceId | None = None,
    labels: dict[str, str] | None = None,
    classes: tuple[str, ...] = (),
    on_cu: bool = False,
) -> obs.ObservedClaim:
    allocated = (
        () if held is None else (obs.AllocatedDevice("gpu", held.driver, held.pool, held.device),)
    )
    if on_cu:
        allocated += (obs.AllocatedDevice("cu", "cu.example.com", "node-a", "nvidia-gpu-0"),)
    return obs.ObservedClaim(
        "team-a", name, labels or {}, allocated, tolerated=tolerated, classes=classes
    )


def test_claims_around_the_fence_are_findings_and_hold_their_devices_as_cu() -> None:
    claims = [
        _claim("tolerates", tolerated=(KEY,)),
        _claim("tolerates-all", tolerated=("*",)),
        _claim("holds", held=GPU0),
        _claim("unmanaged-device", held=GPU1),
        _claim("ours", tolerated=(KEY,), held=GPU0),
        _claim("stamped", tolerated=(KEY,)),
        _claim("other-taint", tolerated=("example.com/other",)),
    ]
    findings, holders = audit.audit(
        claims,
        KEY,
        {GPU0},
        {("team-a", "ours"), ("team-a", "stamped")},
        CU_NAMES,
        "cu.example.com",
    )
    assert [f.subject for f in findings] == [
        "ResourceClaim team-a/tolerates",
        "ResourceClaim team-a/tolerates-all",
        "ResourceClaim team-a/holds",
    ]
    assert all(f.code is obs.FindingCode.FENCE_BYPASS for f in findings)
    assert "tolerates the fence taint" in findings[0].message
    assert "tolerates every taint" in findings[1].message
    assert "gpu.nvidia.com/node-a/gpu-0" in findings[2].message
    [holder] = holders
    assert holder.allocated == (
        obs.AllocatedDevice("cu", "cu.example.com", "node-a", "nvidia-gpu-0"),
    )


def test_labels_and_names_do_not_hide_a_claim_and_cu_classes_and_devices_are_findings() -> None:
    """Item 7/8 of issue 18: only ``ours`` (uid or a genuine stamp) is skipped."""
    claims = [
        _claim("wears-template-label", tolerated=(KEY,), labels={ownership.TEMPLATE_LABEL: "x"}),
        _claim("wears-managed-by", held=GPU0, labels=dict(ownership.MANAGED_BY)),
        _claim("names-cu-class", classes=("cu-batch", "gpu.example.com")),
        _claim("holds-cu", on_cu=True),
        _claim("names-other-class", classes=("gpu.example.com",)),
    ]
    findings, holders = audit.audit(
        claims, KEY, {GPU0}, set(), CU_NAMES, "cu.example.com", {"cu-batch"}
    )
    got = {f.subject.split("/")[-1]: f.message for f in findings}
    assert sorted(got) == [
        "holds-cu",
        "names-cu-class",
        "wears-managed-by",
        "wears-template-label",
    ]
    assert "names CU DeviceClass cu-batch" in got["names-cu-class"]
    assert "namespace team-a" in got["names-cu-class"]
    assert "exceeded quota" in got["names-cu-class"]
    assert "kubectl delete resourceclaim -n team-a names-cu-class" in got["names-cu-class"]
    assert "holds CU devices node-a/nvidia-gpu-0" in got["holds-cu"]
    assert [h.name for h in holders] == ["wears-managed-by"]


def test_tolerations_are_read_from_every_request_form() -> None:
    raw = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "n"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "a", "exactly": {"tolerations": [{"key": KEY, "operator": "Exists"}]}},
                    {"name": "b", "firstAvailable": [{"tolerations": [{"operator": "Exists"}]}]},
                ]
            }
        },
    }
    [claim] = obs.build(obs.RawObjects(claims=(raw,)), (), "cu.example.com").claims
    assert claim.tolerated == ("*", KEY)

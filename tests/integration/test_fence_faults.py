"""No fence gap at any instant: stop the apply after write k, for every k, on the real cluster.

The change from revision A to B is representative: factors change for every H100 and domestic
slice (slice updates), a Whole-pool claim changes size (an immutable claim is replaced), and a
tenant's claim leaves Git (a prune). After each stop the cluster must be fenced: every device
published under the CU driver stands for a vendor device that a live DeviceTaintRule taints
with the fence key, and the admission policy and its binding exist; and a re-run converges.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient
from live_fleet import Fleet

from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller.reasons import Reason
from reconciler.devcluster import rawapi
from reconciler.plan import fence

pytestmark = pytest.mark.integration

CU_DRIVER = "cu.cu-reconciler.io"
FENCE_KEY = "cu-reconciler.io/managed"


class Killed(BaseException):
    """A kill -9 between two writes: nothing after it runs, nothing catches it."""


@dataclass
class StopAfter:
    """A writer that dies before its (limit + 1)-th real write; dry runs pass through."""

    inner: writers.KubeWriter
    limit: int
    count: int = 0

    def _tick(self, dry_run: bool) -> None:
        if dry_run:
            return
        if self.count >= self.limit:
            raise Killed(f"stopped after write {self.count}")
        self.count += 1

    def whoami(self) -> str:
        return self.inner.whoami()

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        self._tick(dry_run)
        return self.inner.apply(obj, dry_run=dry_run)

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        self._tick(dry_run)
        return self.inner.delete(obj, dry_run=dry_run)

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.inner.get(obj)

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        self._tick(dry_run)
        return self.inner.set_managed_fields(live, fields, dry_run=dry_run)


def _items(api: ApiClient, path: str) -> list[dict[str, Any]]:
    return list(rawapi.request(api, "GET", path)["items"])


def unfenced(api: ApiClient) -> list[str]:
    """CU devices whose vendor device no live fence rule taints (empty = fenced)."""
    slices = _items(api, "/apis/resource.k8s.io/v1/resourceslices")
    rules = [
        r["spec"]
        for r in _items(api, "/apis/resource.k8s.io/v1/devicetaintrules")
        if r["spec"]["taint"]["key"] == FENCE_KEY
    ]
    by_uuid: dict[str, tuple[str, str, str]] = {}
    for s in slices:
        if s["spec"]["driver"] == CU_DRIVER:
            continue
        for d in s["spec"].get("devices", []):
            for attr in d.get("attributes", {}).values():
                if isinstance(attr.get("string"), str):
                    by_uuid[attr["string"][:64]] = (
                        s["spec"]["driver"],
                        s["spec"]["pool"]["name"],
                        d["name"],
                    )
    problems = []
    published = False
    for s in slices:
        if s["spec"]["driver"] != CU_DRIVER:
            continue
        for d in s["spec"].get("devices", []):
            published = True
            uuid = d["attributes"]["uuid"]["string"]
            vendor = by_uuid.get(uuid)
            if vendor is None:
                continue  # its vendor device is gone: nothing to take around CU
            driver, pool, device = vendor
            if not any(
                r["deviceSelector"].get("driver") in (None, driver)
                and r["deviceSelector"].get("pool") in (None, pool)
                and r["deviceSelector"].get("device") in (None, device)
                for r in rules
            ):
                problems.append(f"{s['metadata']['name']}/{d['name']} → {driver}/{pool}/{device}")
    if published:
        policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
        bindings = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
        for path in (policies, bindings):
            names = {o["metadata"]["name"] for o in _items(api, path)}
            if fence.POLICY_NAME not in names:
                problems.append(f"{path}/{fence.POLICY_NAME} missing while CU is published")
    return problems


def _revision_b(root: Path) -> None:
    factors = root / "factors" / "default.yaml"
    text = factors.read_text(encoding="utf-8")
    text = re.sub(
        r"value: (\d+\.\d+)",
        lambda m: m.group(0) if m.group(1) == "1.0" else f"value: {float(m.group(1)) * 0.9:.3f}",
        text,
    )
    factors.write_text(text, encoding="utf-8")
    claims = root / "claims" / "research-batch" / "eval-sweep.yaml"
    text = claims.read_text(encoding="utf-8")
    assert "cu: 100\n" in text
    claims.write_text(text.replace("cu: 100\n", "cu: 50\n", 1), encoding="utf-8")
    (root / "claims" / "ads-embedding" / "backfill.yaml").unlink()


def test_a_stop_after_any_write_leaves_the_fence_closed_and_a_rerun_converges(
    fleet: Fleet,
) -> None:
    root = Path(fleet.repo.working_dir)
    assert fleet.reconcile().reason is Reason.SUCCEEDED
    rev_a = fleet.repo.head.commit.hexsha
    _revision_b(root)
    fleet.repo.git.add(A=True)
    rev_b = fleet.repo.index.commit("B: factors, a resized claim, a removed claim").hexsha

    serial = applying.ApplyOptions(concurrency=1)
    counting = StopAfter(writers.KubeWriter(fleet.reconciler), limit=10**6)
    full = fleet.reconcile(writer=counting, options=serial, rev=rev_b)
    assert full.reason is Reason.SUCCEEDED, full.message
    assert full.changes is not None
    actions = {e.action.value for e in full.changes.changes}
    assert {"update", "replace", "delete"} <= actions, actions
    total = counting.count
    assert total >= 5, total

    for k in range(total):
        back = fleet.reconcile(options=serial, rev=rev_a)
        assert back.reason is Reason.SUCCEEDED, (k, back.message)
        assert unfenced(fleet.admin) == []
        with pytest.raises(Killed):
            fleet.reconcile(
                writer=StopAfter(writers.KubeWriter(fleet.reconciler), limit=k),
                options=serial,
                rev=rev_b,
            )
        assert unfenced(fleet.admin) == [], f"fence gap after write {k} of {total}"
        rerun = fleet.reconcile(rev=rev_b)
        assert rerun.reason is Reason.SUCCEEDED, (k, rerun.message)
        assert unfenced(fleet.admin) == []
        again = fleet.reconcile(rev=rev_b)
        assert again.applied is not None and again.applied.writes == 0, k

"""No fence gap at any instant: stop the apply after write k, for every k, on the real cluster.

One combined change from revision A to B exercises every ordering rule at once (one loop over
k keeps the file's runtime bounded; the way back from B to A is fault-injected too):

* factors change for every slice (slice updates on every node);
* a vendor is renamed (``biren`` → ``birentech``): its fence rules, vendor DeviceClass and
  CU device names change, so new rules are created and the old ones deleted;
* a pool is re-partitioned: ``batch`` is split by vendor into ``batch`` and a new
  ``batch-domestic`` pool (new class; the admission policy, matching ``cu-*``, unchanged)
  that also takes a node that was unmanaged (its CU slice and fence rule are created),
  while ``dev`` gives up a node
  that no pool takes any more (its CU slice and fence rule are deleted); devices move
  between pools on the other nodes;
* a Whole-pool claim changes size and a template changes pool (immutable: replaced), and a
  tenant's claim leaves Git (a prune).

After each stop the cluster must be fenced: every device published under the CU driver stands
for a vendor device that a live DeviceTaintRule taints with the fence key, the admission
policy and its binding exist, and the policy's CEL denies tenants every live CU pool
DeviceClass; a tenant (RBAC for claims, no quota of ours) asking the real apiserver for each
live CU class, or tolerating the fence or every taint, is refused by the fence (issue 18:
"kill -9 at every write k" with a tenant); and a re-run converges (a further run writes
nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import celpy
import pytest
import tenant_loop
from celpy import celtypes
from kubernetes.client import ApiClient
from live_fleet import Fleet, wait_fenced

from reconciler.apply import apply as applying
from reconciler.apply import writer as writers
from reconciler.controller.reasons import Reason
from reconciler.devcluster import identity, rawapi, workloads
from reconciler.plan import fence

pytestmark = pytest.mark.integration

CU_DRIVER = "cu.cu-reconciler.io"
FENCE_KEY = "cu-reconciler.io/managed"
T = TypeVar("T")


class Killed(BaseException):
    """A kill -9 between two writes: nothing after it runs, nothing catches it."""


@dataclass
class StopAfter:
    """A writer that dies before its (limit + 1)-th real write; dry runs pass through.

    Only writes the apiserver accepted count: a replace's re-create refused by a quota that
    has not yet seen the delete is retried by apply (``quota_wait``), and counting those
    attempts would make the number of writes depend on the quota controller's timing.
    """

    inner: writers.KubeWriter
    limit: int
    count: int = 0

    def _write(self, dry_run: bool, call: Callable[[], T]) -> T:
        if dry_run:
            return call()
        if self.count >= self.limit:
            raise Killed(f"stopped after write {self.count}")
        out = call()
        self.count += 1
        return out

    def whoami(self) -> str:
        return self.inner.whoami()

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        return self._write(dry_run, lambda: self.inner.apply(obj, dry_run=dry_run))

    def delete(self, obj: Mapping[str, Any], *, dry_run: bool) -> bool:
        return self._write(dry_run, lambda: self.inner.delete(obj, dry_run=dry_run))

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.inner.get(obj)

    def holders(self, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
        return self.inner.holders(kind)

    def replace(self, obj: Mapping[str, Any], *, dry_run: bool) -> dict[str, Any]:
        return self._write(dry_run, lambda: self.inner.replace(obj, dry_run=dry_run))

    def set_managed_fields(
        self, live: Mapping[str, Any], fields: list[Any], *, dry_run: bool
    ) -> dict[str, Any]:
        return self._write(
            dry_run, lambda: self.inner.set_managed_fields(live, fields, dry_run=dry_run)
        )


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
        problems += _admission_gaps(api)
    return problems


def _admission_gaps(api: ApiClient) -> list[str]:
    """The policy and binding exist, and the policy denies tenants every live CU pool class."""
    problems = []
    policies = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
    bindings = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    live = {}
    for path in (policies, bindings):
        live[path] = {o["metadata"]["name"]: o for o in _items(api, path)}
        if fence.POLICY_NAME not in live[path]:
            problems.append(f"{path}/{fence.POLICY_NAME} missing while CU is published")
    policy = live[policies].get(fence.POLICY_NAME)
    if policy is None:
        return problems
    for cls in _items(api, "/apis/resource.k8s.io/v1/deviceclasses"):
        labels = cls["metadata"].get("labels") or {}
        name = cls["metadata"]["name"]
        if labels.get("cu-reconciler.io/component") == "pool-class" and not _denies_class(
            policy, name
        ):
            problems.append(f"DeviceClass {name} selects CU devices but the policy allows it")
    return problems


def _denies_class(policy: Mapping[str, Any], name: str) -> bool:
    """The live policy's own CEL (cel-python) refuses a tenant's claim for class ``name``."""
    env = celpy.Environment()
    request = celtypes.MapType(
        {
            celtypes.StringType("exactly"): celtypes.MapType(
                {celtypes.StringType("deviceClassName"): celtypes.StringType(name)}
            )
        }
    )
    activation = {
        "variables": celtypes.MapType(
            {celtypes.StringType("requests"): celtypes.ListType([request])}
        )
    }
    return not all(
        bool(env.program(env.compile(v["expression"])).evaluate(activation))
        for v in policy["spec"]["validations"]
    )


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{path}: {old!r}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _revision_a(root: Path) -> None:
    """The example, with the dev-tier Hygon node (z100-01) left out of every pool.

    The repository drops its committed snapshot: the devices are live (the fixture loaded
    them) and parsing 90 KB of YAML twice per reconcile would dominate this file's runtime.
    """
    _replace(root / "cluster.yaml", "snapshot: observed/snapshot.yaml", "snapshot: null")
    _replace(
        root / "pools" / "dev.yaml",
        "  selector:\n",
        "  selector:\n    vendors: [nvidia, iluvatar]\n",
    )


BATCH_DOMESTIC = """\
apiVersion: cu-reconciler.io/v1alpha1
kind: CUPool
metadata:
  name: batch-domestic
spec:
  selector:
    vendors: [birentech, iluvatar, hygon]
    models: [BR104, BI-V150, K100, Z100]
    nodeSelector:
      matchExpressions:
        - key: platform.example.com/tier
          operator: In
          values: [batch, dev]
  sharing:
    mode: Whole
  declaredCapacity: 1000
"""


def _revision_b(root: Path) -> None:
    factors = root / "factors" / "default.yaml"
    text = factors.read_text(encoding="utf-8")
    text = re.sub(
        r"value: (\d+\.\d+)",
        lambda m: m.group(0) if m.group(1) == "1.0" else f"value: {float(m.group(1)) * 0.9:.3f}",
        text,
    )
    factors.write_text(text, encoding="utf-8")
    research = root / "claims" / "research-batch" / "eval-sweep.yaml"
    _replace(research, "cu: 100\n", "cu: 50\n")
    (root / "claims" / "ads-embedding" / "backfill.yaml").unlink()
    # The vendor rename: the adapter and every selector that names the vendor.
    _replace(root / "adapters" / "biren.yaml", "  vendor: biren\n", "  vendor: birentech\n")
    _replace(
        root / "pools" / "inference-prod.yaml",
        "vendors: [nvidia, biren, huawei]",
        "vendors: [nvidia, birentech, huawei]",
    )
    _replace(research, "allow: [biren, iluvatar, hygon]", "allow: [birentech, iluvatar, hygon]")
    # The re-partition: batch split by vendor; dev keeps NVIDIA only (biv100-01 leaves CU,
    # z100-01 joins batch-domestic).
    _replace(root / "pools" / "dev.yaml", "vendors: [nvidia, iluvatar]", "vendors: [nvidia]")
    _replace(root / "pools" / "batch.yaml", "  selector:\n", "  selector:\n    vendors: [nvidia]\n")
    (root / "pools" / "batch-domestic.yaml").write_text(BATCH_DOMESTIC, encoding="utf-8")
    _replace(research, "  pool: batch\n  cu: 15", "  pool: batch-domestic\n  cu: 15")
    _replace(
        root / "tenants" / "research-batch.yaml",
        "    - pool: batch\n      guaranteed: 1600\n",
        "    - pool: batch\n      guaranteed: 1000\n"
        "    - pool: batch-domestic\n      guaranteed: 600\n",
    )


def _commit(fleet: Fleet, message: str) -> str:
    fleet.repo.git.add(A=True)
    return fleet.repo.index.commit(message).hexsha


def _kinds(changes: Any, action: str) -> set[str]:
    return {e.key.kind for e in changes.changes if e.action.value == action}


def _count_writes(fleet: Fleet, rev: str) -> tuple[int, Any]:
    """Converge on ``rev`` serially, counting the real writes."""
    counting = StopAfter(writers.KubeWriter(fleet.reconciler), limit=10**6)
    outcome = fleet.reconcile(writer=counting, options=SERIAL, rev=rev)
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert outcome.changes is not None
    return counting.count, outcome.changes


def _stop_then_rerun(fleet: Fleet, rev: str, k: int, what: str) -> None:
    """Stop the apply towards ``rev`` after write k; fenced; a re-run converges for good."""
    with pytest.raises(Killed):
        fleet.reconcile(
            writer=StopAfter(writers.KubeWriter(fleet.reconciler), limit=k),
            options=SERIAL,
            rev=rev,
        )
    assert unfenced(fleet.admin) == [], f"fence gap after write {k} {what}"
    admitted = tenant_admitted(fleet.admin)
    assert admitted == [], f"a tenant's claim admitted after write {k} {what}: {admitted}"
    _converge(fleet, rev, f"the re-run after write {k} {what}")


TENANT_NS = "fence-tenant-faults"
TENANT = f"system:serviceaccount:{TENANT_NS}:tenant"
PROBES: list[int] = []
"""The size of each tenant round checked (printed: BENCHMARKS.md)."""


def tenant_admitted(api: ApiClient) -> list[str]:
    """A tenant's claims at this instant, on the real apiserver (dry run): one naming each
    live CU class (pool and vendor classes) and ones tolerating the fence or every taint on
    a vendor DeviceClass (the policy's toleration rule does not depend on the class); the
    names of those the fence did not refuse."""
    cu, vendor = [], []
    for cls in _items(api, "/apis/resource.k8s.io/v1/deviceclasses"):
        name = cls["metadata"]["name"]
        (cu if name.startswith("cu-") else vendor).append(name)
    attempts = tenant_loop.fence_attempts(
        TENANT_NS, cu_classes=cu, tolerating_classes=sorted(vendor)[:1]
    )
    round_ = attempts(0)
    PROBES.append(len(round_))
    return [
        f"{what} ({resp.status})"
        for what, body in round_
        if not tenant_loop.fenced(resp := tenant_loop.post_as(api, TENANT, body, dry_run=True))
    ]


def _converge(fleet: Fleet, rev: str, what: str) -> None:
    rerun = fleet.reconcile(rev=rev)
    assert rerun.reason is Reason.SUCCEEDED, (what, rerun.message)
    assert unfenced(fleet.admin) == [], f"fence gap after {what}"
    again = fleet.reconcile(rev=rev)
    assert again.applied is not None and again.applied.writes == 0, (what, again.message)


SERIAL = applying.ApplyOptions(concurrency=1)


def test_a_stop_after_any_write_leaves_the_fence_closed_and_a_rerun_converges(
    fleet: Fleet,
) -> None:
    root = Path(fleet.repo.working_dir)
    _revision_a(root)
    rev_a = _commit(fleet, "A: the dev-tier Hygon node outside CU")
    first = fleet.reconcile(rev=rev_a)
    assert first.reason is Reason.SUCCEEDED, first.message
    assert unfenced(fleet.admin) == []
    # A tenant with RBAC for claims (no quota of ours): only the fence can refuse it, and it
    # does at every stop below (tenant_admitted); a plain claim is admitted.
    identity.ensure_namespace(fleet.admin, TENANT_NS)
    wait_fenced(fleet.admin, TENANT_NS)
    tenant_loop.grant_claims(fleet.admin, TENANT_NS, TENANT)
    plain = workloads.resource_claim("plain", "gpu.hygon.example.com", namespace=TENANT_NS)
    workloads.wait_for(
        lambda: tenant_loop.post_as(fleet.admin, TENANT, plain, dry_run=True).status == 201,
        timeout=60,
        what="the tenant's RBAC",
    )
    assert tenant_admitted(fleet.admin) == []
    _revision_b(root)
    rev_b = _commit(fleet, "B: factors, a vendor renamed, a pool re-partitioned, claims")

    forward, changes = _count_writes(fleet, rev_b)
    # The change is as representative as the docstring says.
    assert {"DeviceTaintRule", "DeviceClass", "ResourceSlice"} <= _kinds(changes, "create")
    assert {"DeviceTaintRule", "DeviceClass", "ResourceSlice"} <= _kinds(changes, "delete")
    assert "ResourceSlice" in _kinds(changes, "update")
    # A new pool never touches the policy: it already denies every cu-* class.
    assert not any(e.key.kind == "ValidatingAdmissionPolicy" for e in changes.changes)
    assert {"ResourceClaim", "ResourceClaimTemplate"} <= _kinds(changes, "replace")
    slices = [e for e in changes.changes if e.key.kind == "ResourceSlice"]
    assert len(slices) == 22, [e.subject for e in slices]  # every node's slice is touched
    assert forward >= 40, forward
    backward, _ = _count_writes(fleet, rev_a)  # the same change undone: B → A
    assert backward >= 40, backward

    # Each step stops one apply A → B after write k and one B → A after write k: getting
    # back to A for the next k is itself a fault-injected run, so both directions are
    # covered for every k at the cost of one.
    for k in range(max(forward, backward)):
        for rev, total, what in ((rev_b, forward, "A → B"), (rev_a, backward, "B → A")):
            if k < total:
                _stop_then_rerun(fleet, rev, k, f"of {total} ({what})")
            else:
                _converge(fleet, rev, what)
    print(
        f"kill -9 at every write: {forward} writes A → B, {backward} B → A; {len(PROBES)} "
        f"states checked (revision A and every stop), {sum(PROBES)} tenant claims tried, 0 admitted"
    )
    rawapi.delete(fleet.admin, f"/api/v1/namespaces/{TENANT_NS}")

"""``cuctl run`` against the real control plane, as the reconciler's ServiceAccount.

Each test starts the controller as a subprocess following a bare Git remote, and proves one
contract of issue 10: commits converge (polling and webhook), an idle controller writes
nothing, a vendor driver's new node gets its CU slice and fence with no commit (and a
withdrawn node loses them), drift is restored, an invalid commit stalls with file:line and
changes nothing, and with two replicas exactly one writes and the other takes over.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import tenant_loop
from harness import LEASE, Env, owned, versions, wait_for
from ruamel.yaml import YAML

from reconciler.devcluster import drivers, nodes, rawapi, workloads
from reconciler.model import kinds

pytestmark = pytest.mark.integration

BINDING = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
EVENTS = "/apis/events.k8s.io/v1/namespaces/default/events"


def _drop_claim(root: Path) -> None:
    (root / "claims" / "search-ranking" / "query-rewrite.yaml").unlink()


def _has_claim(env: Env, name: str) -> bool:
    """A claim or template generated for the CUClaim ``name`` exists."""
    return any(
        o["kind"] in ("ResourceClaim", "ResourceClaimTemplate") and name in o["metadata"]["name"]
        for o in owned(env.admin)
    )


def _query_rewrite(env: Env) -> str:
    doc = YAML(typ="safe").load(
        (
            Path(env.clone.working_dir) / "claims" / "search-ranking" / "query-rewrite.yaml"
        ).read_text()
    )
    return str(doc["metadata"]["name"])


def test_a_pushed_commit_converges_by_polling(env: Env) -> None:
    replica = env.start(interval="1s")
    first = env.ready_at(env.head())
    status = first["status"]
    assert status["inventory"]["ResourceSlice"] > 0
    assert {p["name"] for p in status["pools"]} >= {"inference-prod", "batch"}
    assert status["observedGeneration"] == first["metadata"]["generation"]
    claim = _query_rewrite(env)
    assert _has_claim(env, claim)

    sha = env.commit("drop a claim", _drop_claim)
    t0 = time.monotonic()
    env.ready_at(sha, timeout=60)
    assert not _has_claim(env, claim)
    assert time.monotonic() - t0 < 30
    assert env.condition("Reconciling") is None and env.condition("Stalled") is None
    text = replica.metrics()
    assert f'cu_revision_info{{kind="applied",revision="{sha}"}} 1.0' in text
    assert 'cu_reconcile_total{result="ReconciliationSucceeded"}' in text
    logs = [line for line in replica.lines() if line.get("msg") == "reconcile"]
    assert logs and all("reconcile" in line and "revision" in line for line in logs)


def test_a_signed_push_webhook_converges_without_polling(env: Env) -> None:
    replica = env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    sha = env.commit("drop a claim", _drop_claim)
    payload = {"ref": "refs/heads/main", "after": sha}
    assert env.webhook(replica, payload, sign=False) == 401
    assert env.webhook(replica, {"ref": "refs/heads/other"}) == 202
    time.sleep(2)
    assert env.sync()["status"]["lastAppliedRevision"] != sha, "unsigned/other branch: ignored"
    t0 = time.monotonic()
    assert env.webhook(replica, payload) == 202
    env.ready_at(sha, timeout=30)
    assert time.monotonic() - t0 < 10


def test_an_idle_controller_writes_nothing_over_several_resyncs(env: Env) -> None:
    replica = env.start(interval="1s", resync="2s")
    env.ready_at(env.head())
    time.sleep(3)  # let the watch echo of our own writes settle
    before_objects = versions(env.admin)
    before_sync = env.sync()["metadata"]["resourceVersion"]
    events_before = rawapi.request(
        env.admin, "GET", "/apis/events.k8s.io/v1/namespaces/default/events"
    )
    count_before = len(events_before["items"])
    time.sleep(8)  # four resync periods, eight polls
    assert versions(env.admin) == before_objects
    assert env.sync()["metadata"]["resourceVersion"] == before_sync
    events_after = rawapi.request(
        env.admin, "GET", "/apis/events.k8s.io/v1/namespaces/default/events"
    )
    assert len(events_after["items"]) == count_before
    resyncs = [
        line
        for line in replica.lines()
        if line.get("msg") == "reconcile" and "resync" in line.get("why", [])
    ]
    assert len(resyncs) >= 2, "the resyncs did run"


def test_a_new_vendor_node_gets_cu_and_fence_without_a_commit_and_loses_them_when_withdrawn(
    env: Env,
) -> None:
    replica = env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    labels = {
        "accelerator.example.com/vendor": "nvidia",
        "platform.example.com/tier": "production",
        "topology.kubernetes.io/zone": "cn-north-1a",
        "node.kubernetes.io/instance-type": "hgx-h100-8",
    }
    node = "h100-09"
    nodes.create_node(env.admin, node, labels)
    try:
        t0 = time.monotonic()
        drivers.publish_node(env.admin, node, drivers.Vendor.NVIDIA, "H100", 8)

        def published() -> bool:
            names = {(o["kind"], o["metadata"]["name"]) for o in owned(env.admin)}
            fenced = any(
                o["kind"] == "DeviceTaintRule" and o["spec"]["deviceSelector"].get("pool") == node
                for o in owned(env.admin)
            )
            return ("ResourceSlice", f"cu-{node}-0") in names and fenced

        wait_for("the new node's CU slice and fence", published, 30)
        assert time.monotonic() - t0 < 15
        # The revision was not re-read: the node event reused its loaded desired state.
        assert any(
            line.get("cached") and line.get("result") == "ReconciliationSucceeded"
            for line in replica.lines()
        ), "a watch-triggered reconcile reused the revision's desired state"
        pools = {p["name"]: p for p in env.sync()["status"]["pools"]}
        capacity = pools["inference-prod"]["capacityCU"]

        drivers.withdraw_node(env.admin, node, drivers.Vendor.NVIDIA)
        wait_for(
            "the withdrawn node's CU slice to leave",
            lambda: not any(o["metadata"]["name"] == f"cu-{node}-0" for o in owned(env.admin)),
            30,
        )
        wait_for(
            "the pool's capacity to drop",
            lambda: (
                {p["name"]: p for p in env.sync()["status"]["pools"]}["inference-prod"][
                    "capacityCU"
                ]
                < capacity
            ),
            30,
        )
        # The node's events were observed from the watch cache, not by listing everything
        # (the first reconcile, on becoming the leader, lists).
        reads = {
            m.group(1): float(m.group(2))
            for m in re.finditer(
                r'^cu_observe_reads_total\{source="(\w+)"\} (\S+)$', replica.metrics(), re.M
            )
        }
        assert reads.get("cache", 0) >= 2 and reads.get("list", 0) >= 1, reads
    finally:
        drivers.withdraw_node(env.admin, node)
        nodes.delete_node(env.admin, node)


def test_a_hand_edit_and_a_deleted_admission_binding_are_restored(env: Env) -> None:
    env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    bindings = [o for o in owned(env.admin) if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert bindings
    name = bindings[0]["metadata"]["name"]
    rawapi.delete(env.admin, f"{BINDING}/{name}")
    classes = [o for o in owned(env.admin) if o["kind"] == "DeviceClass"]
    k = kinds.of("DeviceClass")
    cls = classes[0]["metadata"]["name"]
    rawapi.request(
        env.admin,
        "PATCH",
        k.object_path(cls, ""),
        body={"metadata": {"labels": {"hand": "edit"}}, "spec": {"selectors": []}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        "the admission binding to come back",
        lambda: rawapi.request(env.admin, "GET", f"{BINDING}/{name}"),
        30,
    )
    # A merge patch server-side apply cannot take back (it would merge ["Warn", "Deny"]):
    # the controller replaces the binding whole.
    rawapi.request(
        env.admin,
        "PATCH",
        f"{BINDING}/{name}",
        body={"spec": {"validationActions": ["Warn"]}},
        query={"fieldManager": "kubectl-edit"},
        content_type="application/merge-patch+json",
    )
    wait_for(
        "Deny to be restored",
        lambda: (
            rawapi.request(env.admin, "GET", f"{BINDING}/{name}")["spec"]["validationActions"]
            == ["Deny"]
        ),
        30,
    )
    wait_for(
        "the DeviceClass selectors to be restored",
        lambda: rawapi.request(env.admin, "GET", k.object_path(cls, ""))["spec"].get("selectors"),
        30,
    )


def test_an_invalid_commit_stalls_with_file_and_line_and_changes_nothing(env: Env) -> None:
    env.start(interval="1s", resync="3s")
    good = env.head()
    env.ready_at(good)
    before = versions(env.admin)

    target = "claims/ads-embedding/backfill.yaml"
    original = (Path(env.clone.working_dir) / target).read_text()

    def break_claim(root: Path) -> None:
        (root / target).write_text(original + "extra: [unclosed\n")

    bad = env.commit("typo", break_claim)

    def stalled() -> dict[str, Any] | None:
        cond = env.condition("Stalled")
        return cond if cond and cond["status"] == "True" else None

    cond = wait_for("Stalled", stalled, 60)
    status = env.sync()["status"]
    assert cond["reason"] == "ValidationFailed", cond
    assert status["lastAttemptedRevision"] == bad
    assert status["lastAppliedRevision"] == good, "the previous state stays"
    assert status["lastError"]["file"] == target
    assert status["lastError"]["line"] > 0
    ready = env.condition("Ready")
    assert ready is not None and ready["status"] == "False"
    assert env.condition("Reconciling") is None, "Stalled and Reconciling exclude each other"
    assert versions(env.admin) == before, "nothing written"
    rv = env.sync()["metadata"]["resourceVersion"]
    time.sleep(5)
    assert env.sync()["metadata"]["resourceVersion"] == rv, "a stalled controller is quiet"

    def fix_claim(root: Path) -> None:
        (root / target).write_text(original)

    fixed = env.commit("fix", fix_claim)
    env.ready_at(fixed)
    assert env.condition("Stalled") is None


def test_two_replicas_one_leader_and_a_takeover_after_kill_9(env: Env) -> None:
    a = env.start("replica-a", interval="1s", resync="3s")
    wait_for(
        "a leader",
        lambda: rawapi.request(env.admin, "GET", LEASE)["spec"].get("holderIdentity"),
        30,
    )
    b = env.start("replica-b", interval="1s", resync="3s")
    env.ready_at(env.head())
    leader, standby = (
        (a, b)
        if rawapi.request(env.admin, "GET", LEASE)["spec"]["holderIdentity"] == "replica-a"
        else (b, a)
    )
    time.sleep(4)
    assert not [line for line in standby.lines() if line.get("msg") == "reconcile"], (
        "standby never reconciles"
    )
    served = wait_for("the standby's metrics", lambda: standby.metrics(), 30)
    assert "cu_reconcile_duration_seconds" in served, "standby serves metrics"

    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait()
    killed = time.monotonic()
    wait_for(
        "the standby to take over",
        lambda: (
            rawapi.request(env.admin, "GET", LEASE)["spec"]["holderIdentity"] == standby.identity
        ),
        30,
    )
    took = time.monotonic() - killed
    assert took < 15 + 5, took
    sha = env.commit("drop a claim", _drop_claim)
    env.ready_at(sha, timeout=30)
    assert [line for line in standby.lines() if line.get("msg") == "reconcile"]
    assert standby.stop() == 0, "SIGTERM: a clean stop"
    assert rawapi.request(env.admin, "GET", LEASE)["spec"]["holderIdentity"] == "", "released"


def _fence_gaps(env: Env) -> set[str]:
    """Vendor pools with a CU slice published but no fence rule (must always be empty)."""
    objs = owned(env.admin)
    cu_pools = {
        str(o["spec"].get("nodeName"))
        for o in objs
        if o["kind"] == "ResourceSlice" and o["spec"].get("devices")
    }
    fenced = {
        str(o["spec"]["deviceSelector"].get("pool")) for o in objs if o["kind"] == "DeviceTaintRule"
    }
    return cu_pools - fenced


def test_the_apiserver_killed_mid_reconcile_then_back_converges_with_no_fence_gap(
    env: Env,
) -> None:
    replica = env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    assert _fence_gaps(env) == set()
    sha = env.commit("drop a claim", _drop_claim)
    assert env.webhook(replica, {"ref": "refs/heads/main", "after": sha}) == 202
    time.sleep(0.3)
    env.cp.kill("kube-apiserver")
    time.sleep(3)
    env.cp.restart("kube-apiserver")
    env.admin.rest_client.pool_manager.clear()
    env.ready_at(sha, timeout=120)
    assert _fence_gaps(env) == set()
    assert replica.proc.poll() is None, "the controller survived the outage"


def test_a_binding_deleted_right_after_an_apiserver_restart_is_restored_within_seconds(
    env: Env,
) -> None:
    """Issue 18 item 3: the watch that re-opens after a restart missed the DELETE; every
    re-list now reconciles, so the binding is back in seconds, not at the resync."""
    env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    path = f"{BINDING}/cu-reconciler-fence"
    took = []
    for delay in (0.0, 2.5, 5.0):
        env.cp.kill("kube-apiserver")
        env.cp.restart("kube-apiserver")  # returns once /readyz answers 200
        env.admin.rest_client.pool_manager.clear()
        time.sleep(delay)
        wait_for("the delete", lambda: rawapi.delete(env.admin, path) or True, 20)
        t0 = time.monotonic()
        wait_for("the binding to be restored", lambda: rawapi.request(env.admin, "GET", path), 30)
        took.append(round(time.monotonic() - t0, 2))
        wait_for(
            "tenants to be denied again",
            lambda: not tenant_loop.tolerating_claim_admitted(env.admin, "research"),
            30,
        )
    print(f"binding restored after a delete at 0 / 2.5 / 5 s after ready in {took} s")
    assert max(took) < 15, took


def test_devices_lost_under_a_running_claim_show_in_status_event_and_metric(env: Env) -> None:
    """Issue 20.6: after a node's devices disappeared under a running claim, the CUSync stayed
    Ready=True with a Normal event and silently dropped the claim's CU from admittedCU."""
    replica = env.start(interval="10m", resync="10m")
    env.ready_at(env.head())
    # The example's A100 claim, allocated for real by the scheduler through a Pod.
    workloads.create(env.admin, "research", workloads.pod("distill", claims={"cu": "distill-a100"}))
    workloads.wait_scheduled(env.admin, "research", "distill", timeout=90)

    def pinned() -> bool:
        claim = workloads.get(env.admin, "research", "ResourceClaim", "distill-a100")
        return bool((claim.get("status") or {}).get("allocation"))

    wait_for("the claim allocated", pinned, 60)
    a100 = [
        n["metadata"]["name"]
        for n in rawapi.request(env.admin, "GET", "/api/v1/nodes")["items"]
        if n["metadata"]["name"].startswith("a100-")
    ]
    assert a100
    for node in a100:  # every A100 node's driver gone: the claim fits nowhere else
        drivers.withdraw_node(env.admin, node)

    def shortfall() -> dict[str, Any] | None:
        status = env.sync().get("status") or {}
        for x in status.get("shortfalls") or ():
            if x.get("subject") == "claim research/distill-a100":
                return dict(x)
        return None

    found = wait_for("the claim's shortfall in the status", shortfall, 60)
    assert found["message"].startswith("promise not deliverable: "), found
    assert found["deliverableCU"] < found["promisedCU"], found
    ready = env.condition("Ready")
    assert ready is not None and "promises not deliverable" in ready["message"], ready

    def event() -> bool:
        items = rawapi.request(env.admin, "GET", EVENTS)["items"]
        return any(
            e["reason"] == "PromiseNotDeliverable"
            and e["type"] == "Warning"
            and "research/distill-a100" in str(e.get("note"))
            for e in items
        )

    wait_for("the PromiseNotDeliverable Event", event, 30)
    metric = f'cu_promise_shortfall_cu{{pool="batch",tenant="{found["tenant"]}"}}'
    line = next((x for x in replica.metrics().splitlines() if x.startswith(metric)), "")
    assert line and float(line.split()[-1]) > 0, line or replica.metrics()[-3000:]


def test_fence_findings_are_in_the_status_while_the_reconcile_is_degraded(env: Env) -> None:
    """Issue 20.6: fence findings were not shown while a reconcile was Degraded. Before the
    controller starts, someone else holds the name of one of our claims (a conflict: the
    reconcile is Degraded) and a claim in ``default`` tolerates the fence's taint."""
    squatter = workloads.resource_claim("distill-a100", "gpu.nvidia.com")
    workloads.create(env.admin, "research", squatter)
    sneaky = workloads.resource_claim(
        "sneaky",
        "gpu.nvidia.com",
        tolerations=[{"key": "cu-reconciler.io/managed", "operator": "Exists"}],
    )
    path = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims"
    try:
        rawapi.request(env.admin, "POST", path, body=sneaky)
        env.start(interval="10m", resync="10m")

        def degraded() -> dict[str, Any] | None:
            ready = env.condition("Ready")
            if ready and ready["reason"] == "ReconciliationDegraded":
                return env.sync()["status"]
            return None

        status = wait_for("a Degraded reconcile", degraded, 90)
        assert env.condition("Ready")["status"] == "False"  # type: ignore[index]
        found = {(f["namespace"], f["name"]) for f in status.get("fenceFindings") or ()}
        assert ("default", "sneaky") in found, status.get("fenceFindings")

        def event() -> bool:
            items = rawapi.request(env.admin, "GET", EVENTS)["items"]
            return any(
                e["reason"] == "FenceFinding" and "default/sneaky" in str(e.get("note"))
                for e in items
            )

        wait_for("the FenceFinding Event", event, 30)
    finally:
        rawapi.delete(env.admin, f"{path}/sneaky")
        rawapi.delete(
            env.admin, "/apis/resource.k8s.io/v1/namespaces/research/resourceclaims/distill-a100"
        )

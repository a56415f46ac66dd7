"""One truth in every mode (issue 21, item 4): the same inputs give the same admission
whether the live side is the cluster (``apply``, ``run``, ``plan --kubeconfig``, a snapshot
``cuctl snapshot`` wrote), a snapshot made with ``kubectl get
nodes,resourceslices,resourceclaims`` (no objects of ours: what ``cuctl render`` often gets),
or the base revision's target (``plan --base``).

The defect: with the kubectl snapshot, render treated an in-use claim and a non-preemptible
template as new, and after a node loss dropped both (Argo CD would prune them). What the
observed ResourceClaims prove exists (a claim with our label, the template a Pod's claim was
stamped from) is now read as existing in every mode.
"""

from __future__ import annotations

import copy
from typing import Any

import cu_example as ex

from reconciler import plan as planning
from reconciler.model import observed as obs
from reconciler.observe import sources
from reconciler.plan import admission, gitops

_TENANTS = (
    ex.tenant(
        "vip",
        {
            "namespaces": ["search"],
            "priority": 1000,
            "preemptible": False,
            "quotas": [{"pool": "train", "guaranteed": 255}],
        },
    ),
    ex.tenant(
        "ads",
        {
            "namespaces": ["ads"],
            "priority": 100,
            "mayBorrow": True,
            "quotas": [{"pool": "train", "guaranteed": 200}],
        },
    ),
    ex.tenant("lab", {"namespaces": ["lab"], "priority": 10, "mayBorrow": True}),
)
_CLAIMS = (
    ex.claim(
        "serve",
        {
            "tenant": "vip",
            "pool": "train",
            "cu": 100,
            "form": "ResourceClaimTemplate",
            "replicas": 2,
        },
    ),
    ex.claim("rank", {"tenant": "ads", "pool": "train", "cu": 100}),
    ex.claim("embed", {"tenant": "ads", "pool": "train", "cu": 40, "count": 2}),
    ex.claim("scratch", {"tenant": "lab", "pool": "train", "cu": 40}),
)


def _results(decision: admission.Decision) -> list[dict[str, Any]]:
    return [
        {"request": f"gpu-{i}/vendor", "driver": d.driver, "pool": d.pool, "device": d.device}
        for i, d in enumerate(decision.devices)
    ]


def _allocated(obj: dict[str, Any], results: list[dict[str, Any]], pod: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["status"] = {
        "allocation": {"devices": {"results": results}},
        "reservedFor": [{"resource": "pods", "name": pod, "uid": "u"}],
    }
    return out


def _cluster_claims(first: planning.Plan) -> list[dict[str, Any]]:
    """What the cluster's ResourceClaims say once Pods run: rank in use on its device, one of
    serve's two replicas stamped (by kube-controller-manager) on one of its devices, and our
    other claims, not yet allocated."""
    decisions = {d.claim: d for d in first.report.decisions}
    rank = next(o for o in first.objects if o["metadata"]["name"] == "rank")
    serve = decisions["serve"]
    stamped = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": "serve-pod-0-cu",
            "namespace": "search",
            "labels": {
                "cu-reconciler.io/template": "serve",
                "cu-reconciler.io/tenant": "vip",
                "cu-reconciler.io/pool": "train",
            },
        },
    }
    idle = [
        copy.deepcopy(dict(o))
        for o in first.objects
        if o["kind"] == "ResourceClaim" and o["metadata"]["name"] != "rank"
    ]
    return [
        _allocated(dict(rank), _results(decisions["rank"]), "rank-pod"),
        _allocated(stamped, _results(serve)[:1], "serve-pod-0"),
        *idle,
    ]


def _observed(owned: Any, claims: list[dict[str, Any]], lose: str) -> obs.ObservedState:
    """A snapshot read as ``cuctl render`` reads one (``sources.classify``): every item, our
    objects among them when the snapshot has them."""
    raw = ex.raw(claims=claims)
    items = [
        *raw.nodes,
        *(s for s in raw.slices if s["spec"]["nodeName"] != lose),
        *raw.claims,
        *(o for o in owned if o["kind"] != "ResourceClaim"),
    ]
    return obs.build(sources.classify(items), ex.adapters(), ex.DRIVER)


def _admission(result: planning.Plan) -> list[tuple[str, str, str, int, list[str]]]:
    return [
        (d.claim, str(d.status), str(d.reason), d.charged_milli, [str(x) for x in d.devices])
        for d in result.report.decisions
    ]


def test_every_mode_admits_the_same_after_a_node_loss() -> None:
    desired = ex.desired(tenants=_TENANTS, claims=_CLAIMS)
    first = planning.plan(desired, ex.observed())
    assert {d.claim: str(d.status) for d in first.report.decisions} == {
        "serve": "Admitted",
        "rank": "Admitted",
        "embed": "Admitted",
        "scratch": "Pending",  # lab may not take the CU ads's guarantee may reclaim
    }
    used = _cluster_claims(first)
    # n2 (both A100s) is lost. serve's second replica and rank's device may be among them.
    live_cluster = planning.plan(desired, _observed(first.objects, used, "n2"))
    kubectl_snapshot = planning.plan(desired, _observed((), used, "n2"))
    base_preview = planning.plan(desired, _observed((), used, "n2"), first.objects)
    assert _admission(kubectl_snapshot) == _admission(live_cluster)
    assert _admission(base_preview) == _admission(live_cluster)
    got = {d.claim: d for d in live_cluster.report.decisions}
    assert got["serve"].status is admission.Status.ADMITTED
    assert got["rank"].status is admission.Status.ADMITTED
    rendered = {(o["kind"], o["metadata"]["name"]) for o in kubectl_snapshot.objects}
    assert ("ResourceClaimTemplate", "serve") in rendered, "render keeps the in-use template"
    assert ("ResourceClaim", "rank") in rendered, "render keeps the in-use claim"


def test_render_from_a_kubectl_snapshot_keeps_an_in_use_claim_whose_cuclaim_is_gone() -> None:
    """Its CUClaim is removed while a Pod uses it: kept (allowInUse false), in every mode."""
    desired = ex.desired(tenants=_TENANTS, claims=_CLAIMS)
    first = planning.plan(desired, ex.observed())
    used = _cluster_claims(first)
    fewer = ex.desired(
        tenants=_TENANTS, claims=tuple(c for c in _CLAIMS if c.metadata.name != "rank")
    )
    for owned in (first.objects, ()):
        result = planning.plan(fewer, _observed(owned, used, ""))
        assert ("ResourceClaim", "rank") in {
            (o["kind"], o["metadata"]["name"]) for o in result.objects
        }, f"owned={bool(owned)}"


def test_a_node_loss_leaves_in_use_claims_unchanged_in_the_engine_form() -> None:
    """Argo CD re-creates a changed claim (``Force=true,Replace=true``): a claim in use must
    render byte-identical across a node loss, or the engine would replace it under its Pod.
    It is pinned where it runs, so its charged CU and content hash do not move."""
    desired = ex.desired(tenants=_TENANTS, claims=_CLAIMS)
    first = planning.plan(desired, ex.observed())
    used = _cluster_claims(first)
    before = planning.plan(desired, _observed((), used, ""))
    after = planning.plan(desired, _observed((), used, "n2"))

    def engine(result: planning.Plan) -> dict[tuple[str, str], Any]:
        return {(o["kind"], o["metadata"]["name"]): o for o in gitops.for_engine(result.objects)}

    old, new = engine(before), engine(after)
    assert old[("ResourceClaim", "rank")] == new[("ResourceClaim", "rank")]
    # The template's charge follows where its replicas land (docs/gitops.md: re-creating a
    # template touches no running Pod); what its Pods get, the spec, does not move.
    template = ("ResourceClaimTemplate", "serve")
    assert old[template]["spec"] == new[template]["spec"]
    charged = "cu-reconciler.io/charged-cu"
    assert old[template]["metadata"]["annotations"][charged] == "200"
    assert new[template]["metadata"]["annotations"][charged] != "200"

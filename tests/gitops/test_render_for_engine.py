"""``cuctl render`` in the form a GitOps engine applies (reconciler/plan/gitops.py).

Proves on real Git commits of the example repository: a commit that does not change an object
does not change its rendered manifest (no per-commit annotation), a commit that changes one
claim changes exactly the objects it affects; sync waves follow the apply order (fence before
slices before claims); claims carry replace; every device taint carries a ``timeAdded``; the
fence admits the identities ClusterSettings lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli
from reconciler.model import documents as docs
from reconciler.model import driverconfig, ownership
from reconciler.plan import fence, gitops, target

for _name in ("plan",):
    __import__(f"reconciler.cli.{_name}")


def _render(repo: git.Repo, rev: str, *extra: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli.app, ["render", str(repo.working_dir), "--rev", rev, *extra])
    assert result.exit_code == 0, result.output
    return [o for o in YAML(typ="safe").load_all(result.stdout) if o]


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def _commit(repo: git.Repo, path: str, text: str, message: str) -> str:
    Path(repo.working_dir, path).write_text(text)
    repo.git.add(A=True)
    return repo.index.commit(message).hexsha


def test_a_commit_that_changes_nothing_renders_byte_identical(example_repo: git.Repo) -> None:
    first = example_repo.head.commit.hexsha
    second = _commit(example_repo, "README.md", "changed\n", "docs only")
    before, after = _render(example_repo, first), _render(example_repo, second)
    assert before == after
    assert all(ownership.REVISION_ANNOTATION not in o["metadata"]["annotations"] for o in after)
    plain = _render(example_repo, second, "--plain")
    # Every object but the plugin's driver-name ConfigMap (a record, not a rendered DRA object).
    stamped = [o for o in plain if o["metadata"]["name"] != driverconfig.NAME]
    assert len(stamped) == len(plain) - 1
    assert {o["metadata"]["annotations"][ownership.REVISION_ANNOTATION] for o in stamped} == {
        second
    }


def test_render_carries_the_settings_driver_name_for_the_kubelet_plugin(
    example_repo: git.Repo,
) -> None:
    """The plugin DaemonSet reads its name from this ConfigMap (deploy/kubeletplugin), so
    the GitOps engine that applies the render also tells the plugin ClusterSettings' name."""
    settings = Path(example_repo.working_dir, "cluster.yaml")
    custom = settings.read_text().replace(
        "driverName: cu.cu-reconciler.io", "driverName: cu.edge.example.com"
    )
    assert custom != settings.read_text()
    _commit(example_repo, "cluster.yaml", custom, "custom driver name")
    [cm] = [
        o
        for o in _render(example_repo, example_repo.head.commit.hexsha)
        if o["kind"] == "ConfigMap"
    ]
    assert cm["metadata"]["name"] == driverconfig.NAME
    assert cm["metadata"]["namespace"] == "cu-system"
    assert cm["data"] == {driverconfig.KEY: "cu.edge.example.com"}


def test_a_claim_change_changes_only_that_claims_objects(example_repo: git.Repo) -> None:
    first = example_repo.head.commit.hexsha
    rel = "claims/ads-embedding/backfill.yaml"
    text = Path(example_repo.working_dir, rel).read_text()
    second = _commit(example_repo, rel, text.replace("minMemory: 32Gi", "minMemory: 48Gi"), "mem")
    before = {_key(o): o for o in _render(example_repo, first)}
    after = {_key(o): o for o in _render(example_repo, second)}
    assert before.keys() == after.keys()
    changed = {k for k in after if after[k] != before[k]}
    assert changed and all(k[0] == "ResourceClaimTemplate" for k in changed), changed
    for key, obj in after.items():
        old = before[key]["metadata"]["annotations"][gitops.CONTENT_HASH_ANNOTATION]
        new = obj["metadata"]["annotations"][gitops.CONTENT_HASH_ANNOTATION]
        assert (old != new) == (key in changed)


def test_sync_waves_follow_the_apply_order_and_claims_are_replaced(example_repo: git.Repo) -> None:
    objects = _render(example_repo, "HEAD")
    waves = [int(o["metadata"]["annotations"][gitops.SYNC_WAVE_ANNOTATION]) for o in objects]
    assert waves == sorted(waves), "rendered in apply order, waves never decrease"
    by_kind = {
        o["kind"]: int(o["metadata"]["annotations"][gitops.SYNC_WAVE_ANNOTATION]) for o in objects
    }
    assert (
        by_kind["ValidatingAdmissionPolicy"]
        < by_kind["ValidatingAdmissionPolicyBinding"]
        < by_kind["ResourceSlice"]
        < by_kind["ResourceClaim"]
    )
    # The plugin's driver-name ConfigMap is not a DRA object: last wave, after the claims.
    assert by_kind.pop("ConfigMap") == len(target.KIND_ORDER)
    assert list(by_kind) == [k for k in target.KIND_ORDER if k in by_kind]
    for obj in objects:
        options = obj["metadata"]["annotations"].get(gitops.SYNC_OPTIONS_ANNOTATION)
        if obj["kind"] in ("ResourceClaim", "ResourceClaimTemplate"):
            assert options == "Force=true,Replace=true"
            assert obj["metadata"]["annotations"][gitops.FLUX_FORCE_ANNOTATION] == "Enabled"
        else:
            assert options is None


def test_every_device_taint_carries_a_time(example_repo: git.Repo) -> None:
    taints = [
        t
        for o in _render(example_repo, "HEAD")
        if o["kind"] == "ResourceSlice"
        for d in o["spec"]["devices"]
        for t in d.get("taints") or ()
    ]
    assert taints, "the example has an unhealthy device"
    assert all(t.get("timeAdded") for t in taints)


def test_the_fence_admits_the_listed_identities() -> None:
    argo = "system:serviceaccount:cu-system:cu-sync"
    base = {
        "driverName": "cu.example.com",
        "reference": {"deviceModel": "A100"},
        "managedNamespaces": ["a"],
    }
    plain = docs.ClusterSettingsSpec.model_validate(base)
    listed = docs.ClusterSettingsSpec.model_validate({**base, "admittedIdentities": [argo]})
    assert argo not in fence.exempt_users(plain)
    assert argo in fence.exempt_users(listed)
    policy = fence.admission_policy(listed, {}, {})[0]
    assert argo in policy["spec"]["matchConditions"][0]["expression"]
    objects = [policy]
    assert fence.identity_problem(objects, plain, argo) is not None
    assert fence.identity_problem(objects, listed, argo) is None


def test_the_status_object_shows_what_the_render_admitted_and_why_not() -> None:
    import dataclasses

    import cu_example as ex

    from reconciler import plan as planning
    from reconciler.plan import admission, figures

    result = planning.plan(ex.desired(), ex.observed())
    decisions = result.report.decisions
    status = gitops.status_object(result.report, "f" * 40, "cu-system")
    report = status["report"]
    assert (status["apiVersion"], status["kind"]) == ("cu-reconciler.io/v1alpha1", "CUEngineStatus")
    assert status["metadata"]["name"] == gitops.STATUS_NAME
    assert status["metadata"]["namespace"] == "cu-system"
    assert ownership.is_owned(status)
    assert report["revision"] == "f" * 40
    for key, s in (
        ("admitted", admission.Status.ADMITTED),
        ("pending", admission.Status.PENDING),
        ("preempted", admission.Status.PREEMPTED),
    ):
        assert report["claims"][key] == sum(1 for d in decisions if d.status is s), key
    not_admitted = [d for d in decisions if d.status is not admission.Status.ADMITTED]
    assert not_admitted, "the example has a claim that is not admitted"
    assert [(e["namespace"], e["name"], e["reason"]) for e in report["notAdmitted"]] == [
        (d.namespace, d.claim, str(d.reason)) for d in not_admitted
    ]
    assert sum(report["notAdmittedByReason"].values()) == len(not_admitted)
    assert report["claims"]["needingChange"] == 0
    # The CUSync status's shape, from the one place both build it.
    assert {k: report[k] for k in ("pools", "tenants")} == figures.pools_and_tenants(result.report)
    assert report["shortfalls"] == figures.shortfalls(result.report)
    assert sum(p["pendingClaims"] for p in report["pools"]) == report["claims"]["pending"]
    short = gitops.status_object(result.report, "f" * 40, "cu-system", limit=0)
    assert short["report"]["notAdmitted"] == []
    assert short["report"]["notAdmittedOmitted"] == len(not_admitted)

    # The shipped Argo CD health check on what the render emits: Healthy as it is (the
    # pending claims wait for capacity), Degraded once a claim needs a repository change,
    # which is listed first.
    from test_health_lua import CHECKS, health

    check = next(c for c in CHECKS if c.name == gitops.STATUS_KIND)
    assert health(check, status)["status"] == "Healthy"
    victim = not_admitted[-1]
    broken = dataclasses.replace(
        result.report,
        decisions=tuple(
            dataclasses.replace(d, reason=admission.Reason.UNKNOWN_POOL) if d is victim else d
            for d in decisions
        ),
    )
    degraded = gitops.status_object(broken, "f" * 40, "cu-system")
    assert degraded["report"]["claims"]["needingChange"] == 1
    assert degraded["report"]["notAdmitted"][0]["name"] == victim.claim
    verdict = health(check, degraded)
    assert verdict["status"] == "Degraded"
    assert f"{victim.namespace}/{victim.claim}: UnknownPool" in verdict["message"]


def test_render_status_adds_one_engine_status_in_the_reconciler_namespace_last(
    example_repo: git.Repo,
) -> None:
    plain = _render(example_repo, "HEAD")
    with_status = _render(example_repo, "HEAD", "--status")
    added = [o for o in with_status if _key(o) not in {_key(p) for p in plain}]
    assert [_key(o) for o in added] == [(gitops.STATUS_KIND, "cu-system", gitops.STATUS_NAME)]
    (status,) = added
    assert status["report"]["revision"] == example_repo.head.commit.hexsha
    waves = [int(o["metadata"]["annotations"][gitops.SYNC_WAVE_ANNOTATION]) for o in with_status]
    assert int(status["metadata"]["annotations"][gitops.SYNC_WAVE_ANNOTATION]) == max(waves)
    assert waves.count(max(waves)) == 1, "alone in the last wave: applied after every claim"

    # A checkout without .git (Argo CD streams the files to the plugin so): the commit comes
    # from --source-revision; anything but a commit id changes nothing and exits 2.
    sha = example_repo.head.commit.hexsha
    plain_dir = [o for o in _render_dir(example_repo, "--status", "--source-revision", sha)]
    assert plain_dir[-1]["report"]["revision"] == sha
    assert _render_dir(example_repo, "--status")[-1]["report"]["revision"] == "worktree"
    for bad in ("main; rm -rf /", "HEAD", "g" * 40):
        result = CliRunner().invoke(
            cli.app, ["render", str(example_repo.working_dir), "--source-revision", bad]
        )
        assert result.exit_code == 2 and not result.stdout, bad
        assert "--source-revision" in result.output
    result = CliRunner().invoke(
        cli.app,
        ["render", str(example_repo.working_dir), "--rev", "HEAD", "--source-revision", sha],
    )
    assert result.exit_code == 2 and not result.stdout


def _render_dir(repo: git.Repo, *extra: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli.app, ["render", str(repo.working_dir), *extra])
    assert result.exit_code == 0, result.output
    return [o for o in YAML(typ="safe").load_all(result.stdout) if o]


def test_the_shipped_engine_recipes_render_the_status() -> None:
    """Issue 23.5: the plugin and the Flux hydration workflow pass --status, and the engines
    may write the object (AppProject whitelists, the sync identities' RBAC)."""
    root = Path(__file__).resolve().parents[2] / "deploy"
    plugin = YAML(typ="safe").load((root / "argocd/cmp/plugin.yaml").read_text())
    generate = plugin["spec"]["generate"]["args"][0]
    assert "cuctl render . --status" in generate
    assert '--source-revision "$ARGOCD_APP_REVISION"' in generate
    hydrate = (root / "flux/hydrate.yaml").read_text()
    assert 'cuctl render . --status --source-revision "$GITHUB_SHA"' in hydrate
    entry = {"group": "cu-reconciler.io", "kind": gitops.STATUS_KIND}
    for rel in ("argocd/mode2/application.yaml", "argocd/fleet/engine-applicationset.yaml"):
        project = next(YAML(typ="safe").load_all((root / rel).read_text()))
        assert entry in project["spec"]["namespaceResourceWhitelist"], rel
    rbac = list(YAML(typ="safe").load_all((root / "engine/rbac.yaml").read_text()))
    writers = next(
        d
        for d in rbac
        if d["metadata"]["name"] == "cu-engine-status-writer" and d["kind"] == "RoleBinding"
    )
    assert {(s["namespace"], s["name"]) for s in writers["subjects"]} == {
        ("cu-system", "cu-sync"),  # deploy/argocd/mode2/sync-identity.yaml
        ("cu-system", "cu-reconciler"),  # deploy/flux/desired-state.yaml serviceAccountName
    }

"""``cuctl plan`` and ``cuctl render`` end to end on the example repository (no cluster)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
SNAPSHOT = EXAMPLE / "observed" / "snapshot.yaml"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    for name in ("validate", "plan"):
        __import__(f"reconciler.cli.{name}")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_plan_json_lists_changes_and_exits_1(runner: CliRunner) -> None:
    code, out, err = invoke(runner, "plan", str(EXAMPLE), "--observed", str(SNAPSHOT), "-o", "json")
    assert code == 1, err
    doc = json.loads(out)
    assert doc["changes"] and {c["action"] for c in doc["changes"]} <= {
        "create",
        "delete",
        "update",
        "replace",
    }
    assert {p["pool"] for p in doc["pools"]} == {"batch", "dev", "inference-prod"}
    assert {c["status"] for c in doc["claims"]} <= {"Admitted", "Pending", "Preempted"}
    assert all(
        c["message"] is None or c["status"] != "Admitted" or "promise" in c["message"]
        for c in doc["claims"]
    )


def test_plan_text_has_no_colour_when_not_a_terminal(runner: CliRunner) -> None:
    code, out, _ = invoke(runner, "plan", str(EXAMPLE), "--observed", str(SNAPSHOT))
    assert code == 1
    assert "\033[" not in out and out.startswith("=== cu-reconciler plan")


def test_plan_markdown_fits_a_pull_request_comment(runner: CliRunner) -> None:
    code, out, _ = invoke(
        runner, "plan", str(EXAMPLE), "--observed", str(SNAPSHOT), "-o", "markdown"
    )
    assert code == 1 and len(out) < 65_000 and "| Pool |" in out


def test_render_prints_a_yaml_stream_and_logs_on_stderr(runner: CliRunner) -> None:
    code, out, err = invoke(runner, "render", str(EXAMPLE), "--observed", str(SNAPSHOT))
    assert code == 0, err
    objects = list(YAML(typ="safe").load_all(out))
    assert {o["kind"] for o in objects} >= {"ResourceSlice", "DeviceClass", "DeviceTaintRule"}
    assert "objects at" in err


def test_plan_against_rendered_objects_is_in_sync(runner: CliRunner, tmp_path: Path) -> None:
    _, out, _ = invoke(runner, "render", str(EXAMPLE), "--observed", str(SNAPSHOT))
    snap = YAML(typ="safe").load(SNAPSHOT.read_text())
    # Unused orphan claims in the snapshot are (rightly) deleted; keep only claims in use.
    items = [
        i
        for i in snap["items"]
        if i["kind"] != "ResourceClaim" or (i.get("status") or {}).get("reservedFor")
    ]

    def key(o: dict) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    seen = {key(i) for i in items}
    items += [o for o in YAML(typ="safe").load_all(out) if key(o) not in seen]
    live = tmp_path / "live.yaml"
    live.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    code, out, err = invoke(runner, "plan", str(EXAMPLE), "--observed", str(live))
    assert code == 0, out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["plan", str(EXAMPLE), "--observed", "/nope.yaml"], "/nope.yaml", id="missing"
        ),
        pytest.param(["plan", "/nonexistent-repo", "--observed", str(SNAPSHOT)], "PATH", id="repo"),
        pytest.param(
            ["plan", str(EXAMPLE), "--kubeconfig", "/nope/kubeconfig"],
            "--kubeconfig",
            id="kubeconfig",
        ),
    ],
)
def test_errors_exit_2_with_one_clear_message(
    runner: CliRunner, args: list[str], message: str
) -> None:
    code, out, err = invoke(runner, *args)
    assert code == 2
    assert message in err and "Traceback" not in err + out


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
            "PATH": "/usr/bin:/bin",
        },
    ).stdout.strip()


def test_plan_base_compares_two_revisions_offline(runner: CliRunner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    base = _git(repo, "rev-parse", "HEAD")
    claim = repo / "claims" / "research-batch" / "eval-sweep.yaml"
    claim.write_text(claim.read_text().replace("cu: 100", "cu: 90"))
    _git(repo, "commit", "-q", "-am", "smaller distill claim")
    code, out, err = invoke(
        runner, "plan", str(repo), "--rev", "HEAD", "--base", base, "-o", "json"
    )
    assert code == 1, err
    doc = json.loads(out)
    assert [(c["action"], c["kind"], c["name"]) for c in doc["changes"]] == [
        ("replace", "ResourceClaim", "distill-a100")
    ]
    same_code, _, _ = invoke(runner, "plan", str(repo), "--rev", base, "--base", base)
    assert same_code == 0


def test_plan_base_shows_a_guarantee_change_and_replicas(runner: CliRunner, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    tenant = repo / "tenants" / "chat-assistant.yaml"
    tenant.write_text(tenant.read_text().replace("guaranteed: 2000", "guaranteed: 2400"))
    decode = repo / "claims" / "chat-assistant" / "decode.yaml"
    decode.write_text(decode.read_text().replace("replicas: 3", "replicas: 2"))
    _git(repo, "checkout", "-q", "-b", "raise-guarantee")
    _git(repo, "commit", "-q", "-am", "raise chat's guarantee, one decode Pod fewer")
    code, out, err = invoke(
        runner, "plan", str(repo), "--rev", "raise-guarantee", "--base", "main", "-o", "markdown"
    )
    assert code == 1, err
    rows = [line for line in out.splitlines() if line.startswith("| chat-")]
    assert rows == [
        # Claimed: decode 3 → 2 replicas × 4 × 150 CU = 1800 → 1200 CU, + prefill 600.
        "| chat-assistant | inference-prod | 900 | 2000 → **2400** | 3000 | 2400 → **1800** |",
        # The base renders the template and a replica is in use: pinned, never preempted.
        "| chat-prod/chat-decode | chat-assistant | inference-prod | 2 (1 running) | 1200 "
        "| Admitted | InUse |",
        # chat-assistant is not preemptible: what the base renders stays admitted.
        "| chat-prod/chat-prefill | chat-assistant | inference-prod | 1 | 600 | Admitted "
        "| NotPreemptible |",
    ]
    code, out, err = invoke(
        runner, "plan", str(repo), "--rev", "raise-guarantee", "--base", "main", "-o", "json"
    )
    doc = json.loads(out)
    # The quota is recorded on the pool's DeviceClass, the replicas on the template.
    assert [
        (c["action"], c["kind"], c["name"], [d["path"] for d in c["diff"]]) for c in doc["changes"]
    ] == [
        (
            "update",
            "DeviceClass",
            "cu-inference-prod",
            ["metadata.annotations.quota.cu-reconciler.io/chat-assistant"],
        ),
        (  # one replica fewer: Kubernetes' own quota allows its devices no more
            "update",
            "ResourceQuota",
            "cu-reconciler-limits",
            ["spec.hard.cu-inference-prod.deviceclass.resource.k8s.io/devices"],
        ),
        (
            "update",
            "ResourceClaimTemplate",
            "chat-decode",
            [
                "metadata.annotations.cu-reconciler.io/charged-cu",
                "metadata.annotations.cu-reconciler.io/replicas",
            ],
        ),
    ]
    (chat,) = [t for t in doc["tenants"] if t["tenant"] == "chat-assistant"]
    assert (chat["before"]["guaranteedCU"], chat["after"]["guaranteedCU"], chat["changed"]) == (
        "2000",
        "2400",
        ["guaranteed", "claimed"],
    )


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "base")
    return repo


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        pytest.param("priority: 300", "priority: 950", "spec.priority", id="priority"),
        pytest.param("mayBorrow: true", "mayBorrow: false", "spec.mayBorrow", id="mayBorrow"),
    ],
)
def test_plan_base_lists_changes_of_meaning_even_without_object_changes(
    runner: CliRunner, tmp_path: Path, old: str, new: str, path: str
) -> None:
    repo = _repo(tmp_path)
    tenant = repo / "tenants" / "research-batch.yaml"
    assert old in tenant.read_text()
    tenant.write_text(tenant.read_text().replace(old, new))
    _git(repo, "checkout", "-q", "-b", "edit")
    _git(repo, "commit", "-q", "-am", "edit research-batch")
    code, out, err = invoke(runner, "plan", str(repo), "--rev", "edit", "--base", "main")
    assert code == 1, out + err
    before, after = old.split(": ")[1], new.split(": ")[1]
    assert f"  ~ Tenant/research-batch {path}: {before} → {after}" in out.splitlines()
    code, out, err = invoke(
        runner, "plan", str(repo), "--rev", "edit", "--base", "main", "-o", "json"
    )
    doc = json.loads(out)
    assert doc["desiredChanges"] == [
        {"kind": "Tenant", "name": "research-batch", "path": path, "before": before, "after": after}
    ]
    assert doc["exitCode"] == 1 and doc["inSync"] is False
    # The same revision on both sides: no change of meaning, exit 0.
    code, out, err = invoke(runner, "plan", str(repo), "--rev", "main", "--base", "main")
    assert code == 0, out + err


def test_plan_without_observed_uses_the_committed_snapshot(runner: CliRunner) -> None:
    code, out, err = invoke(runner, "plan", str(EXAMPLE), "--no-diffs")
    assert code == 1, err
    assert "observed devices from observed/snapshot.yaml" in err
    with_flag = invoke(runner, "plan", str(EXAMPLE), "--observed", str(SNAPSHOT), "--no-diffs")
    assert with_flag[1] == out


def test_plan_text_puts_the_summary_before_the_diffs(runner: CliRunner) -> None:
    code, out, _ = invoke(runner, "plan", str(EXAMPLE))
    assert code == 1
    assert out.index("Capacity (CU)") < out.index("Plan: ") < out.index("\n=== create ")
    _, short, _ = invoke(runner, "plan", str(EXAMPLE), "--no-diffs")
    assert "\n=== create " not in short and "Object diffs left out" in short


def test_hardware_loss_is_reported_by_plan_and_does_not_break_render(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Every H100 node dies and the refreshed snapshot is committed: validate warns, render
    still renders, plan reports the guarantees that no longer fit with numbers, exit 1.

    The pool declares the size it is sold at (spec.declaredCapacity), which guarantees may
    not exceed (CU408); devices missing from the snapshot are a loss (CU403, shortfalls),
    never that error."""
    repo = _repo(tmp_path)
    pool = repo / "pools" / "inference-prod.yaml"
    pool.write_text(pool.read_text().replace("declaredCapacity: 9400", "declaredCapacity: 6000"))
    code, out, err = invoke(runner, "validate", str(repo))
    assert code == 0 and "CU403" not in out + err and "CU408" not in out + err, out + err
    snapshot = repo / "observed" / "snapshot.yaml"
    yaml = YAML(typ="safe")
    doc = yaml.load(snapshot.read_text())
    doc["items"] = [
        item
        for item in doc["items"]
        if "h100" not in str(item.get("metadata", {}).get("name", ""))
        and "h100" not in str((item.get("spec") or {}).get("nodeName", ""))
    ]
    with snapshot.open("w") as f:
        yaml.dump(doc, f)
    code, out, err = invoke(runner, "validate", str(repo))
    assert code != 2, out + err
    assert "CU403" in out + err and "CU408" not in out + err
    code, out, err = invoke(runner, "render", str(repo))
    assert code == 0, err
    code, out, err = invoke(runner, "plan", str(repo), "--no-diffs")
    assert code == 1, err
    assert "Promises the devices cannot keep now:" in out
    assert "tenant chat-assistant in pool inference-prod: guaranteed 2000 CU, deliverable" in out

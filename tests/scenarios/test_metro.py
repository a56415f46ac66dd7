"""The second desired state (tests/scenarios/metro): other vendors (AMD, Intel Gaudi, a driver
without adapter), pools and tenants than examples/gitrepo, written from the docs alone.

The issue's reporters re-run variations of such a scenario; these tests check the classes of
problem on it: validate, the unknown driver said first, one accounting, promises kept through
the loss of every node in turn, hardware loss never an error, and the typed adapter filter.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli
from reconciler import plan as planning
from reconciler.model import codes
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.plan import admission
from reconciler.source import worktree
from reconciler.validate import snapshot, validate_tree

METRO = Path(__file__).resolve().parent / "metro"
NODES = ("mi300-01", "mi300-02", "mi250-01", "gaudi-01", "gaudi-02")


@pytest.fixture(scope="module")
def desired() -> st.DesiredState:
    result = validate_tree(worktree.read_worktree(str(METRO)))
    assert result.state is not None, [d.render() for d in result.diagnostics]
    return result.state


@pytest.fixture(scope="module")
def raw() -> obs.RawObjects:
    parsed, problems = snapshot.parse(
        "observed/snapshot.yaml", (METRO / "observed" / "snapshot.yaml").read_bytes()
    )
    assert parsed is not None and not problems
    return parsed


def _observed(
    desired: st.DesiredState, raw: obs.RawObjects, nodes: set[str], owned: Any = ()
) -> obs.ObservedState:
    kept = obs.RawObjects(
        nodes=tuple(n for n in raw.nodes if n["metadata"]["name"] in nodes | {"tpu-01"}),
        slices=tuple(s for s in raw.slices if s["spec"]["nodeName"] in nodes | {"tpu-01"}),
        owned=tuple(owned),
    )
    return obs.build(kept, desired.adapters, desired.settings.spec.driver_name)


def test_validate_warns_about_the_driver_without_adapter() -> None:
    result = validate_tree(worktree.read_worktree(str(METRO)))
    assert result.ok
    (warning,) = [d for d in result.diagnostics if d.code == codes.Code.NO_ADAPTER]
    assert "tpu.cloud.example.com" in warning.message
    assert "2 device(s)" in warning.message and "tpu-01/tpu-0" in warning.message


def test_the_int_filter_skips_the_partitioned_gpu(
    desired: st.DesiredState, raw: obs.RawObjects
) -> None:
    observed = _observed(desired, raw, set(NODES))
    amd = sorted(str(d.id) for d in observed.devices if d.vendor == "amd")
    assert "gpu.amd.com/mi300-01/gpu-4" not in amd  # partitionCount is the int 4
    assert len(amd) == 12


def test_one_accounting_in_every_pool(desired: st.DesiredState, raw: obs.RawObjects) -> None:
    result = planning.plan(desired, _observed(desired, raw, set(NODES)))
    for pool in result.report.pools:
        rows = [t.after_milli for t in result.report.tenants if t.pool == pool.name]
        assert sum(rows) == pool.admitted_milli
        assert pool.total_milli == (
            pool.admitted_milli + pool.unaccounted_milli + pool.free_milli + pool.headroom_milli
        )
    charged = {d.claim: d.charged_milli for d in result.report.decisions}
    # Whole pool: each encode replica takes a whole MI300X (1.7 × 50 = 85 CU), not 80.
    assert charged["encode"] == 170_000


@pytest.mark.parametrize("lost", NODES)
def test_promises_survive_each_node_loss(
    desired: st.DesiredState, raw: obs.RawObjects, lost: str
) -> None:
    first = planning.plan(desired, _observed(desired, raw, set(NODES)))
    after = planning.plan(desired, _observed(desired, raw, set(NODES) - {lost}, first.objects))
    got = {d.claim: d for d in after.report.decisions}
    for name in ("encode", "archive"):  # video is not preemptible
        assert got[name].status is admission.Status.ADMITTED, (lost, got[name])
        assert got[name].phase is admission.Phase.PINNED
    kept = {o["metadata"]["name"] for o in after.objects}
    assert {"encode", "archive"} <= kept
    # Short promises carry numbers.
    for shortfall in after.report.shortfalls:
        assert shortfall.deliverable_milli < shortfall.promised_milli


def test_losing_both_mi300_nodes_is_a_state_not_an_error(tmp_path: Path) -> None:
    repo = tmp_path / "metro"
    shutil.copytree(METRO, repo)
    path = repo / "observed" / "snapshot.yaml"
    yaml = YAML(typ="safe")
    doc = yaml.load(path.read_text())
    doc["items"] = [i for i in doc["items"] if "mi300" not in str(i)]
    with path.open("w") as f:
        yaml.dump(doc, f)
    runner = CliRunner()
    for name in ("validate", "plan"):
        __import__(f"reconciler.cli.{name}")
    result = runner.invoke(cli.app, ["validate", str(repo)])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "CU324" not in result.stdout + result.stderr
    result = runner.invoke(cli.app, ["render", str(repo)])
    assert result.exit_code == 0, result.stderr
    result = runner.invoke(cli.app, ["plan", str(repo), "--no-diffs"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    # The unmanaged driver comes before the capacity tables.
    assert lines.index("Devices not managed (no adapter, unknown model or node):") < next(
        i for i, line in enumerate(lines) if line.startswith("Capacity (CU)")
    )
    # The reason names the true cause: encode allows only MI300X, and none is left.
    assert (
        "  Pending video-prod/encode (video, realtime, 2 replicas): NoEligibleDevice (no device "
        "in pool realtime meets the claim's constraints)"
    ) in lines
    # 4 × MI250X = 200 CU, 5% headroom: 190 CU for guarantees, by priority.
    assert "  ! tenant video in pool realtime: guaranteed 400 CU, deliverable 190 CU" in lines

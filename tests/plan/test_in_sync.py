"""One accounting, shown everywhere: once the target is applied, the next plan is in sync and
shows no change marker (docs/plan.md, "One accounting"), on both scenarios."""

from __future__ import annotations

from pathlib import Path

import cu_example as ex
import pytest

from reconciler import plan as planning
from reconciler.diff import changeset, render
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.source import worktree
from reconciler.validate import snapshot, validate_tree

ROOT = Path(__file__).resolve().parents[2]


def _scenario(path: Path) -> tuple[st.DesiredState, obs.RawObjects]:
    result = validate_tree(worktree.read_worktree(str(path)))
    assert result.state is not None
    layout = result.state.settings.spec.layout
    assert layout.snapshot is not None
    raw, _ = snapshot.parse(layout.snapshot, (path / layout.snapshot).read_bytes())
    assert raw is not None
    return result.state, raw


def _applied(desired: st.DesiredState, raw: obs.RawObjects) -> tuple[planning.Plan, str, str]:
    first = planning.plan(
        desired, obs.build(raw, desired.adapters, desired.settings.spec.driver_name)
    )
    again_raw = obs.RawObjects(raw.nodes, raw.slices, raw.claims, first.objects)
    observed = obs.build(again_raw, desired.adapters, desired.settings.spec.driver_name)
    second = planning.plan(desired, observed)
    preview = render.Preview(changeset.compute(second.objects, second.live), second.report)
    return second, render.text(preview), render.markdown(preview)


@pytest.mark.parametrize(
    "path",
    [ROOT / "examples" / "gitrepo", ROOT / "tests" / "scenarios" / "metro"],
    ids=["example", "metro"],
)
def test_an_applied_plan_is_in_sync_and_shows_no_change_marker(path: Path) -> None:
    desired, raw = _scenario(path)
    second, text, markdown = _applied(desired, raw)
    assert changeset.compute(second.objects, second.live).in_sync
    assert all(not t.changed for t in second.report.tenants)
    assert all(p.before_milli == p.after_milli for p in second.report.pools)
    summary = text[text.index("\n") : text.index("Plan:")]  # after the title line
    marked = [line for line in summary.splitlines() if line.lstrip().startswith("~") or "→" in line]
    assert marked == [], summary
    assert "**" not in markdown.split("#### CU capacity per pool")[1].split("<details>")[0]


def test_the_small_example_fleet_is_in_sync_after_apply() -> None:
    desired = ex.desired()
    first = planning.plan(desired, ex.observed())
    second = planning.plan(desired, ex.observed(owned=first.objects))
    assert changeset.compute(second.objects, second.live).in_sync
    assert all(not t.changed for t in second.report.tenants)

"""validate_tree: the DesiredState it builds, and the observed-state parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.model import codes, diagnostics
from reconciler.model import observed as obs
from reconciler.model import state as st
from reconciler.source import tree as source_tree
from reconciler.source import worktree
from reconciler.validate import validate_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"


@pytest.fixture(scope="module")
def example() -> source_tree.SourceTree:
    return worktree.read_worktree(str(EXAMPLE))


def test_desired_state_of_the_example(example: source_tree.SourceTree) -> None:
    result = validate_tree(example)
    state = result.state
    assert state is not None and result.revision == "worktree" == state.revision
    assert [p.metadata.name for p in state.pools] == ["batch", "dev", "inference-prod"]
    assert len(state.tenants) == 5 and len(state.adapters) == 5 and len(state.claims) == 11
    assert [t.metadata.name for t in state.tenants] == sorted(
        t.metadata.name for t in state.tenants
    )
    assert state.policy.metadata.name == "default"
    assert state.location("CUPool", "dev") == st.SourceRef("pools/dev.yaml", 4, 1)
    assert result.observed is not None and len(result.observed.devices) == 168
    assert "observed/snapshot.yaml" not in result.files


def test_given_observed_state_replaces_the_snapshot(example: source_tree.SourceTree) -> None:
    result = validate_tree(example, observed=obs.ObservedState())
    found = {(d.code, d.file) for d in result.diagnostics}
    assert (codes.Code.POOL_EMPTY, "pools/dev.yaml") in found
    assert (codes.Code.GUARANTEES_EXCEED_CAPACITY, "tenants/search-ranking.yaml") in found
    # Every device gone is hardware loss, a state: warnings, and the state still renders.
    assert result.state is not None
    assert all(d.severity is diagnostics.Severity.WARNING for d in result.diagnostics)


def test_without_snapshot_only_static_checks_run(example: source_tree.SourceTree) -> None:
    files = {k: v for k, v in example.files.items() if not k.startswith("observed/")}
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    assert result.ok and result.observed is None and result.diagnostics == ()


def test_settings_layout_selects_documents(example: source_tree.SourceTree) -> None:
    files = dict(example.files)
    files["cluster.yaml"] = files["cluster.yaml"].replace(
        b'exclude: ["observed/**"', b'exclude: ["claims/**", "observed/**"'
    )
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    assert result.state is not None and result.state.claims == ()


def test_source_diagnostics_are_kept_and_sorted(example: source_tree.SourceTree) -> None:
    escape = diagnostics.Diagnostic("a.yaml", 1, 1, codes.Code.SYMLINK_ESCAPE, "escape")
    files = dict(example.files)
    files["zz.yaml"] = b"a: [\n"
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files, (escape,)))
    assert result.diagnostics[0] == escape
    assert [d.file for d in result.diagnostics] == sorted(d.file for d in result.diagnostics)
    assert result.state is None

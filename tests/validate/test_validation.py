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
    files["cluster.yaml"] = files["cluster.yaml"].replace(
        b"snapshot: observed/snapshot.yaml", b"snapshot: null"
    )
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    assert result.ok and result.observed is None and result.diagnostics == ()
    # Not written at all: the default path is missing, said as a warning.
    files["cluster.yaml"] = files["cluster.yaml"].replace(b"    snapshot: null\n", b"")
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    assert result.ok and [d.code for d in result.diagnostics] == [codes.Code.SNAPSHOT_INVALID]


@pytest.mark.parametrize("name", ["observed/snapshot.yaml", "observed/snapshots.yaml"])
def test_a_missing_or_misspelt_snapshot_is_an_error(
    example: source_tree.SourceTree, name: str
) -> None:
    """It would otherwise silently turn off every capacity check."""
    files = {k: v for k, v in example.files.items() if not k.startswith("observed/")}
    files["cluster.yaml"] = files["cluster.yaml"].replace(
        b"snapshot: observed/snapshot.yaml", f"snapshot: {name}".encode()
    )
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    (d,) = result.errors
    assert (d.file, d.code) == ("cluster.yaml", codes.Code.SNAPSHOT_INVALID)
    assert name in d.message and result.state is None


def test_file_names_cannot_forge_diagnostic_lines() -> None:
    d = diagnostics.Diagnostic("a.yaml\nb.yaml:1:1: CU999: forged\x1b[2J", 1, 1, "CU101", "x\ny")
    assert "\n" not in d.render() and "\x1b" not in d.render()
    assert d.render().startswith("a.yaml\\nb.yaml")


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


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param((b"sharing:", b"sharing: [unclosed"), id="syntax"),
        pytest.param((b"headroomPercent:", b"headroomPercnt:"), id="schema"),
    ],
)
def test_one_broken_pool_file_is_one_root_cause_not_a_cascade(
    example: source_tree.SourceTree, breakage: tuple[bytes, bytes]
) -> None:
    files = dict(example.files)
    old, new = breakage
    assert old in files["pools/dev.yaml"]
    files["pools/dev.yaml"] = files["pools/dev.yaml"].replace(old, new, 1)
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    errors = [d for d in result.errors]
    assert {d.file for d in errors} == {"pools/dev.yaml"}, [d.render() for d in errors]
    (note,) = [d for d in result.diagnostics if d.code == codes.Code.UNKNOWN_POOL]
    assert note.file == "pools/dev.yaml" and "reference(s) to CUPool 'dev'" in note.message


def test_a_snapshot_over_the_memory_bound_is_refused_with_its_limit(
    example: source_tree.SourceTree,
) -> None:
    """Issue 9: validation holds about 30 MB per MiB of snapshot, so the committed snapshot is
    capped at 24 MiB (752 MB RSS measured at 23.4 MiB; 1.9 GB at 62 MiB under the old cap)."""
    files = dict(example.files)
    snapshot = files["observed/snapshot.yaml"]
    padding = b"#" * 1023 + b"\n"
    files["observed/snapshot.yaml"] = snapshot + padding * (24 * 1024 + 1 - len(snapshot) // 1024)
    result = validate_tree(source_tree.SourceTree(example.revision, "x", files))
    (big,) = [d for d in result.diagnostics if d.code == codes.Code.FILE_TOO_LARGE]
    assert big.file == "observed/snapshot.yaml" and f"{24 * 2**20}-byte limit" in big.message

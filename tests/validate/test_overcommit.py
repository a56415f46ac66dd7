"""Overcommitted guarantees (issue 21, item 8): an error unless the Policy allows overcommit.

The basis is what desired state says the pool is sold at (``spec.declaredCapacity``), which
a pool that sells guarantees must declare (CU409). What the devices give now, committed
snapshot included, is observation: a loss is the CU403 warning and shortfalls in
``cuctl plan``, never an error (a lost node must not make the repository unrenderable, and a
snapshot PR must stay previewable with ``plan --base``).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.model import codes, diagnostics
from reconciler.source import tree as source_tree
from reconciler.source import worktree
from reconciler.validate import validate_tree

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
TENANT = "tenants/ml-platform-dev.yaml"


@pytest.fixture(scope="module")
def example() -> source_tree.SourceTree:
    return worktree.read_worktree(str(EXAMPLE))


def _with(tree: source_tree.SourceTree, **files: bytes) -> source_tree.SourceTree:
    return dataclasses.replace(tree, files={**tree.files, **files})


def _greedy(tree: source_tree.SourceTree) -> bytes:
    """ml-platform-dev's dev guarantee raised from 400 to 1500 CU (the pool gives ~1070)."""
    text = tree.files[TENANT]
    assert b"guaranteed: 400" in text
    return text.replace(b"guaranteed: 400", b"guaranteed: 1500").replace(
        b"limit: 400", b"limit: 1500"
    )


def _found(tree: source_tree.SourceTree) -> dict[codes.Code, diagnostics.Diagnostic]:
    return {d.code: d for d in validate_tree(tree).diagnostics}


EXAMPLE_DEV = b"declaredCapacity: 1100\n"


def _dev(tree: source_tree.SourceTree, declared: bytes) -> bytes:
    """pools/dev.yaml with its declared size replaced (an empty ``declared`` removes it)."""
    text = tree.files["pools/dev.yaml"]
    assert EXAMPLE_DEV in text
    return text.replace(b"  " + EXAMPLE_DEV, declared)


DECLARED = b"  declaredCapacity: 1000\n"


def test_guarantees_above_the_declared_size_are_an_error_with_the_amount(
    example: source_tree.SourceTree,
) -> None:
    pool = _dev(example, DECLARED)
    found = _found(_with(example, **{TENANT: _greedy(example), "pools/dev.yaml": pool}))
    error = found[codes.Code.GUARANTEES_EXCEED_FULL_CAPACITY]
    assert error.severity is diagnostics.Severity.ERROR
    assert (error.file, error.line) == (TENANT, 17)
    assert "1600 CU, 168% of the 950 CU" in error.message, error.message
    assert "overcommitted by 650 CU" in error.message and "allowOvercommit" in error.message


def test_allow_overcommit_makes_it_the_warning(example: source_tree.SourceTree) -> None:
    policy = example.files["policy.yaml"] + b"  allowOvercommit: true\n"
    pool = _dev(example, DECLARED)
    files = {TENANT: _greedy(example), "policy.yaml": policy, "pools/dev.yaml": pool}
    result = validate_tree(_with(example, **files))
    assert result.state is not None and result.state.policy.spec.allow_overcommit
    found = {d.code: d for d in result.diagnostics}
    assert codes.Code.GUARANTEES_EXCEED_FULL_CAPACITY not in found
    assert found[codes.Code.GUARANTEES_EXCEED_CAPACITY].severity is diagnostics.Severity.WARNING


def test_a_pool_selling_guarantees_must_declare_its_size(
    example: source_tree.SourceTree,
) -> None:
    """Undeclared, there is no size to check guarantees against: an error at the pool that
    names the size its observed devices suggest, and the Policy switch that waives it."""
    result = validate_tree(_with(example, **{"pools/dev.yaml": _dev(example, b"")}))
    assert result.state is None
    (error,) = result.errors
    assert error.code is codes.Code.GUARANTEES_WITHOUT_SIZE
    assert (error.file, error.line) == ("pools/dev.yaml", 7), error.render()
    assert "500 CU (ml-platform-dev 400, research-batch 100)" in error.message, error.message
    assert "give 1126.112 CU" in error.message and "declaredCapacity: 1126" in error.message
    assert "allowOvercommit" in error.message


def test_a_long_tenant_list_names_the_largest_and_sums_the_rest(
    example: source_tree.SourceTree,
) -> None:
    """Eight tenants in one undeclared pool: the five largest by name, the rest summed (a
    pool with hundreds of tenants must not fill the terminal with one line)."""
    teams = {
        f"tenants/team-{i}.yaml": (
            "apiVersion: cu-reconciler.io/v1alpha1\nkind: Tenant\n"
            f"metadata: {{name: team-{i}}}\nspec:\n  namespaces: [team-{i}]\n"
            f"  priority: {i + 1}\n"
            f"  quotas:\n    - pool: dev\n      guaranteed: {10 * (i + 1)}\n"
        ).encode()
        for i in range(6)
    }
    managed = b"".join(f"    - team-{i}\n".encode() for i in range(6))
    cluster = example.files["cluster.yaml"].replace(b"    - ml-dev\n", b"    - ml-dev\n" + managed)
    files = {"pools/dev.yaml": _dev(example, b""), "cluster.yaml": cluster, **teams}
    (error,) = validate_tree(_with(example, **files)).errors
    assert error.code is codes.Code.GUARANTEES_WITHOUT_SIZE
    # 500 CU of the example's two tenants + 10+20+…+60 = 710 CU; the five largest named.
    assert "710 CU (ml-platform-dev 400, research-batch 100, team-3 40, team-4 50, " in (
        error.message
    ), error.message
    assert "team-5 60 and 3 more tenants (60 CU)" in error.message, error.message


def test_allow_overcommit_waives_the_size_and_keeps_the_observed_warning(
    example: source_tree.SourceTree,
) -> None:
    policy = example.files["policy.yaml"] + b"  allowOvercommit: true\n"
    files = {"pools/dev.yaml": _dev(example, b""), "policy.yaml": policy}
    assert validate_tree(_with(example, **files)).diagnostics == ()
    result = validate_tree(_with(example, **files, **{TENANT: _greedy(example)}))
    assert result.state is not None
    warning = {d.code: d for d in result.diagnostics}[codes.Code.GUARANTEES_EXCEED_CAPACITY]
    assert warning.severity is diagnostics.Severity.WARNING
    assert "allowOvercommit" in warning.message


def test_a_smaller_committed_snapshot_is_a_loss_not_an_error(
    example: source_tree.SourceTree,
) -> None:
    """Every H100 node gone from the committed snapshot of a pool sold at its full size:
    the CU403 warning (plan shows the shortfalls), never CU408."""
    yaml = YAML(typ="safe")
    doc = yaml.load(example.files["observed/snapshot.yaml"].decode())
    doc["items"] = [
        item
        for item in doc["items"]
        if "h100" not in str(item.get("metadata", {}).get("name", ""))
        and "h100" not in str((item.get("spec") or {}).get("nodeName", ""))
    ]
    buf = io.StringIO()
    yaml.dump(doc, buf)
    pool = example.files["pools/inference-prod.yaml"].replace(
        b"declaredCapacity: 9400", b"declaredCapacity: 6000"
    )
    files = {"observed/snapshot.yaml": buf.getvalue().encode(), "pools/inference-prod.yaml": pool}
    result = validate_tree(_with(example, **files))
    assert result.state is not None
    found = {d.code for d in result.diagnostics}
    assert codes.Code.GUARANTEES_EXCEED_FULL_CAPACITY not in found
    assert codes.Code.GUARANTEES_EXCEED_CAPACITY in found

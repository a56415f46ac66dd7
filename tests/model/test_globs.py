"""Layout globs: ``*`` stays in a folder, ``**`` spans folders."""

from __future__ import annotations

import pytest

from reconciler.model import globs


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**/*.yaml", "cluster.yaml", True),
        ("**/*.yaml", "claims/team/a.yaml", True),
        ("**/*.yaml", "claims/team/a.yml", False),
        ("pools/*.yaml", "pools/a.yaml", True),
        ("pools/*.yaml", "pools/old/a.yaml", False),
        ("observed/**", "observed/snapshot.yaml", True),
        ("observed/**", "observed", False),
        ("/cluster.yaml", "cluster.yaml", True),
        ("claims/?/*.yaml", "claims/a/x.yaml", True),
        ("claims/[!x]*.yaml", "claims/a.yaml", True),
        ("claims/[!x]*.yaml", "claims/x.yaml", False),
        ("a.yaml", "b/a.yaml", False),
    ],
)
def test_glob(pattern: str, path: str, expected: bool) -> None:
    assert bool(globs.compile_glob(pattern).match(path)) is expected


def test_selected_needs_include_and_no_exclude() -> None:
    assert globs.selected("pools/a.yaml", ["**/*.yaml"], ["observed/**"])
    assert not globs.selected("observed/s.yaml", ["**/*.yaml"], ["observed/**"])

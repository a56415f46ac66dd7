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
        # gitignore: a pattern without "/" matches the name at any depth ...
        ("a.yaml", "b/a.yaml", True),
        ("*.yaml", "claims/team/a.yaml", True),
        # ... one with a "/" is anchored at the root.
        ("/a.yaml", "b/a.yaml", False),
        ("claims/*.yaml", "x/claims/a.yaml", False),
        # Any string is a pattern; nothing raises (this one crashed validate).
        ("x[]]y", "x]y", True),
        ("[", "a.yaml", False),
        ("observed/", "observed/snapshot.yaml", True),
    ],
)
def test_glob(pattern: str, path: str, expected: bool) -> None:
    assert globs.matches_any(path, [pattern]) is expected


def test_selected_needs_include_and_no_exclude() -> None:
    assert globs.selected("pools/a.yaml", ["**/*.yaml"], ["observed/**"])
    assert not globs.selected("observed/s.yaml", ["**/*.yaml"], ["observed/**"])


def test_negation_re_includes_like_git() -> None:
    assert globs.matches_any("observed/keep.yaml", ["observed/**", "!observed/keep.yaml"]) is False
    assert globs.matches_any("observed/other.yaml", ["observed/**", "!observed/keep.yaml"])

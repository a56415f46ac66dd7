"""Repository path globs, as used by ``ClusterSettings.spec.layout``: exactly ``.gitignore``.

People know these patterns from ``.gitignore`` and pre-commit, so they mean exactly what git
means (matched by ``pathspec``'s gitignore implementation, not a home-made translator): a
pattern without a ``/`` (``*.yaml``) matches a name at any depth, one with a ``/`` is
anchored at the repository root, ``*`` stays within a segment, ``**`` spans segments, a
trailing ``/`` matches a directory's contents, ``!`` re-includes. Any string is a valid
pattern (``x[]]y`` included): nothing here can raise on user input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec


@functools.lru_cache(maxsize=256)
def compile_globs(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    """One compiled spec for a list of patterns (later ``!`` patterns re-include)."""
    import pathspec  # imported where used: start-up time matters for the CLI

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    return compile_globs(tuple(patterns)).match_file(path)


def selected(path: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """True when ``path`` matches an include glob and no exclude glob."""
    return matches_any(path, include) and not matches_any(path, exclude)

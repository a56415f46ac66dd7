"""Repository path globs, as used by ``ClusterSettings.spec.layout``.

The syntax is the one people know from ``.gitignore`` and pre-commit: ``*`` matches within one
path segment, ``**`` matches any number of whole segments (including none), ``?`` one
character, ``[abc]`` a class. Paths are repository-relative POSIX paths without a leading
``/``. Python's :mod:`fnmatch` lets ``*`` cross ``/``, which would make ``pools/*.yaml`` match
``pools/old/x.yaml``; hence this small translator.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Translate one glob into an anchored regular expression."""
    out: list[str] = []
    i, n = 0, len(pattern.lstrip("/"))
    text = pattern.lstrip("/")
    while i < n:
        c = text[i]
        if text.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif text.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = text.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = text[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    return any(compile_glob(p).match(path) for p in patterns)


def selected(path: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """True when ``path`` matches an include glob and no exclude glob."""
    return matches_any(path, include) and not matches_any(path, exclude)

"""Desired states already loaded, validated and verified, by Git revision.

Why: a commit is immutable, so reading, validating and signature-checking it again gives the
same answer; only the cluster changes between two reconciles of one revision (a vendor node,
a hand edit). Re-doing it cost a watch-triggered reconcile most of its time (issue 10's
node-appears latency). Only full commit SHAs are cached (a branch name or ``HEAD`` moves),
keyed with the repository path and the fleet cluster; only a revision that passed all three
steps is kept, so a failing one is re-checked and reported every time. The controller keeps
only the newest (``size=1``): a 5,000-claim desired state is tens of MB, and an older
revision is never reconciled again unless Git goes back to it.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from reconciler.model import diagnostics
from reconciler.model import state as st
from reconciler.source import tree as source_tree

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True, slots=True)
class Key:
    repo: str
    revision: str
    cluster: str | None


@dataclass(frozen=True, slots=True)
class Loaded:
    """One revision's files and the state they validate to (signature verified)."""

    tree: source_tree.SourceTree
    desired: st.DesiredState
    diagnostics: tuple[diagnostics.Diagnostic, ...]


@dataclass
class Revisions:
    """A small LRU of :class:`Loaded` by :class:`Key` (thread-safe)."""

    size: int = 1
    hits: int = 0
    misses: int = 0
    _entries: OrderedDict[Key, Loaded] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def key(repo: str, revision: str | None, cluster: str | None) -> Key | None:
        """The key for a request, or None when the revision is not an immutable SHA."""
        if revision is None or not _SHA.match(revision):
            return None
        return Key(repo, revision, cluster)

    def get(self, key: Key | None) -> Loaded | None:
        if key is None:
            return None
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: Key | None, loaded: Loaded) -> None:
        if key is None:
            return
        with self._lock:
            self._entries[key] = loaded
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

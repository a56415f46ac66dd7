"""Per-object values remembered by object identity, from one plan to the next.

Several stages walk every object of a plan and of its live side to compute the same small
fact about each one: its key, its sort position, whether it counts as ours, the CU it
publishes. With the controller's memo most objects are the very objects of the last plan
(:func:`reconciler.plan.target._intern`), and with the watch cache most live objects are the
very objects of the last read (:mod:`reconciler.observe.informer`). A fact computed once per
object is then a dictionary lookup the next time.

The cache is keyed by ``id()`` and holds the object itself, so an id is never reused while
its entry lives, and a hit is checked with ``is``. It keeps the objects of the current and
the previous turn only. Objects are never modified after they are planned or read (the rule
that lets plans share objects), so a fact stays true for as long as its object lives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

_UNSET: Any = object()


class Records:
    """Facts remembered per object, one record per object: the object, then each fact,
    unset until asked (one cache per fact held seven times the entries at 25,000 planned
    and 25,000 live objects). A record lives until the turn after the one it was last
    asked in."""

    def __init__(self, fns: Sequence[Callable[[Mapping[str, Any]], Any]]) -> None:
        self._fns = tuple(fns)
        self._now: dict[int, list[Any]] = {}
        self._last: dict[int, list[Any]] = {}

    def fact(self, index: int) -> Callable[[Mapping[str, Any]], Any]:
        """The ``index``-th fact, remembered in the records."""
        fn = self._fns[index]
        slot = index + 1
        width = len(self._fns)

        def remembered(obj: Mapping[str, Any]) -> Any:
            k = id(obj)
            record = self._now.get(k)
            if record is None:
                record = self._last.get(k)
                if record is None or record[0] is not obj:
                    record = [obj, *([_UNSET] * width)]
                self._now[k] = record
            value = record[slot]
            if value is _UNSET:
                value = record[slot] = fn(obj)
            return value

        return remembered

    def turn(self) -> None:
        """One plan done: forget the objects it did not ask about."""
        self._last, self._now = self._now, {}

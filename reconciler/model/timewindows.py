"""Guarantee windows: which window of a weekly schedule is in force at an instant, and when
the next one starts or ends. Pure: the instant is always an argument, never the clock.

A window is written in local wall-clock time (days of the week, ``start``/``end`` as
``HH:MM``, ``end`` ``24:00`` = midnight after) in one IANA time zone; ``end`` at or before
``start`` crosses midnight into the next day, and ``days`` names the day it *starts*.

Each occurrence is turned into one half-open interval of real time [start, end), so that
"in force" and "the next edge" come from the same intervals and can never disagree:

- a local time that happens twice (the hour repeated when clocks go back) means its
  *first* occurrence: a window never ends and starts again within the repeated hour;
- a local time that never happens (the hour skipped when clocks go forward) means the first
  instant after it, the moment the clocks jump: a window from 02:30 starts at 03:00 on that
  day, and a window wholly inside the skipped hour is empty that day.

Edges are whole minutes of local time; instants are compared in UTC.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

DAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
"""Day names as written in ``days`` (ISO order: Monday is 0, as ``date.weekday()``)."""
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$")


def minutes(clock: str) -> int:
    """``HH:MM`` (``24:00`` allowed) → minutes after local midnight; ValueError otherwise."""
    if not _CLOCK.match(clock):
        raise ValueError(f"{clock!r} is not a time of day HH:MM (00:00 to 24:00)")
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Paris``, ``UTC``); ValueError when unknown.

    The name is checked against the IANA grammar first, so a path (``../../etc/x``) never
    reaches the zone loader."""
    if not _ZONE.match(name) or len(name) > 64:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Paris, UTC)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r} (e.g. Europe/Paris, UTC)") from exc


@dataclass(frozen=True, slots=True)
class Window:
    """One weekly window of a schedule, in local minutes (the model's ``GuaranteeWindow``)."""

    name: str
    days: frozenset[int]
    """Days of the week it starts on, 0 = Monday."""
    start: int
    end: int
    """Minutes after local midnight; ``end <= start`` crosses midnight."""

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def week_spans(self) -> list[tuple[int, int]]:
        """Its spans in minutes of the local week (Monday 00:00 = 0), split at the week's
        end so none wraps: for overlap checks, where clocks never jump."""
        out: list[tuple[int, int]] = []
        length = self.end - self.start + (MINUTES_PER_DAY if self.crosses_midnight else 0)
        for day in sorted(self.days):
            begin = day * MINUTES_PER_DAY + self.start
            finish = begin + length
            if finish <= MINUTES_PER_WEEK:
                out.append((begin, finish))
            else:
                out += [(begin, MINUTES_PER_WEEK), (0, finish - MINUTES_PER_WEEK)]
        return out


def overlap(a: Window, b: Window) -> bool:
    """Do two windows of one schedule ever hold at the same local time?"""
    return any(s1 < e2 and s2 < e1 for s1, e1 in a.week_spans() for s2, e2 in b.week_spans())


def _local(instant: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def instant(day: dt.date, minute: int, tz: dt.tzinfo) -> dt.datetime:
    """The first real instant (UTC) at which the local clock of ``tz`` shows ``minute`` on
    ``day`` or later: the first of a repeated time, the jump itself for a skipped one."""
    wall = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(dt.UTC)
    if _local(first, tz) == wall:
        return first
    # A skipped time: fold 0 reads it with the offset before the jump (an instant after it),
    # fold 1 with the one after (an instant before it); the jump lies between them.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(dt.UTC)
    high = first
    if low > high:
        low, high = high, low
    while (high - low) > dt.timedelta(seconds=1):
        mid = low + (high - low) / 2
        if _local(mid, tz) >= wall:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def intervals(
    window: Window, tz: dt.tzinfo, around: dt.datetime, days_before: int = 2, days_after: int = 9
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The window's occurrences near ``around`` as [start, end) in UTC, empty ones dropped."""
    today = _local(around, tz).date()
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for offset in range(-days_before, days_after + 1):
        day = today + dt.timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        begin = instant(day, window.start, tz)
        end_day = day + dt.timedelta(days=1) if window.crosses_midnight else day
        finish = instant(end_day, window.end, tz)
        if begin < finish:
            out.append((begin, finish))
    return out


@dataclass(frozen=True, slots=True)
class InForce:
    """What a schedule says at one instant."""

    window: str | None
    """The window in force, None: none (the base guarantee holds)."""
    next_edge: dt.datetime | None
    """The next instant (UTC) at which a window starts or ends; None: no window ever holds."""


def _utc(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{at.isoformat()} has no time zone: give an offset (…Z, …+02:00)")
    return at.astimezone(dt.UTC)


def in_force(windows: Sequence[Window], tz: dt.tzinfo, at: dt.datetime) -> InForce:
    """The window in force at ``at`` (the first in list order if several would: validation
    refuses overlaps), and the next edge strictly after ``at``: the first instant within a
    week and a day at which the window in force changes (a window held on consecutive days,
    00:00-24:00, has no edge at midnight)."""
    at = _utc(at)
    spans = [(b, f, w.name) for w in windows for b, f in intervals(w, tz, at)]

    def holding(t: dt.datetime, *, before: bool = False) -> str | None:
        for begin, finish, name in spans:
            if (begin < t <= finish) if before else (begin <= t < finish):
                return name
        return None

    horizon = at + HORIZON
    candidates = sorted({e for b, f, _ in spans for e in (b, f) if at < e <= horizon})
    edge = next((e for e in candidates if holding(e, before=True) != holding(e)), None)
    return InForce(holding(at), edge)


@lru_cache(maxsize=1024)
def in_force_named(windows: tuple[Window, ...], zone_name: str, at: dt.datetime) -> InForce:
    """:func:`in_force` by zone name, memoised: tenants share window shapes, and one plan
    asks about every scheduled quota at the same instant."""
    return in_force(windows, zone(zone_name), at)


HORIZON = dt.timedelta(days=8)
"""How far ahead an edge is looked for: a week, and a day for a change of clocks."""


def next_edge(edges: Iterable[dt.datetime | None]) -> dt.datetime | None:
    """The earliest of several schedules' next edges (None when none has one)."""
    known = [e for e in edges if e is not None]
    return min(known) if known else None

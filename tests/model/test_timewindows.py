"""Guarantee windows: which window is in force, and the next edge, across midnight, the end
of the week and the days clocks change (docs/peaks-and-troughs.md)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from reconciler.model import timewindows as tw

PARIS = tw.zone("Europe/Paris")
NEW_YORK = tw.zone("America/New_York")
ALL = frozenset(range(7))
WEEKDAYS = frozenset(range(5))


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def local(tz: dt.tzinfo, *args: int, fold: int = 0) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz, fold=fold)


def win(name: str, start: str, end: str, days: frozenset[int] = ALL) -> tw.Window:
    return tw.Window(name, days, tw.minutes(start), tw.minutes(end))


DAY = win("day", "08:00", "24:00")
NIGHT = win("night", "00:00", "08:00")
LATE = win("late", "22:00", "06:00")  # crosses midnight


@pytest.mark.parametrize(
    ("windows", "at", "held", "edge"),
    [
        pytest.param(
            [DAY, NIGHT],
            local(PARIS, 2026, 12, 7, 7, 59),
            "night",
            local(PARIS, 2026, 12, 7, 8, 0),
            id="night-before-day",
        ),
        pytest.param(
            [DAY, NIGHT],
            local(PARIS, 2026, 12, 7, 8, 0),
            "day",
            local(PARIS, 2026, 12, 8, 0, 0),
            id="start-is-inclusive",
        ),
        pytest.param(
            [DAY],
            local(PARIS, 2026, 12, 7, 23, 59),
            "day",
            local(PARIS, 2026, 12, 8, 0, 0),
            id="24:00-is-midnight-after",
        ),
        pytest.param(
            [DAY],
            local(PARIS, 2026, 12, 8, 0, 0),
            None,
            local(PARIS, 2026, 12, 8, 8, 0),
            id="end-is-exclusive",
        ),
        pytest.param(
            [LATE],
            local(PARIS, 2026, 12, 8, 2, 0),
            "late",
            local(PARIS, 2026, 12, 8, 6, 0),
            id="midnight-crossing-after-midnight",
        ),
        pytest.param(
            [LATE],
            local(PARIS, 2026, 12, 7, 23, 0),
            "late",
            local(PARIS, 2026, 12, 8, 6, 0),
            id="midnight-crossing-before-midnight",
        ),
        pytest.param(
            [win("fri-night", "22:00", "06:00", frozenset({4}))],
            local(PARIS, 2026, 12, 12, 5, 0),
            "fri-night",
            local(PARIS, 2026, 12, 12, 6, 0),
            id="started-on-friday-holds-saturday",
        ),
        pytest.param(
            [win("sun-night", "22:00", "06:00", frozenset({6}))],
            local(PARIS, 2026, 12, 14, 3, 0),
            "sun-night",
            local(PARIS, 2026, 12, 14, 6, 0),
            id="week-wrap-sunday-into-monday",
        ),
        pytest.param(
            [win("sun-night", "22:00", "06:00", frozenset({6}))],
            local(PARIS, 2026, 12, 14, 7, 0),
            None,
            local(PARIS, 2026, 12, 20, 22, 0),
            id="next-edge-a-week-later",
        ),
        pytest.param(
            [win("work", "09:00", "17:00", WEEKDAYS)],
            local(PARIS, 2026, 12, 12, 12, 0),
            None,
            local(PARIS, 2026, 12, 14, 9, 0),
            id="weekend-waits-for-monday",
        ),
        pytest.param(
            [win("always", "00:00", "24:00")],
            local(PARIS, 2026, 12, 9, 12, 0),
            "always",
            None,
            id="always-has-no-edge-at-midnight",
        ),
    ],
)
def test_window_in_force_and_next_edge(windows, at, held, edge) -> None:
    got = tw.in_force(windows, PARIS, at)
    assert got.window == held
    assert got.next_edge == (edge.astimezone(dt.UTC) if edge else None)


def test_spring_forward_a_skipped_start_begins_when_the_clocks_jump() -> None:
    # Paris, 2027-03-28: 02:00 CET jumps to 03:00 CEST (01:00 UTC). 02:30 never happens.
    w = win("early", "02:30", "05:00")
    before = tw.in_force([w], PARIS, utc(2027, 3, 28, 0, 59))
    assert before.window is None and before.next_edge == utc(2027, 3, 28, 1, 0)
    assert tw.in_force([w], PARIS, utc(2027, 3, 28, 1, 0)).window == "early"
    # It ends at 05:00 CEST = 03:00 UTC: two hours that day, not two and a half.
    assert tw.in_force([w], PARIS, utc(2027, 3, 28, 1, 0)).next_edge == utc(2027, 3, 28, 3, 0)


def test_spring_forward_a_window_inside_the_skipped_hour_is_empty_that_day() -> None:
    w = win("gap", "02:10", "02:50")
    got = tw.in_force([w], PARIS, utc(2027, 3, 28, 0, 30))
    assert got.window is None
    # Not that day: the next edge is the next day's 02:10 CEST.
    assert got.next_edge == local(PARIS, 2027, 3, 29, 2, 10).astimezone(dt.UTC)


def test_fall_back_a_repeated_time_means_its_first_occurrence() -> None:
    # Paris, 2027-10-31: 03:00 CEST goes back to 02:00 CET; 02:00-03:00 happens twice.
    w = win("small-hours", "01:00", "02:30")
    start = local(PARIS, 2027, 10, 31, 1, 0).astimezone(dt.UTC)
    first_0230 = local(PARIS, 2027, 10, 31, 2, 30, fold=0).astimezone(dt.UTC)
    second_0215 = local(PARIS, 2027, 10, 31, 2, 15, fold=1).astimezone(dt.UTC)
    assert tw.in_force([w], PARIS, start).next_edge == first_0230
    # After the first 02:30 the window has ended; the repeated 02:15 does not reopen it.
    assert tw.in_force([w], PARIS, second_0215).window is None


def test_the_day_clocks_change_is_23_or_25_hours_long() -> None:
    # An all-day window on Sunday only: its length is the local day's.
    sunday = win("sunday", "00:00", "24:00", frozenset({6}))
    spring = tw.intervals(sunday, PARIS, utc(2027, 3, 28, 12), 0, 0)
    fall = tw.intervals(sunday, PARIS, utc(2027, 10, 31, 12), 0, 0)
    assert [f - b for b, f in spring] == [dt.timedelta(hours=23)]
    assert [f - b for b, f in fall] == [dt.timedelta(hours=25)]


def test_time_zones_differ_by_the_offset_of_the_day() -> None:
    w = win("nine-to-five", "09:00", "17:00")
    # Winter: New York is UTC-5; summer: UTC-4.
    assert tw.in_force([w], NEW_YORK, utc(2027, 1, 12, 14, 0)).window == "nine-to-five"
    assert tw.in_force([w], NEW_YORK, utc(2027, 1, 12, 13, 59)).window is None
    assert tw.in_force([w], NEW_YORK, utc(2027, 7, 12, 13, 0)).window == "nine-to-five"


@pytest.mark.parametrize(
    ("a", "b", "overlapping"),
    [
        pytest.param(DAY, NIGHT, False, id="adjacent"),
        pytest.param(DAY, LATE, True, id="late-evening"),
        pytest.param(NIGHT, LATE, True, id="early-morning"),
        pytest.param(
            win("a", "22:00", "06:00", frozenset({6})),
            win("b", "05:00", "07:00", frozenset({0})),
            True,
            id="sunday-night-into-monday",
        ),
        pytest.param(
            win("a", "22:00", "06:00", frozenset({6})),
            win("b", "05:00", "07:00", frozenset({1})),
            False,
            id="different-days",
        ),
    ],
)
def test_overlap(a: tw.Window, b: tw.Window, overlapping: bool) -> None:
    assert tw.overlap(a, b) is overlapping
    assert tw.overlap(b, a) is overlapping


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/localtime", "Not/AZone", "", "a" * 70])
def test_zone_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError):
        tw.zone(name)


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        tw.in_force([DAY], PARIS, dt.datetime(2026, 12, 7, 12))


ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
clock = hs.integers(0, 24 * 4 - 1).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}")


@settings(max_examples=150, deadline=None)
@given(
    zone=hs.sampled_from(ZONES),
    start=clock,
    end=clock,
    days=hs.frozensets(hs.integers(0, 6), min_size=1),
    # Any minute in 2027 (both changes of clocks included).
    offset=hs.integers(0, 365 * 24 * 60),
)
def test_state_is_constant_until_the_next_edge_and_changes_at_it(
    zone: str, start: str, end: str, days: frozenset[int], offset: int
) -> None:
    """The edge is the first change: just before it the window in force is the one now, at
    it another one (or none) holds; and no edge is ever reported more than 8 days ahead."""
    tz = tw.zone(zone)
    w = win("w", start, end, days)
    at = utc(2027, 1, 1) + dt.timedelta(minutes=offset)
    now = tw.in_force([w], tz, at)
    if now.next_edge is None:
        # Only a window held all the time has no edge.
        assert now.window == "w"
        assert tw.in_force([w], tz, at + dt.timedelta(days=3, minutes=17)).window == "w"
        return
    assert at < now.next_edge <= at + tw.HORIZON
    just_before = now.next_edge - dt.timedelta(seconds=1)
    if just_before > at:
        assert tw.in_force([w], tz, just_before).window == now.window
    assert tw.in_force([w], tz, now.next_edge).window != now.window


def _wall_clock_oracle(w: tw.Window, tz: dt.tzinfo, at: dt.datetime) -> bool:
    """The plain reading of a window on a day without a change of clocks."""
    local = at.astimezone(tz)
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if not w.crosses_midnight:
        return today in w.days and w.start <= minute < w.end
    return (today in w.days and minute >= w.start) or (yesterday in w.days and minute < w.end)


def _steady(tz: dt.tzinfo, at: dt.datetime) -> bool:
    """No change of clocks from the day before to the day after ``at`` (local)."""
    day = at.astimezone(tz).date()
    offsets = {
        dt.datetime.combine(day + dt.timedelta(days=d), dt.time(), tz).utcoffset()
        for d in (-1, 0, 1, 2)
    }
    return len(offsets) == 1


@settings(max_examples=200, deadline=None)
@given(
    zone=hs.sampled_from(ZONES),
    start=clock,
    end=clock,
    days=hs.frozensets(hs.integers(0, 6), min_size=1),
    offset=hs.integers(0, 365 * 24 * 60),
)
def test_away_from_changes_of_clocks_the_window_reads_as_the_wall_clock_says(
    zone: str, start: str, end: str, days: frozenset[int], offset: int
) -> None:
    tz = tw.zone(zone)
    w = win("w", start, end, days)
    at = utc(2027, 1, 1) + dt.timedelta(minutes=offset)
    if not _steady(tz, at):
        return
    assert (tw.in_force([w], tz, at).window == "w") is _wall_clock_oracle(w, tz, at)

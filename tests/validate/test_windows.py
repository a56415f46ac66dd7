"""Guarantee windows in validation: schema errors with file:line, no overlaps per tenant ×
pool, and a pool's guarantees summed at their peak over time, not all at once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest
from ruamel.yaml import YAML

from reconciler.model import codes
from reconciler.model import documents as docs
from reconciler.source import tree as source_tree
from reconciler.source import worktree
from reconciler.validate import semantics, validate_tree

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitrepo"
PEAKS = ROOT / "examples" / "peaks-and-troughs" / "tenants"


@pytest.fixture(scope="module")
def peaks() -> dict[str, bytes]:
    """The example with its worked windowed guarantees copied over tenants/."""
    files = dict(worktree.read_worktree(str(EXAMPLE)).files)
    for name in ("search-ranking", "research-batch"):
        files[f"tenants/{name}.yaml"] = (PEAKS / f"{name}.yaml").read_bytes()
    return files


def check(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    return validate_tree(source_tree.SourceTree("worktree", "x", files))


def test_the_worked_example_is_valid_and_loads_its_schedules(peaks: dict[str, bytes]) -> None:
    result = check(peaks)
    assert result.ok and result.diagnostics == ()
    assert result.state is not None
    search = next(t for t in result.state.tenants if t.metadata.name == "search-ranking")
    (quota,) = search.spec.quotas
    assert quota.schedule is not None and quota.schedule.time_zone == "Asia/Shanghai"
    assert [w.name for w in quota.schedule.windows] == ["daytime"]


def test_the_example_without_peaks_leaves_them_out() -> None:
    result = validate_tree(worktree.read_worktree(str(EXAMPLE)))
    assert result.state is not None
    assert all(q.schedule is None for t in result.state.tenants for q in t.spec.quotas)


def _edit(files: dict[str, bytes], name: str, old: str, new: str) -> dict[str, bytes]:
    text = files[name].decode()
    assert old in text
    return {**files, name: text.replace(old, new).encode()}


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        pytest.param(
            "timeZone: Asia/Shanghai",
            "timeZone: Asia/Shangai",
            26,
            "unknown IANA time zone 'Asia/Shangai'",
            id="unknown-zone",
        ),
        pytest.param(
            "timeZone: Asia/Shanghai",
            "timeZone: ../../../etc/passwd",
            26,
            "not an IANA time zone name",
            id="path-as-zone",
        ),
        pytest.param('start: "00:00"', 'start: "25:00"', 30, "should match pattern", id="bad-time"),
        pytest.param(
            "days: [Mon, Tue,", "days: [Mon, Mon,", 28, "names a day twice", id="day-twice"
        ),
        pytest.param(
            "guaranteed: 1000",
            "guaranteed: 1000\n          - name: late\n            days: [Sun]\n"
            '            start: "22:00"\n            end: "01:00"\n            guaranteed: 5',
            25,
            "windows 'night' and 'late' overlap",
            id="overlap-across-midnight",
        ),
    ],
)
def test_bad_windows_are_errors_at_their_line(
    peaks: dict[str, bytes], old: str, new: str, line: int, message: str
) -> None:
    result = check(_edit(peaks, "tenants/research-batch.yaml", old, new))
    (error,) = result.errors
    assert error.file == "tenants/research-batch.yaml" and error.line == line, error.render()
    assert message in error.message
    assert result.state is None


def test_a_window_guarantee_above_the_limit_is_an_error(peaks: dict[str, bytes]) -> None:
    result = check(
        _edit(peaks, "tenants/search-ranking.yaml", "guaranteed: 2400", "guaranteed: 4000")
    )
    (error,) = result.errors
    assert "below window 'daytime'" in error.message and error.file == "tenants/search-ranking.yaml"


def test_pool_guarantees_are_summed_at_their_peak(peaks: dict[str, bytes]) -> None:
    """inference-prod is sold at 9,400 CU (8,460 after headroom). Day: search 2400 + chat
    2000 + ads 400; night: search 1400 + chat 2000 + ads 400 + research R. R = 4500 adds up
    to 9,300 if every guarantee is counted at once, but never more than 8,300 at any
    instant: no finding. R = 6000 is 9,800 at night: the overcommit error (CU408) at the
    research schedule naming the instant."""
    fine = check(
        _edit(peaks, "tenants/research-batch.yaml", "guaranteed: 1000", "guaranteed: 4500")
    )
    assert fine.ok and fine.diagnostics == ()
    over = check(
        _edit(peaks, "tenants/research-batch.yaml", "guaranteed: 1000", "guaranteed: 6000")
    )
    (warning,) = over.diagnostics
    assert warning.code == codes.Code.GUARANTEES_EXCEED_FULL_CAPACITY
    assert warning.file == "tenants/research-batch.yaml" and warning.line == 26
    assert "9,800 CU at" in warning.message or "9800 CU at" in warning.message, warning.message
    assert "(guarantee windows)" in warning.message


def test_the_published_schema_checks_windows_too(peaks: dict[str, bytes]) -> None:
    schema = json.loads((ROOT / "schemas" / "tenant.json").read_text())
    doc = YAML(typ="safe").load(peaks["tenants/research-batch.yaml"].decode())
    jsonschema.validate(doc, schema)
    doc["spec"]["quotas"][2]["schedule"]["windows"][0]["days"] = ["Monday"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    doc["spec"]["quotas"][2]["schedule"]["windows"][0]["days"] = ["Mon"]
    doc["spec"]["quotas"][2]["schedule"]["windows"][0]["end"] = "8:00"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def _quota(zone: str, start: str, end: str) -> docs.Quota:
    return docs.Quota.model_validate(
        {
            "pool": "p",
            "guaranteed": 0,
            "schedule": {
                "timeZone": zone,
                "windows": [
                    {
                        "name": "w",
                        "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                        "start": start,
                        "end": end,
                        "guaranteed": 100,
                    }
                ],
            },
        }
    )


def test_zones_that_change_clocks_on_different_dates_are_summed_in_real_time() -> None:
    """New York 08:00-09:00 and London 12:00-13:00 never meet in winter (13-14 and 12-13
    UTC) or in summer (12-13 and 11-12 UTC), but do in the two weeks of March when New York
    has changed its clocks and London has not: the peak is 200 CU then, found by the sweep
    over the reference year."""
    ny, london = (
        _quota("America/New_York", "08:00", "09:00"),
        _quota("Europe/London", "12:00", "13:00"),
    )
    at = semantics._peak([ny, london])
    assert at is not None
    assert dt.datetime(2027, 3, 14, tzinfo=dt.UTC) < at < dt.datetime(2027, 3, 28, tzinfo=dt.UTC)
    assert ny.guaranteed_at(at) + london.guaranteed_at(at) == 200
    # One zone: the week's sweep, in local time.
    a, b = _quota("Europe/Paris", "08:00", "09:00"), _quota("Europe/Paris", "08:30", "10:00")
    at = semantics._peak([a, b])
    assert at is not None and a.guaranteed_at(at) + b.guaranteed_at(at) == 200


def test_the_overlay_files_have_resolving_modelines_and_match_the_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "tenant.json").read_text())
    files = sorted(PEAKS.glob("*.yaml"))
    assert [f.name for f in files] == ["research-batch.yaml", "search-ranking.yaml"]
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.partition("$schema=")[2]).resolve()
        assert target == (ROOT / "schemas" / "tenant.json").resolve(), path
        jsonschema.validate(YAML(typ="safe").load(path.read_text()), schema)

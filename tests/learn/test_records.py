"""Ingest and validation: bad rows are counted by reason, never used, never fatal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reconciler import errors
from reconciler.learn import records, synthetic

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def good_row(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "timestamp": "2026-11-20T10:00:00Z",
        "node": "a100-n00",
        "device_uuid": "GPU-1",
        "device_model": "A100-SXM4-80GB",
        "vendor": "nvidia",
        "served_model": "llama3-8b",
        "workload_class": "decode",
        "batch_size": 8,
        "throughput": 120.0,
        "latency_p50_ms": 40.0,
        "latency_p99_ms": 90.0,
    }
    row.update(over)
    return row


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        pytest.param({"node": None}, records.RejectReason.MISSING_FIELD, id="missing-node"),
        pytest.param({"served_model": ""}, records.RejectReason.MISSING_FIELD, id="empty-model"),
        pytest.param({"throughput": -5.0}, records.RejectReason.BAD_THROUGHPUT, id="negative"),
        pytest.param({"throughput": float("nan")}, records.RejectReason.BAD_THROUGHPUT, id="nan"),
        pytest.param({"throughput": 0.0}, records.RejectReason.BAD_THROUGHPUT, id="zero"),
        pytest.param({"batch_size": 0}, records.RejectReason.BAD_BATCH, id="batch-0"),
        pytest.param({"latency_p99_ms": 10.0}, records.RejectReason.BAD_LATENCY, id="p99<p50"),
        pytest.param({"device_model": "X-9000"}, records.RejectReason.UNKNOWN_DEVICE, id="unknown"),
        pytest.param({"vendor": "amd"}, records.RejectReason.VENDOR_MISMATCH, id="vendor"),
        pytest.param(
            {"workload_class": "train"}, records.RejectReason.UNKNOWN_WORKLOAD_CLASS, id="class"
        ),
        pytest.param(
            {"timestamp": "2026-12-01T00:00:00Z"},
            records.RejectReason.FUTURE_TIMESTAMP,
            id="future",
        ),
        pytest.param(
            {"timestamp": "not a time"}, records.RejectReason.BAD_TIMESTAMP, id="bad-time"
        ),
    ],
)
def test_each_bad_row_is_counted_under_its_reason(
    override: dict[str, object], reason: records.RejectReason
) -> None:
    frame = pd.DataFrame([good_row(), good_row(**override), good_row(node="a100-n01")])
    got = records.validate(frame, NOW)
    assert got.report.total == 3
    assert got.report.accepted == 2
    assert got.report.by_reason[reason] == 1
    assert sum(got.report.by_reason.values()) == 1
    assert len(got.frame) == 2
    assert np.isfinite(got.frame["log_tput"]).all()


def test_injected_bad_rows_match_the_report(small_records) -> None:  # type: ignore[no-untyped-def]
    recs, truth, _ = small_records
    for reason, n in truth.bad_rows.items():
        assert recs.report.by_reason[reason] == n
    assert recs.report.rejected == sum(truth.bad_rows.values())
    assert not recs.frame["device_model"].isin(["MYSTERY-9000"]).any()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet_load_the_same_rows(tmp_path: Path, suffix: str) -> None:
    sc = synthetic.Scenario(records=3_000, bad_rows=40)
    frame, _ = synthetic.generate(sc, seed=3)
    path = tmp_path / f"records{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    got = records.load([path], sc.end)
    assert got.report.total == 3_000
    assert got.report.rejected == 40
    assert got.digest.startswith("sha256:")
    direct = records.validate(frame, sc.end)
    assert np.allclose(np.sort(got.frame["log_tput"]), np.sort(direct.frame["log_tput"]))


def test_missing_column_is_a_file_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame([good_row()]).drop(columns=["throughput"]).to_csv(path, index=False)
    with pytest.raises(errors.InputError, match="throughput"):
        records.load([path], NOW)


def test_models_only_in_the_table_are_kept_when_named() -> None:
    frame = pd.DataFrame([good_row(device_model="Ascend-910B3", vendor="huawei")])
    assert records.validate(frame, NOW).report.accepted == 0
    assert records.validate(frame, NOW, extra_models={"Ascend-910B3"}).report.accepted == 1


def _csv_with_bad_rows(path: Path) -> list[bytes]:
    header = ",".join(records.REQUIRED_COLUMNS).encode()
    good = ",".join(str(v) for v in good_row().values()).encode()
    lines = [
        header,
        good,  # line 2
        b"2026-11-20T10:00:00Z,a100-n00,GPU-1,A100-SXM4-80GB,nvidia",  # 3: ragged (5 fields)
        good,  # 4
        good.replace(b"a100-n00", b"a100-\xff\xfe"),  # 5: not UTF-8
        good + b",extra",  # 6: ragged (12 fields)
        good.replace(b"120.0", b"-1"),  # 7: bad throughput
        good,  # 8
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def test_ragged_rows_and_bad_encodings_are_rejected_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    _csv_with_bad_rows(path)
    got = records.load([path], NOW)
    rep = got.report
    assert (rep.total, rep.accepted) == (7, 3)
    R = records.RejectReason
    assert rep.by_reason[R.RAGGED_ROW] == 2
    assert rep.by_reason[R.BAD_ENCODING] == 1
    assert rep.by_reason[R.BAD_THROUGHPUT] == 1
    where = {(e.reason, e.line) for e in rep.examples}
    assert where == {
        (R.RAGGED_ROW, 3),
        (R.RAGGED_ROW, 6),
        (R.BAD_ENCODING, 5),
        (R.BAD_THROUGHPUT, 7),
    }
    text = rep.render()
    assert f"{path}:3:1: ragged-row: expected 11 fields, got 5" in text
    assert f"{path}:5:1: bad-encoding" in text and f"{path}:7:1: bad-throughput" in text
    assert ":0:0" not in text
    assert list(got.frame["node"].astype(str)) == ["a100-n00"] * 3


def test_bad_rows_in_a_second_file_name_that_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    _csv_with_bad_rows(first)
    lines = _csv_with_bad_rows(second)
    second.write_bytes(b"\n".join(lines[:2] + lines[6:7]) + b"\n")  # bad throughput on line 3
    rep = records.load([first, second], NOW).report
    assert records.RowProblem(str(second), 3, records.RejectReason.BAD_THROUGHPUT) in rep.examples
    assert rep.accepted == 4

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

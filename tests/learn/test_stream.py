"""The streamed aggregation: same factors as the in-memory path, identical on Dask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reconciler.learn import adapter, distributed, drift, records, stream, synthetic
from reconciler.model import documents as docs

POLICY = docs.FactorPolicy()


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, pd.DataFrame, synthetic.Scenario]:
    """30k records with bad rows and both steps, as a hive-partitioned Parquet dataset."""
    sc = synthetic.Scenario(
        records=30_000, bad_rows=60, steps=synthetic.default_steps(synthetic.Scenario().start)
    )
    frame, _ = synthetic.generate(sc, seed=4)
    root = tmp_path_factory.mktemp("dataset")
    week = frame["timestamp"].dt.strftime("%G-W%V")
    for name, part in frame.groupby(week):
        (root / f"week={name}").mkdir()
        part.to_parquet(root / f"week={name}" / "part-0.parquet", index=False)
    return root, frame, sc


def test_streamed_factors_match_the_in_memory_fit(dataset) -> None:  # type: ignore[no-untyped-def]
    root, frame, sc = dataset
    frags = stream.fragments([root])
    assert len(frags) >= 4
    aggs = stream.aggregate(frags, sc.end)
    got = stream.learn(aggs, None, POLICY, sc.end, records_revision=stream.digest(frags))
    mem = adapter.learn(records.validate(frame, sc.end), None, POLICY, sc.end)
    assert got.reject_report.total == len(frame) and got.reject_report.rejected == 60
    assert set(got.posteriors) == set(mem.posteriors)
    for key, post in mem.posteriors.items():
        assert got.posteriors[key].value == pytest.approx(post.value, rel=2e-3), key
    assert {s.node for s in got.slow_nodes} == {s.node for s in mem.slow_nodes}
    assert got.fit.screened == pytest.approx(mem.fit.screened, rel=0.02)
    assert [c.render().split(" (")[0] for c in got.coverage] == [
        c.render().split(" (")[0] for c in mem.coverage
    ]
    # a rejected row is located in its fragment by row number
    ex = got.reject_report.examples[0]
    assert ex.file.startswith(str(root)) and ex.file.endswith(".parquet") and ex.line >= 1


def test_dask_engine_gives_identical_results(dataset) -> None:  # type: ignore[no-untyped-def]
    root, _, sc = dataset
    frags = stream.fragments([root])
    local = stream.aggregate(frags, sc.end)
    with distributed.client(None, workers=2) as c:
        remote = stream.aggregate(frags, sc.end, mapper=distributed.mapper(c))
    pd.testing.assert_frame_equal(local.cells, remote.cells, check_exact=True)
    pd.testing.assert_frame_equal(local.sparse, remote.sparse, check_exact=True)
    assert local.report == remote.report and local.screened == remote.screened
    a = stream.learn(local, None, POLICY, sc.end)
    b = stream.learn(remote, None, POLICY, sc.end)
    assert {k: p.value for k, p in a.posteriors.items()} == {
        k: p.value for k, p in b.posteriors.items()
    }
    assert a.alarms == b.alarms and a.proposal.table == b.proposal.table


def test_a_short_busy_window_holds_no_records_and_says_so(tmp_path: Path) -> None:
    """Records are held one by one only for sparse series, at most ``max_records`` each;
    a busy series in a window too short for the CUSUM is reported, not buffered."""
    sc = synthetic.Scenario(records=20_000, days=2)
    frame, _ = synthetic.generate(sc, seed=1)
    path = tmp_path / "r.parquet"
    frame.to_parquet(path, index=False)
    config = drift.DriftConfig(max_records=1_000)
    aggs = stream.aggregate(stream.fragments([path]), sc.end, config=config)
    per_series = aggs.sparse.groupby(["device_model", "workload_class"], observed=True).size()
    assert per_series.max() <= 1_000
    out = stream.learn(aggs, None, POLICY, sc.end, drift_config=config)
    busy = [c for c in out.coverage if not c.tested and c.unit == "hourly bins"]
    assert busy and all(c.have < 96 and c.need == 96 for c in busy)
    assert all("not enough data (have" in c.render() for c in busy)
    assert {c.method for c in out.coverage} >= {drift.Method.RECORD_CHANGE_POINT}


def test_histogram_screen_matches_exact_medians() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(5.0, 0.1, 10_000)
    hist = np.bincount(
        np.clip(((y - stream.LOW) / stream.BIN).astype(np.int64), 0, stream.NBINS - 1),
        minlength=stream.NBINS,
    )
    key = ("A100-SXM4-80GB", "decode", "m", "tokens/s", 0.0)
    screen = stream.Screen.from_histograms({key: hist})
    assert screen.center[key] == pytest.approx(np.median(y), abs=stream.BIN)
    mad = 1.4826 * np.median(np.abs(y - np.median(y)))
    assert screen.scale[key] == pytest.approx(mad, abs=2 * stream.BIN)

"""Every bad records input is a clear exit 2, every format reads the same wherever it sits,
and evidence is identified by its content: re-encoded, split or duplicated copies of the
same records are the same evidence (issue 22, items 1 and 2)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import git
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from reconciler.cli import _app
from reconciler.learn import records

runner = CliRunner()
NOW = ["--now", "2026-11-27T00:00:00Z"]


@pytest.fixture()
def repo(example_repo: git.Repo) -> Path:
    return Path(example_repo.working_dir)


def _fit(repo: Path, *paths: Path, extra: tuple[str, ...] = ()) -> Result:
    args = ["factors", "fit", "--repo", str(repo), *NOW, *extra]
    for p in paths:
        args += ["--records", str(p)]
    return runner.invoke(_app.app, args)


def _header(src: Path) -> str:
    return src.read_text().splitlines()[0]


_BAD = [
    pytest.param(
        lambda d, src: d.joinpath("r.csv").write_text(_header(src) + "\n"), id="header-only-csv"
    ),
    pytest.param(lambda d, src: d.joinpath("r.csv").write_bytes(b""), id="empty-csv"),
    pytest.param(
        lambda d, src: d.joinpath("r.csv.gz").write_bytes(gzip.compress(b"")), id="empty-csv-gz"
    ),
    pytest.param(
        lambda d, src: d.joinpath("r.csv.gz").write_bytes(b"not gzip at all"), id="corrupt-gz"
    ),
    pytest.param(
        lambda d, src: d.joinpath("r.parquet").write_bytes(b"PAR1 nope"), id="corrupt-parquet"
    ),
    pytest.param(
        lambda d, src: pq.write_table(
            pa.table({c: pa.array([], pa.string()) for c in records.REQUIRED_COLUMNS}),
            d / "r.parquet",
        ),
        id="empty-parquet",
    ),
    pytest.param(
        lambda d, src: d.joinpath("r.csv").write_text("a,b,c\n1,2,3\n"), id="wrong-columns"
    ),
    pytest.param(
        lambda d, src: d.joinpath("r.csv").write_text(
            _header(src).replace("throughput,", "tput,")
            + "\n"
            + src.read_text().splitlines()[1]
            + "\n"
        ),
        id="renamed-column",
    ),
    pytest.param(lambda d, src: d.joinpath("notes.txt").write_text("x\n"), id="no-record-files"),
]
"""Each bad input, named directly and as the directory holding it."""
_CASES = [
    pytest.param(case.values[0], named, id=f"{case.id}-{named}")
    for case in _BAD
    for named in ("file", "directory")
] + [pytest.param(lambda d, src: None, "directory", id="empty-directory")]
"""An empty directory has no file to name: only the directory form exists."""


@pytest.mark.parametrize(("make", "named"), _CASES)
def test_bad_input_is_exit_2_with_a_clear_message(
    repo: Path,
    synthetic_records: Path,
    tmp_path: Path,
    make,
    named: str,  # type: ignore[no-untyped-def]
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    make(d, synthetic_records)
    target = sorted(d.iterdir())[0] if named == "file" else d
    res = _fit(repo, target, extra=("--write", "--push"))
    assert res.exit_code == _app.EXIT_ERROR, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("cuctl factors fit: ") and "nothing" in last, res.stderr
    assert f"{target}" in res.stderr and ":1:1: records." in res.stderr, res.stderr
    assert "cu-factors/update" not in git.Repo(repo).heads


def test_a_missing_path_is_exit_2(repo: Path, tmp_path: Path) -> None:
    res = _fit(repo, tmp_path / "nope.csv")
    assert res.exit_code == _app.EXIT_ERROR
    assert f"{tmp_path / 'nope.csv'}:1:1: records.missing: no such file" in res.stderr


def _crlf_gzip(src: Path, dst: Path) -> None:
    dst.write_bytes(gzip.compress(src.read_bytes().replace(b"\n", b"\r\n")))


def test_every_format_reads_the_same_and_copies_are_the_same_evidence(
    repo: Path, synthetic_records: Path, tmp_path: Path
) -> None:
    """The plain CSV and its gzipped CRLF copy inside a directory next to a README (and,
    below, named directly): the same records, the same decisions (issue 22.2)."""
    plain = _fit(repo, synthetic_records)
    assert plain.exit_code == _app.EXIT_FINDINGS, plain.output
    d = tmp_path / "dir"
    (d / "day=2026-11-01").mkdir(parents=True)
    _crlf_gzip(synthetic_records, d / "day=2026-11-01" / "records.csv.gz")
    (d / "README").write_text("exported nightly\n")
    inside = _fit(repo, d)
    assert inside.exit_code == _app.EXIT_FINDINGS, inside.output
    assert plain.stdout == inside.stdout
    assert "skipped 1 files that are not records" in inside.stderr

    # Issue 22.1: gzip + CRLF, split in two files, one half given twice, and rows repeated
    # inside a file: each record counted once, the duplicates reported with their places,
    # and the same evidence identity (recordsRevision) as the original file.
    lines = synthetic_records.read_bytes().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    half = len(body) // 2
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv"
    a.write_bytes(gzip.compress((header + b"".join(body[:half])).replace(b"\n", b"\r\n")))
    b.write_bytes(header + b"".join(body[half:]) + b"".join(body[half : half + 10]))  # 10 repeats
    copy = tmp_path / "again" / "a.csv.gz"
    copy.parent.mkdir()
    copy.write_bytes(a.read_bytes())
    res = _fit(repo, a, b, copy.parent)
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    assert res.stdout.split("Records: ")[0] == plain.stdout.split("Records: ")[0]
    revision = re.search(r"Records: (sha256:[0-9a-f]+);", plain.stdout)
    assert revision and f"Records: {revision.group(1)};" in res.stdout
    dup = re.search(r"duplicate: (\d+)", res.stderr)
    valid_dups = int(dup.group(1)) if dup else 0
    # the 10 repeated rows of b (some may be invalid rows: those are rejected, not duplicates)
    # and every valid row of a's second copy
    assert valid_dups >= half * 0.9 + 9, res.stderr
    assert f"{b}:{len(body) - half + 2}:1: duplicate: same record as line " in res.stderr
    assert f"{copy}:2:1: duplicate: first seen in {a}" in res.stderr
    assert f"duplicate {valid_dups}" in res.stdout  # and in the commit message


def test_published_records_re_encoded_move_nothing(
    repo: Path, synthetic_records: Path, tmp_path: Path
) -> None:
    """After the learned table from these records is merged, a gzipped CRLF copy split in
    two is recognised as the same evidence: the cap does not apply a second time."""
    r = git.Repo(repo)
    first = _fit(repo, synthetic_records, extra=("--write",))
    assert first.exit_code == _app.EXIT_FINDINGS, first.output
    r.git.update_ref("refs/heads/main", r.commit("cu-factors/update").hexsha)
    r.git.reset("--hard", "-q")
    lines = synthetic_records.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "p1.csv.gz").write_bytes(
        gzip.compress(b"".join(lines[:half]).replace(b"\n", b"\r\n"))
    )
    (tmp_path / "p2.csv").write_bytes(lines[0] + b"".join(lines[half:]))
    again = _fit(repo, tmp_path / "p1.csv.gz", tmp_path / "p2.csv", extra=("--write",))
    assert again.exit_code == _app.EXIT_OK, again.output
    assert "already published from these records" in again.stdout
    assert "→" not in again.stdout.split("Held")[0]


def test_identity_is_the_content_not_the_text() -> None:
    base = {
        "timestamp": ["2026-11-01T00:00:00Z", "2026-11-01T00:00:00+00:00"],
        "node": ["n1", " n1"],
        "device_uuid": ["u", "u"],
        "device_model": ["A100-SXM4-80GB", "A100-SXM4-80GB"],
        "vendor": ["nvidia", "NVIDIA"],
        "served_model": ["m", "m"],
        "workload_class": ["decode", "decode"],
        "batch_size": ["8", "8.0"],
        "throughput": ["1234.5", "1234.50"],
        "latency_p50_ms": ["10", "10"],
        "latency_p99_ms": ["20", "20"],
    }
    now = pd.Timestamp("2026-12-01", tz="UTC").to_pydatetime()
    recs = records.validate(pd.DataFrame(base), now)
    ids = records.identity(recs.frame)
    assert len(ids) == 2 and ids[0] == ids[1]
    other = records.validate(pd.DataFrame({**base, "throughput": ["1234.5", "1234.6"]}), now)
    ids2 = records.identity(other.frame)
    assert ids2[0] == ids[0] and ids2[1] != ids2[0]
    assert ids.dtype == np.uint64

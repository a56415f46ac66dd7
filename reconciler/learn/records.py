"""Inference records: read CSV/Parquet at the edge, then validate rows purely.

A record is one measurement window of one device serving one model. Bad rows are common
in telemetry (exporters restart, clocks skew, a device is relabelled), so validation never
raises on a row: each rejected row is counted under the first reason it fails, and the
:class:`RejectReport` is shown to the user. A row that is rejected is never used.

Columns (``docs/factors.md`` documents them): ``timestamp`` (ISO 8601 or Parquet
timestamp, UTC), ``node``, ``device_uuid``, ``device_model``, ``vendor``, ``served_model``,
``workload_class``, ``batch_size`` (batch or concurrency, >= 1), ``throughput`` (> 0),
``throughput_unit`` (optional, ``tokens/s`` or ``requests/s``; default ``tokens/s``),
``latency_p50_ms`` and ``latency_p99_ms``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from reconciler.errors import InputError
from reconciler.learn import specs
from reconciler.model import diagnostics

REQUIRED_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "node",
    "device_uuid",
    "device_model",
    "vendor",
    "served_model",
    "workload_class",
    "batch_size",
    "throughput",
    "latency_p50_ms",
    "latency_p99_ms",
)
OPTIONAL_COLUMNS: Mapping[str, str] = {"throughput_unit": "tokens/s"}
CATEGORICAL = ("node", "device_uuid", "device_model", "vendor", "served_model", "workload_class")


class RejectReason(StrEnum):
    """Why a row was not used; checked in this order, the first failure wins."""

    MISSING_FIELD = "missing-field"
    BAD_TIMESTAMP = "bad-timestamp"
    FUTURE_TIMESTAMP = "future-timestamp"
    BAD_THROUGHPUT = "bad-throughput"  # NaN, infinite, zero or negative
    BAD_BATCH = "bad-batch"
    BAD_LATENCY = "bad-latency"  # negative, or p99 below p50
    UNKNOWN_DEVICE = "unknown-device"
    VENDOR_MISMATCH = "vendor-mismatch"
    UNKNOWN_WORKLOAD_CLASS = "unknown-workload-class"
    RAGGED_ROW = "ragged-row"  # a CSV row with too few or too many fields
    BAD_ENCODING = "bad-encoding"  # a text field that is not UTF-8
    DUPLICATE = "duplicate"  # the same record (normalised content) as an earlier row: used once


MAX_EXAMPLES = 20
"""Rejected rows listed by location per reason (all are counted)."""


@dataclass(frozen=True, slots=True, order=True)
class RowProblem:
    """Where a rejected row is: file and line (CSV) or row number (Parquet, 1-based)."""

    file: str
    line: int
    reason: RejectReason
    detail: str = ""

    def render(self) -> str:
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.file}:{self.line}:1: {self.reason.value}{extra}"


@dataclass(frozen=True, slots=True)
class RejectReport:
    total: int
    accepted: int
    by_reason: Mapping[RejectReason, int] = field(default_factory=dict)
    examples: tuple[RowProblem, ...] = ()  # the first MAX_EXAMPLES per reason, by location

    @property
    def rejected(self) -> int:
        return self.total - self.accepted

    def render(self) -> str:
        lines = [f"records: {self.total} read, {self.accepted} used, {self.rejected} rejected"]
        for reason, n in self.by_reason.items():
            if not n:
                continue
            shown = [e for e in self.examples if e.reason is reason]
            lines.append(f"  {reason.value}: {n}" + (" (first shown)" if n > len(shown) else ""))
            lines += [f"    {e.render()}" for e in shown]
        return "\n".join(lines)

    def merge(self, other: RejectReport) -> RejectReport:
        """Both reports as one (files or batches read one after another)."""
        by = {r: self.by_reason.get(r, 0) + other.by_reason.get(r, 0) for r in RejectReason}
        kept: list[RowProblem] = []
        for r in RejectReason:
            kept += [e for e in (*self.examples, *other.examples) if e.reason is r][:MAX_EXAMPLES]
        return RejectReport(
            self.total + other.total, self.accepted + other.accepted, by, tuple(kept)
        )


@dataclass(frozen=True, slots=True)
class Records:
    """Validated rows plus derived columns ``log_tput``, ``log_batch`` and ``hour``."""

    frame: pd.DataFrame
    report: RejectReport
    digest: str = ""  # sha256 of the source files, recorded as the factors' recordsRevision


# ------------------------------------------------------------------------------------ I/O


@dataclass(frozen=True, slots=True)
class RawFile:
    """One file as read: its rows (with ``_line``, where each row is) and the rows that
    could not even be parsed (ragged CSV rows), already located."""

    frame: pd.DataFrame
    unparsed: tuple[RowProblem, ...] = ()


CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
"""CSV, plain or compressed (Arrow decompresses by the suffix)."""
PARQUET_SUFFIXES = (".parquet", ".pq")
FORMATS = CSV_SUFFIXES + PARQUET_SUFFIXES
"""Every record format, read the same way named directly or found in a directory."""


def format_of(path: Path) -> str | None:
    """``"csv"``, ``"parquet"``, or None for a file that is not a record file."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def read_frame(path: Path) -> pd.DataFrame:
    """Read one CSV or Parquet file as-is (rows that cannot be parsed left out)."""
    return read_file(path).frame


def read_file(path: Path) -> RawFile:
    """Read one CSV or Parquet file; a missing required column is a file-level error.

    Never fatal for a row: a ragged CSV row (too few or too many fields) is skipped and
    reported with its line; text that is not UTF-8 is kept as bytes here and rejected row
    by row in :func:`validate` (a whole file is not lost to one bad byte).
    """
    kind = format_of(path)
    unparsed: list[RowProblem] = []
    if kind == "parquet":
        table = read_parquet(path)
        first_line = 1
    elif kind == "csv":

        def skip(row: pacsv.InvalidRow) -> str:
            unparsed.append(
                RowProblem(
                    str(path),
                    int(row.number or 0),
                    RejectReason.RAGGED_ROW,
                    f"expected {row.expected_columns} fields, got {row.actual_columns}",
                )
            )
            return "skip"

        dictionary = pa.dictionary(pa.int32(), pa.binary())
        try:
            table = pacsv.read_csv(
                path,
                # single-threaded so the parser knows each row's line number
                read_options=pacsv.ReadOptions(use_threads=False),
                parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
                convert_options=pacsv.ConvertOptions(
                    column_types={
                        **{c: dictionary for c in (*CATEGORICAL, "throughput_unit")},
                        "timestamp": pa.binary(),
                    },
                    strings_can_be_null=True,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, EOFError) as exc:
            raise InputError([_diag(path, "records.parse", _arrow_message(exc))]) from exc
        first_line = 2  # line 1 is the header
    else:
        raise InputError(
            [_diag(path, "records.format", f"records must be one of {', '.join(FORMATS)}")]
        )
    check_columns(path, table.column_names)
    # Strings become categoricals in Arrow: the validator then works on a few hundred names.
    frame = table.to_pandas(strings_to_categorical=True)
    # Row i's line: the i-th line from ``first_line`` that the parser did not skip (no
    # multi-line quoted fields in telemetry exports).
    skipped = np.asarray([u.line for u in unparsed], dtype=np.int64)
    every = np.arange(first_line, first_line + len(frame) + len(skipped), dtype=np.int64)
    lines = every[~np.isin(every, skipped)][: len(frame)]
    frame["_line"] = lines
    return RawFile(frame, tuple(unparsed))


def read_parquet(path: Path) -> pa.Table:
    """A Parquet file, or an input error naming it (not a traceback)."""
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise InputError([_diag(path, "records.parse", _arrow_message(exc))]) from exc


def check_columns(path: Path | str, names: Sequence[str]) -> None:
    """A file without a required column cannot be read: an input error, exit 2."""
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise InputError(
            [
                _diag(
                    path,
                    "records.columns",
                    f"missing columns: {', '.join(missing)} (a records file needs a header "
                    f"with {', '.join(REQUIRED_COLUMNS)}; see docs/factors.md)",
                )
            ]
        )


def _arrow_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if "Empty CSV file" in first or "empty" in first.lower():
        return "empty file: no header and no records (a records file needs a header row)"
    return f"cannot read: {first}"


_UNDECODABLE = "\x00undecodable"


def _decode(v: bytes) -> str:
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return _UNDECODABLE


def digest_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def load(
    paths: Sequence[Path],
    now: datetime,
    device_specs: Mapping[str, specs.DeviceSpec] = specs.SPECS,
    extra_models: Iterable[str] = (),
) -> Records:
    """Read and validate record files; the only function here that touches the disk."""
    raws = [read_file(p) for p in paths]
    for i, raw in enumerate(raws):
        raw.frame["_file"] = np.int32(i)
    frames = [_with_str_categories(r.frame) for r in raws]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    for c in (*CATEGORICAL, "throughput_unit"):
        if c in frame.columns and not isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype("category")
    recs = validate(
        frame,
        now,
        device_specs,
        digest=digest_files(paths),
        extra_models=extra_models,
        files=[str(p) for p in paths],
    )
    unparsed = tuple(u for r in raws for u in r.unparsed)
    if not unparsed:
        return recs
    ragged = RejectReport(
        total=len(unparsed),
        accepted=0,
        by_reason={RejectReason.RAGGED_ROW: len(unparsed)},
        examples=unparsed[:MAX_EXAMPLES],
    )
    return Records(recs.frame, recs.report.merge(ragged), recs.digest)


def _with_str_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories of bytes (CSV) decoded up front when several files are concatenated, so
    pandas can unify them; undecodable values keep a sentinel the validator rejects."""
    for c in (*CATEGORICAL, "throughput_unit"):
        if c in frame.columns:
            cat, _ = _text_category(frame[c])
            frame[c] = cat
    return frame


def _diag(path: Path | str, code: str, message: str) -> diagnostics.Diagnostic:
    return diagnostics.Diagnostic(str(path), 1, 1, code, message)  # the header / file start


# ----------------------------------------------------------------------------- validation


def validate(
    frame: pd.DataFrame,
    now: datetime,
    device_specs: Mapping[str, specs.DeviceSpec] = specs.SPECS,
    classes: Iterable[str] = specs.CLASS_NAMES,
    digest: str = "",
    extra_models: Iterable[str] = (),
    files: Sequence[str] = (),
) -> Records:
    """Keep good rows, count bad ones by reason. Pure: ``now`` is passed, not read.

    Rows are located by the ``_line`` and ``_file`` (an index into ``files``) columns that
    :func:`read_file` adds; without them, by 1-based row number in the frame.

    ``extra_models`` are device models known from the published table but without specs:
    their rows are kept (no vendor check is possible) and learned without a prior.

    String columns are checked on their categories, not row by row: a million rows carry a
    few hundred distinct names, which keeps validation well under a second.
    """
    n = len(frame)
    reasons = list(RejectReason)
    reason = np.full(n, -1, dtype=np.int8)  # index into ``reasons``, -1 = good

    def mark(mask: np.ndarray, r: RejectReason) -> None:
        reason[(reason < 0) & mask] = reasons.index(r)

    undecodable = np.zeros(n, dtype=bool)
    cats: dict[str, pd.Series] = {}
    for c in CATEGORICAL:
        cats[c], bad = _text_category(frame[c])
        undecodable |= bad
    raw_ts = frame["timestamp"]
    if isinstance(raw_ts.dtype, pd.CategoricalDtype):  # CSV text: parse each distinct value once
        ts_cat, bad = _text_category(raw_ts)
        undecodable |= bad
        parsed = _to_utc(pd.Series(list(ts_cat.cat.categories), dtype=object))
        codes = ts_cat.cat.codes.to_numpy()
        ts = pd.Series(
            parsed.to_numpy()[codes] if len(parsed) else np.full(n, np.datetime64("NaT", "ns")),
            index=frame.index,
        )
        ts = ts.where(codes >= 0)
        ts = _to_utc(ts) if not isinstance(ts.dtype, pd.DatetimeTZDtype) else ts
    else:
        ts = _to_utc(raw_ts)
    mark(undecodable, RejectReason.BAD_ENCODING)
    missing = ts.isna().to_numpy() & frame["timestamp"].isna().to_numpy()
    for c in CATEGORICAL:
        codes = cats[c].cat.codes.to_numpy()
        empty = np.asarray([str(v).strip() == "" for v in cats[c].cat.categories], dtype=bool)
        missing = missing | (codes < 0) | (empty[codes] & (codes >= 0))
    mark(missing, RejectReason.MISSING_FIELD)

    mark(ts.isna().to_numpy(), RejectReason.BAD_TIMESTAMP)
    now_ts = pd.Timestamp(now).tz_convert("UTC") if now.tzinfo else pd.Timestamp(now, tz="UTC")
    mark((ts > now_ts).fillna(False).to_numpy(dtype=bool), RejectReason.FUTURE_TIMESTAMP)

    tput = _numbers(frame["throughput"])
    batch = _numbers(frame["batch_size"])
    p50 = _numbers(frame["latency_p50_ms"])
    p99 = _numbers(frame["latency_p99_ms"])
    with np.errstate(invalid="ignore"):
        mark(~(np.isfinite(tput) & (tput > 0)), RejectReason.BAD_THROUGHPUT)
        mark(~(np.isfinite(batch) & (batch >= 1)), RejectReason.BAD_BATCH)
        mark(~((p50 >= 0) & (p99 >= p50)), RejectReason.BAD_LATENCY)

    dev_cats = [str(v) for v in cats["device_model"].cat.categories]
    dev_codes = cats["device_model"].cat.codes.to_numpy()
    extra = set(extra_models)
    known = np.asarray([v in device_specs or v in extra for v in dev_cats] + [False], dtype=bool)[
        dev_codes
    ]
    mark(~known, RejectReason.UNKNOWN_DEVICE)
    vendor_cats = [str(v).strip().lower() for v in cats["vendor"].cat.categories]
    expected = [device_specs[v].vendor if v in device_specs else None for v in dev_cats]
    table = np.asarray(
        [[e == v for v in [*vendor_cats, None]] for e in [*expected, None]], dtype=bool
    )
    matches = table[dev_codes, cats["vendor"].cat.codes.to_numpy()]
    has_spec = np.asarray([v in device_specs for v in dev_cats] + [False], dtype=bool)[dev_codes]
    mark(has_spec & ~matches, RejectReason.VENDOR_MISMATCH)
    allowed = set(classes)
    class_ok = np.asarray(
        [str(v) in allowed for v in cats["workload_class"].cat.categories] + [False], dtype=bool
    )
    mark(
        ~class_ok[cats["workload_class"].cat.codes.to_numpy()], RejectReason.UNKNOWN_WORKLOAD_CLASS
    )

    good = reason < 0
    counts = np.bincount(reason[~good].astype(np.int64), minlength=len(reasons))
    report = RejectReport(
        total=n,
        accepted=int(good.sum()),
        by_reason={r: int(counts[i]) for i, r in enumerate(reasons)},
        examples=_examples(frame, reason, reasons, files),
    )
    if "throughput_unit" in frame.columns:
        unit, _ = _text_category(frame["throughput_unit"])
        if unit.isna().any():
            unit = unit.cat.add_categories([OPTIONAL_COLUMNS["throughput_unit"]]).fillna(
                OPTIONAL_COLUMNS["throughput_unit"]
            )
    else:
        unit = pd.Series(
            pd.Categorical.from_codes(np.zeros(n, np.int8), [OPTIONAL_COLUMNS["throughput_unit"]])
        )
    idx = np.flatnonzero(good)
    out = pd.DataFrame(
        {
            "timestamp": ts.iloc[idx].reset_index(drop=True),
            **{
                c: _compact(cats[c].cat.codes.to_numpy()[idx], cats[c].cat.categories)
                for c in CATEGORICAL
            },
            "batch_size": batch[idx],
            "throughput": tput[idx],
            "throughput_unit": pd.Categorical.from_codes(
                unit.cat.codes.to_numpy()[idx], unit.cat.categories
            ),
            "latency_p50_ms": p50[idx],
            "latency_p99_ms": p99[idx],
        }
    )
    if "_line" in frame.columns:  # where each kept row is, for duplicate reports
        out["_line"] = frame["_line"].to_numpy()[idx]
    out["log_tput"] = np.log(out["throughput"].to_numpy())
    out["log_batch"] = np.log(out["batch_size"].to_numpy())
    ns = out["timestamp"].dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    out["hour"] = ns // 3_600_000_000_000
    return Records(frame=out, report=report, digest=digest)


def _examples(
    frame: pd.DataFrame, reason: np.ndarray, reasons: Sequence[RejectReason], files: Sequence[str]
) -> tuple[RowProblem, ...]:
    """The first :data:`MAX_EXAMPLES` rejected rows per reason, with file and line."""
    out: list[RowProblem] = []
    lines = frame["_line"].to_numpy() if "_line" in frame.columns else None
    file_idx = frame["_file"].to_numpy() if "_file" in frame.columns else None
    for i, r in enumerate(reasons):
        for row in np.flatnonzero(reason == i)[:MAX_EXAMPLES]:
            line = int(lines[row]) if lines is not None else int(row) + 1
            f = int(file_idx[row]) if file_idx is not None else 0
            name = files[f] if f < len(files) else "records"
            out.append(RowProblem(name, line, r))
    return tuple(out)


def _text_category(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """A categorical of str, and which rows held text that is not UTF-8 (as missing)."""
    cat = _as_category(s)
    values = list(cat.cat.categories)
    if not any(isinstance(v, bytes) for v in values):  # text already (maybe decoded by load)
        flagged = [isinstance(v, str) and v.startswith(_UNDECODABLE) for v in values]
        if not any(flagged):
            return cat, np.zeros(len(s), dtype=bool)
        return cat, np.asarray([*flagged, False], dtype=bool)[cat.cat.codes.to_numpy()]
    decoded: list[str] = []
    bad = np.zeros(len(values) + 1, dtype=bool)
    for i, v in enumerate(values):
        text = _decode(v) if isinstance(v, bytes) else str(v)
        if text == _UNDECODABLE:
            bad[i] = True
            text = f"{_UNDECODABLE}{i}"
        decoded.append(text)
    codes = cat.cat.codes.to_numpy()
    # distinct bytes decode to distinct text, so the categories stay unique
    out = pd.Series(pd.Categorical.from_codes(codes, decoded), index=s.index)
    return out, bad[codes]


def _compact(codes: np.ndarray, categories: pd.Index) -> pd.Categorical:
    """A categorical without unused categories, in O(n) (``remove_unused_categories``
    sorts, which costs half a second on a million rows)."""
    if len(codes) == 0:
        return pd.Categorical.from_codes(codes, categories[:0])
    used = np.bincount(codes, minlength=len(categories)) > 0
    remap = (np.cumsum(used) - 1).astype(codes.dtype)
    return pd.Categorical.from_codes(remap[codes], categories[used])


def _as_category(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s
    return s.astype("category")


def _numbers(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s):
        return np.asarray(s.to_numpy(dtype=float, na_value=np.nan), dtype=float)
    return np.asarray(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan))


def _to_utc(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.tz_localize("UTC")
    return pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")


# ------------------------------------------------------------------------------- identity

_GOLDEN = 0x9E3779B97F4A7C15


def _fmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, on a uint64 array (wraps modulo 2**64, no warnings)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return np.asarray(x ^ (x >> np.uint64(31)))


def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _column_bits(values: pd.Series | np.ndarray, lower: bool = False) -> np.ndarray:
    """A column as uint64 words: text by a hash of its stripped value (computed once per
    category), numbers by their float64 bits (-0.0 as 0.0), timestamps as UTC ns."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        cats = [str(v).strip() for v in values.cat.categories]
        table = np.asarray(
            [_text_hash(c.lower() if lower else c) for c in cats] + [0], dtype=np.uint64
        )
        return np.asarray(table[values.cat.codes.to_numpy()])
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        ns = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
        return np.asarray(ns.astype(np.int64).view(np.uint64))
    arr = np.asarray(values, dtype=np.float64) + 0.0
    return np.asarray(arr.view(np.uint64))


IDENTITY_COLUMNS = (
    "timestamp",
    *CATEGORICAL,
    "batch_size",
    "throughput",
    "throughput_unit",
    "latency_p50_ms",
    "latency_p99_ms",
)
"""What a record is: every field, normalised (parsed values, not the bytes that carried
them), so a copy re-encoded (gzip, CRLF, quoting, 1.50 for 1.5, +00:00 for Z) or split
into other files is the same record."""


def identity(frame: pd.DataFrame) -> np.ndarray:
    """One 64-bit identity per validated record (:func:`validate`'s output), from its
    normalised content. Pure and vectorised: text is hashed once per category.

    64 bits: among 10**8 distinct records the chance that any two collide is about 3e-4,
    and a collision only drops one record as a duplicate.
    """
    h = np.full(len(frame), np.uint64(0x243F6A8885A308D3), dtype=np.uint64)
    for i, col in enumerate(IDENTITY_COLUMNS):
        bits = _column_bits(frame[col], lower=col == "vendor")
        salt = np.uint64(((i + 1) * _GOLDEN) % 2**64)  # one per column, computed exactly
        h = _fmix(h ^ _fmix(bits + salt))
    return h


__all__ = [
    "FORMATS",
    "IDENTITY_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "RawFile",
    "Records",
    "RejectReason",
    "RejectReport",
    "RowProblem",
    "check_columns",
    "digest_files",
    "format_of",
    "identity",
    "load",
    "read_file",
    "read_frame",
    "read_parquet",
    "validate",
]

"""Learn from any number of records in bounded memory: the cell aggregation, streamed.

The fit only needs sufficient statistics (:class:`reconciler.learn.fit.Cells`), so records
are read a batch at a time, validated, and folded into partial aggregates that add up:

1. **Pass 1** (per fragment): the reject report, a histogram of log throughput per screen
   group (device × class × served model × unit × batch size), and record counts per
   (device, class, hour). Groups' medians and MADs come from the histograms (bin width
   :data:`BIN` in log units, far below the noise), which gives the outlier screen without
   holding the records.
2. **Pass 2** (per fragment): screened records summed per (node, device, class, served
   key, batch size, hour) — a number bounded by the fleet and the window, not by the
   records — plus the few records of *sparse* series (too few hourly bins for the CUSUM,
   known from pass 1), which the record-level change point needs one by one.

Then everything :func:`reconciler.learn.adapter.learn` does runs on the aggregates: the
fit, node effects and slow nodes, hourly residual series (bin means of screened records),
the drift checks, the refit split at a change, priors, the update rule.

A *fragment* is one file or one file of a partitioned Parquet dataset (``pyarrow.dataset``,
hive partitions allowed). Partials are combined in fragment order, so the in-process engine
and the Dask engine (:mod:`reconciler.learn.distributed`) add the same numbers in the same
order and give identical results. Heavy imports stay inside functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reconciler.errors import InputError
from reconciler.learn import adapter, drift, fit, records, specs, update
from reconciler.model import diagnostics
from reconciler.model import documents as docs

BIN = 0.004
"""Histogram bin width in log throughput (0.4%, a few % of the noise MAD): the screen's
median and MAD are exact to it."""
LOW, HIGH = -6.0, 16.0  # log throughput range of the histograms (beyond: the end bins)
NBINS = int((HIGH - LOW) / BIN)
BATCH_ROWS = 1_000_000
"""Rows per batch read from a Parquet fragment: the unit of memory."""

GroupKey = tuple[str, str, str, str, float]  # device, class, served model, unit, log batch
SeriesKey = tuple[str, specs.WorkloadClass]

CELL_KEYS = ["node", "device_model", "workload_class", "served_model", "throughput_unit"]
SUMS = ["n", "sum", "lat", "step"]
"""Per cell: records, Σ log throughput, Σ p99 latency (ms), Σ batch / throughput (the step
time the latency curve of :mod:`reconciler.learn.slo` is fitted to)."""


@dataclass(frozen=True, slots=True)
class Fragment:
    """One unit of work: a CSV/Parquet file (``path``) read by itself; ``index`` is its
    place in the run (the same file named twice is two fragments, its records duplicates)."""

    path: str
    label: str  # how rows are located in messages
    index: int = 0

    @property
    def parquet(self) -> bool:
        return records.format_of(Path(self.path)) == "parquet"


def fragments(paths: Sequence[Path], skipped: list[str] | None = None) -> list[Fragment]:
    """Files as given; a directory is a (possibly hive-partitioned) dataset of its files.

    A file is read the same way named directly or found in a directory: every format in
    :data:`records.FORMATS` (``.csv.gz`` included). Other files in a directory are not
    records (a README, a ``_SUCCESS`` marker): they are listed in ``skipped``. A path that
    does not exist, or a directory without one record file, is an input error.
    """
    found: list[str] = []
    problems: list[diagnostics.Diagnostic] = []
    for p in paths:
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file())
            records_here = [q for q in files if records.format_of(q) is not None]
            if skipped is not None:
                skipped += [str(q) for q in files if records.format_of(q) is None]
            if not records_here:
                problems.append(
                    diagnostics.Diagnostic(
                        str(p),
                        1,
                        1,
                        "records.none",
                        "no record files in this directory (formats: "
                        f"{', '.join(records.FORMATS)})",
                    )
                )
            found += [str(q) for q in records_here]
        elif p.is_file():
            found.append(str(p))
        else:
            problems.append(diagnostics.Diagnostic(str(p), 1, 1, "records.missing", "no such file"))
    if problems:
        raise InputError(problems)
    if not found:
        where = ", ".join(map(str, paths)) or "--records"
        raise InputError([diagnostics.Diagnostic(where, 1, 1, "records.none", "no record files")])
    return [Fragment(f, f, i) for i, f in enumerate(found)]


def _batches(frag: Fragment) -> Iterator[tuple[pd.DataFrame, tuple[records.RowProblem, ...]]]:
    """A fragment's rows, a batch at a time, with ``_line`` (CSV line or Parquet row)."""
    if not frag.parquet:
        raw = records.read_file(Path(frag.path))
        yield raw.frame, raw.unparsed
        return
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(frag.path, format="parquet", partitioning="hive")
        records.check_columns(frag.label, dataset.schema.names)
        row = 1
        for batch in dataset.to_batches(batch_size=BATCH_ROWS):
            frame = batch.to_pandas(strings_to_categorical=True)
            frame["_line"] = np.arange(row, row + len(frame), dtype=np.int64)
            row += len(frame)
            yield frame, ()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            [diagnostics.Diagnostic(frag.label, 1, 1, "records.parse", f"cannot read: {msg}")]
        ) from exc


def _validated(
    frag: Fragment, now: datetime, extra_models: Sequence[str]
) -> Iterator[records.Records]:
    for frame, unparsed in _batches(frag):
        recs = records.validate(frame, now, extra_models=extra_models, files=[frag.label])
        if unparsed:
            ragged = records.RejectReport(
                len(unparsed),
                0,
                {records.RejectReason.RAGGED_ROW: len(unparsed)},
                unparsed[: records.MAX_EXAMPLES],
            )
            recs = records.Records(recs.frame, recs.report.merge(ragged), recs.digest)
        yield recs


GROUP_COLUMNS = ["device_model", "workload_class", "served_model", "throughput_unit", "log_batch"]


def _groups(frame: pd.DataFrame) -> tuple[np.ndarray, list[GroupKey]]:
    """Each row's screen group id and the groups' keys (by categorical codes: no per-row
    Python work, which would dominate at a hundred million rows)."""
    gid = frame.groupby(GROUP_COLUMNS, sort=True, observed=True).ngroup().to_numpy()
    first = np.unique(gid, return_index=True)[1]
    head = frame.iloc[first]
    keys = [
        (str(a), str(b), str(c), str(d), float(e))
        for a, b, c, d, e in zip(*(head[col] for col in GROUP_COLUMNS), strict=True)
    ]
    return gid, keys


# ------------------------------------------------------------------------------ pass 1


@dataclass(slots=True)
class Pass1:
    """Additive: reject report, per-group histograms, per-(device, class, hour) counts;
    and, per batch read, the sorted distinct identities of its valid records (``ids``,
    taken out by :func:`aggregate` to find records repeated across batches and files)."""

    report: records.RejectReport = field(default_factory=lambda: records.RejectReport(0, 0))
    hist: dict[GroupKey, np.ndarray] = field(default_factory=dict)
    hours: dict[tuple[str, str, int], int] = field(default_factory=dict)
    ids: list[np.ndarray] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)  # batches with a record twice inside

    def add(self, other: Pass1, sign: int = 1) -> None:
        """Fold ``other`` in (``sign=-1``: take out rows found to be duplicates later;
        their report is already a delta)."""
        self.report = self.report.merge(other.report)
        for k, h in other.hist.items():
            mine = self.hist.get(k)
            self.hist[k] = sign * h if mine is None else mine + sign * h
        for hk, n in other.hours.items():
            self.hours[hk] = self.hours.get(hk, 0) + sign * n
        self.ids += other.ids
        self.repeated += other.repeated


def _counts(f: pd.DataFrame, report: records.RejectReport) -> Pass1:
    part = Pass1(report=report)
    if len(f):
        gid, keys = _groups(f)
        bins = np.clip(((f["log_tput"].to_numpy() - LOW) / BIN).astype(np.int64), 0, NBINS - 1)
        flat = np.bincount(gid * NBINS + bins, minlength=len(keys) * NBINS)
        hist = flat.reshape(len(keys), NBINS).astype(np.int64)
        part.hist = {key: hist[i] for i, key in enumerate(keys)}
        counts = f.groupby(["device_model", "workload_class", "hour"], observed=True).size()
        part.hours = {(str(d), str(c), int(h)): int(n) for (d, c, h), n in counts.items()}
    return part


Drops = Mapping[int, Mapping[int, tuple[np.ndarray, np.ndarray]]]
"""fragment index → batch number → (sorted identities seen in an earlier batch or file,
the index of the fragment that held each first)."""


@dataclass(frozen=True, slots=True)
class _Batch:
    """One validated batch with its records' identities and which ones it uses."""

    recs: records.Records
    ids: np.ndarray
    first: np.ndarray  # the first copy of its identity within this batch
    earlier: np.ndarray  # a copy of a record an earlier batch or file already holds
    earlier_from: np.ndarray  # for those: the fragment index of the first copy
    distinct: np.ndarray  # the batch's distinct identities, sorted

    @property
    def keep(self) -> np.ndarray:
        return np.asarray(self.first & ~self.earlier)


def _identified(
    frag: Fragment,
    now: datetime,
    extra_models: Sequence[str],
    drops: Drops | None = None,
    repeated: frozenset[tuple[int, int]] | None = None,
) -> Iterator[_Batch]:
    """Validated batches, each record identified by its content (:func:`records.identity`).

    With ``repeated`` (pass 2), only batches known from pass 1 to hold a repeat (inside
    the batch, or of an earlier one) are hashed again; every other record is used as is.
    """
    mine = (drops or {}).get(frag.index, {})
    for number, recs in enumerate(_validated(frag, now, extra_models)):
        if repeated is not None and number not in mine and (frag.index, number) not in repeated:
            n = len(recs.frame)
            none = np.zeros(n, dtype=bool)
            yield _Batch(
                recs,
                np.zeros(n, np.uint64),
                ~none,
                none,
                np.full(n, -1, np.int64),
                np.zeros(0, np.uint64),
            )
            continue
        ids = records.identity(recs.frame)
        # Sort-based (np.unique hashes uint64 several times slower): the first copy of each
        # identity in reading order is the one a stable sort puts first.
        order = np.argsort(ids, kind="stable")
        ranked = ids[order]
        new = np.ones(len(ranked), dtype=bool)
        new[1:] = ranked[1:] != ranked[:-1]
        first = np.zeros(len(ids), dtype=bool)
        first[order[new]] = True
        earlier = np.zeros(len(ids), dtype=bool)
        earlier_from = np.full(len(ids), -1, dtype=np.int64)
        if number in mine:
            seen, owner = mine[number]
            pos = np.clip(np.searchsorted(seen, ids), 0, max(len(seen) - 1, 0))
            if len(seen):
                earlier = seen[pos] == ids
                earlier_from = np.where(earlier, owner[pos], -1)
        yield _Batch(recs, ids, first, earlier, earlier_from, ranked[new])


def _duplicate_report(
    frag: Fragment, b: _Batch, rows: np.ndarray, labels: Sequence[str] = ()
) -> records.RejectReport:
    """The rows ``rows`` (a mask) as duplicates: a delta that moves them from used to
    ``duplicate``, the first ones located with where the record was first seen."""
    n = int(rows.sum())
    if not n:
        return records.RejectReport(0, 0)
    lines = (
        b.recs.frame["_line"].to_numpy()
        if "_line" in b.recs.frame.columns
        else np.arange(1, len(rows) + 1)
    )
    first_line = {}
    if labels == ():
        order = np.flatnonzero(b.first)
        first_line = dict(zip(b.ids[order].tolist(), lines[order].tolist(), strict=True))
    examples = []
    for i in np.flatnonzero(rows)[: records.MAX_EXAMPLES]:
        if labels:
            where = f"first seen in {labels[int(b.earlier_from[i])]}"
        else:
            where = f"same record as line {first_line[int(b.ids[i])]}"
        examples.append(
            records.RowProblem(frag.label, int(lines[i]), records.RejectReason.DUPLICATE, where)
        )
    return records.RejectReport(0, -n, {records.RejectReason.DUPLICATE: n}, tuple(examples))


def pass1(frag: Fragment, now: datetime, extra_models: Sequence[str]) -> Pass1:
    """Counts of the batch's distinct records; a record repeated inside one batch counts
    once (the repeats are reported as duplicates)."""
    out = Pass1()
    for number, b in enumerate(_identified(frag, now, extra_models)):
        report = b.recs.report.merge(_duplicate_report(frag, b, ~b.first))
        part = _counts(b.recs.frame if b.first.all() else b.recs.frame[b.first], report)
        part.ids = [b.distinct]
        part.repeated = [] if b.first.all() else [number]
        out.add(part)
    return out


def pass1_repeats(
    frag: Fragment, now: datetime, extra_models: Sequence[str], drops: Drops, labels: Sequence[str]
) -> Pass1:
    """What :func:`pass1` counted for records an earlier batch or file already holds: to be
    taken out of the totals (read again only for fragments that have such records)."""
    out = Pass1()
    for b in _identified(frag, now, extra_models, drops):
        rows = b.first & b.earlier
        out.add(_counts(b.recs.frame[rows], _duplicate_report(frag, b, rows, labels)))
    return out


@dataclass(frozen=True, slots=True)
class Screen:
    """Per screen group: median and robust scale (1.4826·MAD), from the histograms."""

    center: Mapping[GroupKey, float]
    scale: Mapping[GroupKey, float]

    @staticmethod
    def from_histograms(hist: Mapping[GroupKey, np.ndarray]) -> Screen:
        mids = LOW + (np.arange(NBINS) + 0.5) * BIN
        center: dict[GroupKey, float] = {}
        scale: dict[GroupKey, float] = {}
        for k, h in hist.items():
            med = _weighted_median(mids, h)
            mad = _weighted_median(np.abs(mids - med), h)
            center[k] = med
            scale[k] = max(1.4826 * mad, 1e-6, BIN)
        return Screen(center, scale)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cw = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cw, cw[-1] / 2.0)])


# ------------------------------------------------------------------------------ pass 2


@dataclass(slots=True)
class Pass2:
    """Additive: screened cells with their hour, the sparse series' records, the count of
    rows the screen dropped."""

    cells: pd.DataFrame | None = None
    sparse: list[pd.DataFrame] = field(default_factory=list)
    screened: int = 0

    def add(self, other: Pass2) -> None:
        self.screened += other.screened
        self.sparse += other.sparse
        if other.cells is None:
            return
        if self.cells is None:
            self.cells = other.cells
            return
        both = _concat([self.cells, other.cells])
        keys = [*CELL_KEYS, "log_batch", "hour"]
        self.cells = both.groupby(keys, sort=True, observed=True)[SUMS].sum().reset_index()


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, unifying the key columns' categories (sorted, so the result does not
    depend on which batch saw a name first)."""
    from pandas.api.types import union_categoricals

    parts = [f.copy() for f in frames]
    for c in CELL_KEYS:
        if c in parts[0].columns:
            cats = sorted(
                set(union_categoricals([p[c] for p in parts], ignore_order=True).categories)
            )
            for p in parts:
                p[c] = p[c].cat.set_categories(cats)
    return pd.concat(parts, ignore_index=True)


def pass2(
    frag: Fragment,
    now: datetime,
    extra_models: Sequence[str],
    screen: Screen,
    sparse_series: frozenset[tuple[str, str]],
    drops: Drops | None = None,
    repeated: frozenset[tuple[int, int]] | None = None,
) -> Pass2:
    out = Pass2()
    for b in _identified(frag, now, extra_models, drops, repeated):
        once = b.keep  # each record once: the first copy in the run
        f = b.recs.frame if once.all() else b.recs.frame[once]
        if not len(f):
            continue
        gid, keys = _groups(f)
        center = np.asarray([screen.center[k] for k in keys])[gid]
        scale = np.asarray([screen.scale[k] for k in keys])[gid]
        y = f["log_tput"].to_numpy()
        keep = np.abs(y - center) <= fit.SCREEN_MADS * scale
        part = Pass2(screened=int((~keep).sum()))
        kept = f.loc[keep, [*CELL_KEYS, "log_batch", "hour"]].assign(
            n=1,
            sum=y[keep],
            lat=f["latency_p99_ms"].to_numpy()[keep],
            step=(f["batch_size"].to_numpy() / f["throughput"].to_numpy())[keep],
        )
        cells = kept.groupby([*CELL_KEYS, "log_batch", "hour"], sort=True, observed=True)[
            SUMS
        ].sum()
        part.cells = _as_text(cells.reset_index())
        if sparse_series:
            is_sparse = np.asarray([(k[0], k[1]) in sparse_series for k in keys] + [False])[gid]
            sel = keep & is_sparse
            if sel.any():
                rows = _as_text(f.loc[sel, [*CELL_KEYS, "log_batch", "hour", "timestamp"]])
                part.sparse = [rows.assign(y=y[sel]).reset_index(drop=True)]
        out.add(part)
    return out


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Key columns as categoricals of plain str, so partials from different batches (with
    different dictionaries) combine."""
    out = frame.copy()
    for c in CELL_KEYS:
        out[c] = pd.Categorical(out[c].astype(str))
    return out


# ------------------------------------------------------------------------------ engine

Mapper = Callable[[Callable[..., Any], Sequence[Fragment], tuple[Any, ...]], Iterable[Any]]
"""Runs ``fn(fragment, *args)`` for every fragment and yields results in fragment order."""


def local_map(
    fn: Callable[..., Any], frags: Sequence[Fragment], args: tuple[Any, ...]
) -> Iterator[Any]:
    for frag in frags:
        yield fn(frag, *args)


@dataclass(frozen=True, slots=True)
class Aggregates:
    """Everything the learner needs from the records, independent of their number."""

    report: records.RejectReport
    screen: Screen
    cells: pd.DataFrame  # CELL_KEYS, log_batch, hour, SUMS
    sparse: pd.DataFrame  # one row per screened record of a sparse series
    screened: int
    revision: str = ""  # the evidence's identity: :func:`content_digest` of its records
    distinct: int = 0  # distinct valid records (duplicates counted once)


def aggregate(
    frags: Sequence[Fragment],
    now: datetime,
    extra_models: Sequence[str] = (),
    *,
    mapper: Mapper = local_map,
    config: drift.DriftConfig = drift.DriftConfig(),
) -> Aggregates:
    """The two passes over ``frags``; ``mapper`` decides where fragments are processed."""
    extra = tuple(sorted(extra_models))
    first = Pass1()
    chunks: list[tuple[int, int, np.ndarray]] = []
    inside: set[tuple[int, int]] = set()
    for frag, part in zip(frags, mapper(pass1, frags, (now, extra)), strict=True):
        chunks += [(frag.index, i, ids) for i, ids in enumerate(part.ids)]
        inside |= {(frag.index, i) for i in part.repeated}
        part.ids, part.repeated = [], []
        first.add(part)
    drops, revision, distinct = repeats(chunks)
    del chunks
    if drops:  # records already held by an earlier batch or file: count them once
        again = [f for f in frags if f.index in drops]
        labels = tuple(f.label for f in frags)
        for part in mapper(pass1_repeats, again, (now, extra, drops, labels)):
            first.add(part, sign=-1)
    screen = Screen.from_histograms(first.hist)
    sparse = frozenset(_sparse_series(first.hours, config))
    second = Pass2()
    repeated = frozenset(inside)
    for part2 in mapper(pass2, frags, (now, extra, screen, sparse, drops, repeated)):
        second.add(part2)
    cells = second.cells
    if cells is None:
        cells = pd.DataFrame(columns=[*CELL_KEYS, "log_batch", "hour", *SUMS])
    sparse_rows = (
        _concat(second.sparse)
        if second.sparse
        else pd.DataFrame(columns=[*CELL_KEYS, "log_batch", "hour", "y", "timestamp"])
    )
    return Aggregates(first.report, screen, cells, sparse_rows, second.screened, revision, distinct)


_BUCKETS = 256


def repeats(
    chunks: Sequence[tuple[int, int, np.ndarray]],
) -> tuple[dict[int, dict[int, tuple[np.ndarray, np.ndarray]]], str, int]:
    """Records held by more than one batch (``(fragment, batch, sorted distinct ids)``, in
    reading order): for each later batch the identities to drop and where each was first
    seen; the content digest of the distinct records; their number.

    Memory: the identities themselves (8 bytes per distinct record per batch) plus one of
    256 hash ranges at a time, merged by a stable sort (the first copy in reading order
    is the one used).
    """
    digest = hashlib.sha256()
    distinct = 0
    found: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    edges = [
        np.searchsorted(ids, np.arange(_BUCKETS, dtype=np.uint64) << np.uint64(56))
        for _, _, ids in chunks
    ]
    for b in range(_BUCKETS):
        parts = []
        for (_, _, ids), e in zip(chunks, edges, strict=True):
            hi = e[b + 1] if b + 1 < _BUCKETS else len(ids)
            parts.append(ids[e[b] : hi])
        sizes = [len(x) for x in parts]
        if not sum(sizes):
            continue
        values = np.concatenate(parts)
        owner = np.repeat(np.arange(len(chunks)), sizes)
        order = np.argsort(values, kind="stable")
        values, owner = values[order], owner[order]
        again = np.concatenate([[False], values[1:] == values[:-1]])
        unique = values[~again]
        distinct += len(unique)
        digest.update(unique.astype("<u8").tobytes())
        if again.any():
            run_first = owner[~again][np.cumsum(~again) - 1]
            for c in np.unique(owner[again]):
                sel = again & (owner == c)
                first_frag = np.asarray([chunks[int(k)][0] for k in run_first[sel]], dtype=np.int64)
                found.setdefault(int(c), []).append((values[sel], first_frag))
    drops: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for c, lists in found.items():
        frag, batch, _ = chunks[c]
        drops.setdefault(frag, {})[batch] = (
            np.concatenate([v for v, _ in lists]),
            np.concatenate([o for _, o in lists]),
        )
    return drops, "sha256:" + digest.hexdigest(), distinct


def _sparse_series(
    hours: Mapping[tuple[str, str, int], int], config: drift.DriftConfig
) -> set[tuple[str, str]]:
    """Series whose hourly bins (of ``min_records`` records, as :func:`drift.hourly` bins
    them) would be fewer than ``min_hours``: they get the record-level test."""
    per: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for (d, c, h), n in hours.items():
        per.setdefault((d, c), []).append((h, n))
    out: set[tuple[str, str]] = set()
    for key, rows in per.items():
        bins = _bin_hours(sorted(rows), 20)
        total = sum(n for _, n in rows)
        if len(bins) < config.min_hours and total <= config.max_records:
            out.add(key)
    return out


def _bin_hours(rows: Sequence[tuple[int, int]], min_records: int) -> list[list[int]]:
    """Consecutive hours grouped until each group holds ``min_records`` records; a trailing
    remainder joins the last group (the rule of :func:`drift.hourly`)."""
    bins: list[list[int]] = []
    cur: list[int] = []
    acc = 0
    for h, n in rows:
        cur.append(h)
        acc += n
        if acc >= min_records:
            bins.append(cur)
            cur, acc = [], 0
    if cur:
        if bins:
            bins[-1] += cur
        else:
            bins.append(cur)
    return bins


# ------------------------------------------------------------------------------ learning


def _cells(
    agg: pd.DataFrame,
    segments: Mapping[SeriesKey, int],
    exclude: Sequence[str],
    devices: Sequence[str],
    classes: Sequence[str],
) -> fit.Cells:
    frame = agg
    if exclude:
        frame = frame[~frame["node"].isin(list(exclude))]
    seg = np.zeros(len(frame), dtype=np.int64)
    for (dm, cls), start in segments.items():
        sel = (
            (frame["device_model"].to_numpy() == dm)
            & (frame["workload_class"].to_numpy() == cls.value)
            & (frame["hour"].to_numpy() < start)
        )
        seg[sel] = 1
    frame = frame.assign(seg=seg)
    keys = [*CELL_KEYS, "log_batch", "seg"]
    grouped = frame.groupby(keys, sort=True, as_index=False)[["n", "sum"]].sum()
    served = pd.MultiIndex.from_frame(
        grouped[["served_model", "workload_class", "throughput_unit"]]
    )
    s_codes, s_labels = pd.factorize(served, sort=True)
    b_codes, b_values = pd.factorize(grouped["log_batch"], sort=True)
    nodes = sorted(set(grouped["node"]))
    return fit.Cells(
        devices=tuple(devices),
        classes=tuple(classes),
        served=tuple((str(a), str(b), str(c)) for a, b, c in s_labels),
        batches=np.asarray(b_values, dtype=float),
        node=pd.Categorical(grouped["node"].astype(str), categories=nodes).codes.astype(np.int64),
        device=pd.Categorical(grouped["device_model"], categories=list(devices)).codes.astype(
            np.int64
        ),
        wclass=pd.Categorical(grouped["workload_class"], categories=list(classes)).codes.astype(
            np.int64
        ),
        served_key=np.asarray(s_codes, dtype=np.int64),
        batch=np.asarray(b_codes, dtype=np.int64),
        segment=grouped["seg"].to_numpy().astype(np.int64),
        count=grouped["n"].to_numpy().astype(float),
        mean=(grouped["sum"] / grouped["n"]).to_numpy(),
    )


def _predict(frame: pd.DataFrame, result: fit.FitResult) -> np.ndarray:
    """Fitted log throughput for rows with the cell key columns (first segment)."""
    served = pd.Series(
        list(result.served_effects.values()),
        index=pd.MultiIndex.from_tuples(list(result.served_effects), names=["s", "c", "u"]),
        dtype=float,
    )
    alpha = served.reindex(
        pd.MultiIndex.from_arrays(
            [
                frame["served_model"].astype(str),
                frame["workload_class"].astype(str),
                frame["throughput_unit"].astype(str),
            ]
        )
    ).to_numpy()
    first = {(d, c): v for (d, c, seg), v in result.device_effects.items() if seg == 0}
    beta = (
        pd.Series(list(first.values()), index=pd.MultiIndex.from_tuples(list(first)), dtype=float)
        .reindex(
            pd.MultiIndex.from_arrays(
                [frame["device_model"].astype(str), frame["workload_class"].astype(str)]
            )
        )
        .to_numpy()
    )
    slope = frame["workload_class"].astype(str).map(result.slopes).to_numpy(dtype=float)
    return np.asarray(alpha + slope * frame["log_batch"].to_numpy(dtype=float) + beta)


def learn(
    aggs: Aggregates,
    table: docs.FactorTable | None,
    policy: docs.FactorPolicy,
    now: datetime,
    *,
    records_revision: str = "",
    drift_config: drift.DriftConfig = drift.DriftConfig(),
    target: update.Target | None = None,
) -> adapter.Outcome:
    """:func:`adapter.learn`'s story on aggregates instead of a frame of records."""
    reference = table.spec.reference_model if table is not None else specs.REFERENCE_MODEL
    cells = aggs.cells
    if not len(cells):
        raise ValueError(f"no usable records for the reference model {reference}")
    devices = sorted(set(cells["device_model"]))
    classes = sorted(set(cells["workload_class"]))
    first = fit.fit_cells(
        _cells(cells, {}, (), devices, classes), reference, screened=aggs.screened
    )

    # Node effects: the count-weighted mean residual of each node's records.
    resid_mean = cells["sum"].to_numpy() / cells["n"].to_numpy() - _predict(cells, first)
    n = cells["n"].to_numpy().astype(float)
    ok = np.isfinite(resid_mean)
    per = pd.DataFrame(
        {
            "node": cells["node"][ok],
            "device_model": cells["device_model"][ok],
            "w": n[ok],
            "wr": n[ok] * resid_mean[ok],
        }
    )
    by_node = per.groupby(["node", "device_model"], sort=True)[["w", "wr"]].sum().reset_index()
    effects = pd.DataFrame(
        {
            "effect": (by_node["wr"] / by_node["w"]).to_numpy(),
            "records": by_node["w"].to_numpy().astype(np.int64),
            "device_model": by_node["device_model"].to_numpy(),
        },
        index=pd.Index(by_node["node"].to_numpy(), name="node"),
    )
    slow = tuple(drift.slow_nodes(effects))
    slow_names = [s.node for s in slow]

    series = _hourly(cells, resid_mean, effects, slow_names, drift_config)
    sparse = _record_series(aggs.sparse, first, effects, slow_names)
    found, coverage = drift.check_all(series, sparse, drift_config, _totals(cells, slow_names))
    alarms = tuple(found)

    def refit(exclude: Sequence[str], changes: Mapping[SeriesKey, int]) -> fit.FitResult:
        return fit.fit_cells(
            _cells(cells, changes, exclude, devices, classes),
            reference,
            segments=changes,
            screened=aggs.screened,
            excluded_nodes=tuple(sorted(exclude)),
        )

    guarded = adapter.guarded_refit(first, refit, slow, alarms)
    return adapter.finish(
        guarded.fit,
        table,
        policy,
        now,
        held_classes=guarded.held_classes,
        nodes=adapter.node_effects(effects),
        slow=slow,
        alarms=alarms,
        series=tuple(series),
        coverage=tuple(coverage),
        report=aggs.report,
        records_revision=records_revision,
        target=target,
    )


def _totals(cells: pd.DataFrame, exclude: Sequence[str]) -> dict[SeriesKey, tuple[int, int]]:
    """(screened records, hourly bins) per series, slow nodes left out, as the in-memory
    path counts them."""
    kept = cells[~cells["node"].isin(list(exclude))]
    per_hour = kept.groupby(["device_model", "workload_class", "hour"], observed=True)["n"].sum()
    out: dict[SeriesKey, tuple[int, int]] = {}
    for (d, c), grp in per_hour.groupby(level=[0, 1], observed=True):
        rows = [(int(h), int(n)) for (_, _, h), n in grp.items()]
        out[(str(d), specs.WorkloadClass(str(c)))] = (
            sum(n for _, n in rows),
            len(_bin_hours(rows, 20)),
        )
    return out


def _hourly(
    cells: pd.DataFrame,
    resid_mean: np.ndarray,
    effects: pd.DataFrame,
    exclude: Sequence[str],
    config: drift.DriftConfig,
) -> list[drift.HourlySeries]:
    """Bin means of (residual − node effect) per (device, class), bins of ≥ 20 records."""
    eff = cells["node"].map(effects["effect"]).fillna(0.0).to_numpy()
    n = cells["n"].to_numpy().astype(float)
    r = resid_mean - eff
    ok = np.isfinite(r) & ~cells["node"].isin(list(exclude)).to_numpy()
    per_hour = (
        pd.DataFrame(
            {
                "d": cells["device_model"][ok],
                "c": cells["workload_class"][ok],
                "h": cells["hour"][ok],
                "w": n[ok],
                "wr": n[ok] * r[ok],
            }
        )
        .groupby(["d", "c", "h"], sort=True)[["w", "wr"]]
        .sum()
        .reset_index()
    )
    out: list[drift.HourlySeries] = []
    for (d, c), grp in per_hour.groupby(["d", "c"], sort=True):
        hours = grp["h"].to_numpy().astype(np.int64)
        w = grp["w"].to_numpy()
        wr = grp["wr"].to_numpy()
        bins = _bin_hours(list(zip(hours.tolist(), w.astype(np.int64).tolist(), strict=True)), 20)
        if len(bins) < config.min_hours:
            continue  # the record-level test covers it
        index = {h: i for i, h in enumerate(hours.tolist())}
        starts, ends, values, counts = [], [], [], []
        for b in bins:
            idx = [index[h] for h in b]
            starts.append(b[0])
            ends.append(b[-1])
            values.append(float(wr[idx].sum() / w[idx].sum()))
            counts.append(int(w[idx].sum()))
        out.append(
            drift.HourlySeries(
                str(d),
                specs.WorkloadClass(str(c)),
                np.asarray(starts, dtype=np.int64),
                np.asarray(ends, dtype=np.int64),
                np.asarray(values),
                np.asarray(counts, dtype=np.int64),
            )
        )
    return out


def _record_series(
    sparse: pd.DataFrame, result: fit.FitResult, effects: pd.DataFrame, exclude: Sequence[str]
) -> list[drift.RecordSeries]:
    if not len(sparse):
        return []
    frame = sparse[~sparse["node"].isin(list(exclude))]
    frame = frame.sort_values(["device_model", "workload_class", "timestamp"], kind="stable")
    r = frame["y"].to_numpy() - _predict(frame, result)
    r = r - frame["node"].map(effects["effect"]).fillna(0.0).to_numpy()
    out: list[drift.RecordSeries] = []
    keys = list(zip(frame["device_model"], frame["workload_class"], strict=True))
    arr = np.asarray([f"{d}\x00{c}" for d, c in keys])
    ok = np.isfinite(r)
    scale = np.full(len(r), np.nan)
    if ok.any():  # the in-memory path's scales: per series and batch size
        series_code = pd.factorize(arr)[0]
        scale[ok] = drift.pooled_scales(series_code[ok], frame["log_batch"].to_numpy()[ok], r[ok])
    for key in sorted(set(keys)):
        sel = (arr == f"{key[0]}\x00{key[1]}") & np.isfinite(r)
        out.append(
            drift.RecordSeries(
                str(key[0]),
                specs.WorkloadClass(str(key[1])),
                frame["hour"].to_numpy()[sel].astype(np.int64),
                r[sel] / scale[sel],
                scale[sel],
            )
        )
    return out


def digest(frags: Sequence[Fragment]) -> str:
    """The bytes of the files (kept for callers that hash files; the learner identifies
    its evidence by content, :attr:`Aggregates.revision`)."""
    return records.digest_files([Path(f.path) for f in frags])


__all__ = [
    "BATCH_ROWS",
    "Aggregates",
    "Fragment",
    "Screen",
    "aggregate",
    "digest",
    "fragments",
    "learn",
    "local_map",
    "pass1",
    "pass1_repeats",
    "pass2",
    "repeats",
]

"""Estimate each device model's speed relative to the reference, per workload class.

The model, in log throughput (factors.md §3a)::

    log tput = α[served model, class, unit] + s[class]·log batch + β[device, class, segment] + e

fitted by WLS on cells (node × device × class × served model × batch × segment) weighted
by record count, which gives the record-level OLS estimates at a fraction of the cost. The
factor is ``exp(β[d, c])`` with the reference's β fixed at 0. Standard errors are clustered
by node, because records from one node share its effect and the information is bounded by
the number of nodes, not records; intervals use Student t with (nodes − 1) degrees of
freedom for the same reason. Gross outliers are dropped first by a robust screen (median ±
``SCREEN_MADS``·MAD within device × class × served model × batch), so ×0.3 or ×3 rows never
reach the regression. A ``segment`` splits a (device, class) at a detected change point:
the current factor is the one after the change.

Pure: a validated frame in, a :class:`FitResult` out; no clock, no randomness, no I/O.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.linear_model import WLS

from reconciler.learn import specs

SCREEN_MADS = 4.0
"""Rows further than this many (normal-consistent) MADs from their group median are dropped."""

Key = tuple[str, specs.WorkloadClass]


@dataclass(frozen=True, slots=True)
class Estimate:
    """The learned log factor of one (device model, class) and its sampling uncertainty."""

    device_model: str
    workload_class: specs.WorkloadClass
    log_factor: float
    se: float
    df: int  # Student-t degrees of freedom: (fewest nodes of device or reference) − 1
    samples: int  # records behind it, after screening, in the current segment
    nodes: int
    identified: bool = True
    since_hour: int | None = None  # start of the current segment, hours since the epoch
    reference_sd: float = 0.0  # part of ``se`` from the reference's own doubt (:func:`widen`)

    @property
    def value(self) -> float:
        return math.exp(self.log_factor)

    def log_interval(self, confidence: float) -> tuple[float, float]:
        q = float(stats.t.ppf(0.5 + confidence / 2.0, max(self.df, 1)))
        return self.log_factor - q * self.se, self.log_factor + q * self.se

    def interval(self, confidence: float) -> tuple[float, float]:
        lo, hi = self.log_interval(confidence)
        return math.exp(lo), math.exp(hi)


@dataclass(frozen=True, slots=True)
class FitResult:
    reference_model: str
    estimates: Mapping[Key, Estimate]
    served_effects: Mapping[tuple[str, str, str], float]  # (served model, class, unit) → α
    slopes: Mapping[str, float]  # class → batch elasticity
    device_effects: Mapping[tuple[str, str, int], float]  # (device, class, segment) → β
    records: int  # rows used by the regression
    screened: int  # rows dropped as gross outliers
    cells: int
    excluded_nodes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def fit(
    frame: pd.DataFrame,
    reference_model: str = specs.REFERENCE_MODEL,
    *,
    exclude_nodes: Collection[str] = (),
    segments: Mapping[Key, int] | None = None,
    keep: np.ndarray | None = None,
    clustered: bool = True,
) -> FitResult:
    """Fit the fixed-effects model on screened, aggregated cells, clustered by node.

    ``segments`` maps a (device, class) to the hour from which its current level starts;
    its earlier records get their own effect so they neither bias nor inform the factor.
    ``keep`` is a precomputed :func:`screen_frame` mask, so a refit does not screen twice.
    ``clustered=False`` gives naive iid errors; it exists only to show, in the benchmark,
    how badly they under-cover.
    """
    segments = segments or {}
    dev = frame["device_model"]
    devices = [str(d) for d in dev.cat.categories]
    if reference_model not in devices:
        raise ValueError(f"no usable records for the reference model {reference_model}")
    classes = [str(c) for c in frame["workload_class"].cat.categories]
    d = dev.cat.codes.to_numpy().astype(np.int64)
    c = frame["workload_class"].cat.codes.to_numpy().astype(np.int64)
    node = frame["node"].cat.codes.to_numpy().astype(np.int64)
    served_key = _combine(frame["served_model"], frame["workload_class"], frame["throughput_unit"])
    s_codes, s_labels = served_key
    b_codes, b_values = _batch_codes(frame)
    y = frame["log_tput"].to_numpy()
    hour = frame["hour"].to_numpy()

    seg = np.zeros(len(frame), dtype=np.int64)  # 1 = before the change point
    for (dm, cls), start in segments.items():
        if dm in devices and cls in classes:
            sel = (d == devices.index(dm)) & (c == classes.index(cls)) & (hour < start)
            seg[sel] = 1

    if keep is None:
        keep = screen(y, _group(d, c, s_codes, b_codes))
    screened = int((~keep).sum())
    if exclude_nodes:
        excluded = {str(n) for n in exclude_nodes}
        node_out = np.asarray([str(n) in excluded for n in frame["node"].cat.categories])
        keep = keep & ~node_out[node]

    # Cells: the regression only needs counts and sums per unique covariate pattern.
    nd, nc, ns, nb = len(devices), len(classes), len(s_labels), len(b_values)
    cell = ((((node * nd + d) * nc + c) * ns + s_codes) * nb + b_codes) * 2 + seg
    uniq, inv = _dense(cell[keep])
    counts = np.bincount(inv).astype(float)
    ymean = np.bincount(inv, weights=y[keep]) / counts
    rest, cseg = np.divmod(uniq, 2)
    rest, cb = np.divmod(rest, nb)
    rest, cs = np.divmod(rest, ns)
    rest, cc = np.divmod(rest, nc)
    cnode, cd = np.divmod(rest, nd)
    cells = Cells(
        devices=tuple(devices),
        classes=tuple(classes),
        served=tuple(s_labels),
        batches=b_values,
        node=cnode,
        device=cd,
        wclass=cc,
        served_key=cs,
        batch=cb,
        segment=cseg,
        count=counts,
        mean=ymean,
    )
    return fit_cells(
        cells,
        reference_model,
        segments=segments,
        clustered=clustered,
        screened=screened,
        excluded_nodes=tuple(sorted(exclude_nodes)),
    )


@dataclass(frozen=True, slots=True)
class Cells:
    """Sufficient statistics of the regression: record count and mean log throughput per
    (node, device, class, served key, batch size, segment). Codes index the label tuples.

    The in-memory path builds them from a frame; :mod:`reconciler.learn.stream` adds them
    up batch by batch (or on Dask workers), so the fit costs the same at any record count.
    """

    devices: tuple[str, ...]
    classes: tuple[str, ...]
    served: tuple[tuple[str, str, str], ...]
    batches: np.ndarray  # log batch size per batch code
    node: np.ndarray
    device: np.ndarray
    wclass: np.ndarray
    served_key: np.ndarray
    batch: np.ndarray
    segment: np.ndarray  # 1 = before the (device, class)'s change point
    count: np.ndarray
    mean: np.ndarray


def fit_cells(
    cells: Cells,
    reference_model: str = specs.REFERENCE_MODEL,
    *,
    segments: Mapping[Key, int] | None = None,
    clustered: bool = True,
    screened: int = 0,
    excluded_nodes: tuple[str, ...] = (),
) -> FitResult:
    """WLS with node-clustered errors on cells (see the module docstring for the model)."""
    segments = segments or {}
    notes: list[str] = []
    devices, classes = list(cells.devices), list(cells.classes)
    if reference_model not in devices:
        raise ValueError(f"no usable records for the reference model {reference_model}")
    s_labels, b_values = list(cells.served), cells.batches
    nd, nc, ns = len(devices), len(classes), len(s_labels)
    counts, ymean = cells.count, cells.mean
    cseg, cb, cs, cc, cnode, cd = (
        cells.segment,
        cells.batch,
        cells.served_key,
        cells.wclass,
        cells.node,
        cells.device,
    )
    uniq = counts
    # Columns: α per served key, a batch slope per class, β per non-reference device/class
    # (current segment) and per (device, class) old segment (the reference's too).
    ref = devices.index(reference_model)
    beta_keys = sorted({(int(a), int(b), int(s)) for a, b, s in zip(cd, cc, cseg, strict=True)})
    beta_keys = [k for k in beta_keys if not (k[0] == ref and k[2] == 0)]
    beta_col = {k: j for j, k in enumerate(beta_keys)}
    k_alpha, k_slope = ns, nc
    X = np.zeros((len(uniq), k_alpha + k_slope + len(beta_keys)))
    rows = np.arange(len(uniq))
    X[rows, cs] = 1.0
    X[rows, k_alpha + cc] = b_values[cb]
    bcol = np.array(
        [beta_col.get((int(a), int(b), int(s)), -1) for a, b, s in zip(cd, cc, cseg, strict=True)]
    )
    has = bcol >= 0
    X[rows[has], k_alpha + k_slope + bcol[has]] = 1.0
    used = np.asarray(
        X.any(axis=0), dtype=bool
    )  # served keys absent after screening would make X singular
    X = X[:, used]
    col_index = np.cumsum(used) - 1

    identified = _identified(X, counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # hasconst: the served-model dummies sum to one; skips statsmodels' rank probe.
        model = WLS(ymean, X, weights=counts, hasconst=True)
        if clustered:
            res = model.fit(cov_type="cluster", cov_kwds={"groups": cnode})
        else:
            # iid errors at record level: cells carry n records of residual variance s²
            res = model.fit()
    params = np.asarray(res.params)
    bse = np.asarray(res.bse)

    def coef(j: int) -> float:
        return float(params[col_index[j]]) if used[j] else float("nan")

    nodes_in = _nodes_per(cd, cc, cseg, cnode)
    samples_in = _samples_per(cd, cc, cseg, counts)
    estimates: dict[Key, Estimate] = {}
    device_effects: dict[tuple[str, str, int], float] = {}
    for a, b, s_ in [(a, b, s_) for a in range(nd) for b in range(nc) for s_ in (0, 1)]:
        if (a, b, s_) in beta_col:
            j = k_alpha + k_slope + beta_col[(a, b, s_)]
            device_effects[(devices[a], classes[b], s_)] = coef(j)
        elif a == ref and s_ == 0:
            device_effects[(devices[a], classes[b], s_)] = 0.0
    for a in range(nd):
        for b in range(nc):
            n_rec = samples_in.get((a, b, 0), 0)
            if n_rec == 0:
                continue
            cls = specs.WorkloadClass(classes[b])
            key = (devices[a], cls)
            since = segments.get(key)
            ref_nodes = nodes_in.get((ref, b, 0), 0)
            if a == ref:
                estimates[key] = Estimate(
                    devices[a],
                    cls,
                    0.0,
                    0.0,
                    max(ref_nodes - 1, 1),
                    n_rec,
                    ref_nodes,
                    True,
                    since,
                )
                continue
            j = k_alpha + k_slope + beta_col[(a, b, 0)]
            ok = bool(used[j] and identified[col_index[j]] and ref_nodes > 0)
            g = nodes_in.get((a, b, 0), 0)
            estimates[key] = Estimate(
                device_model=devices[a],
                workload_class=cls,
                log_factor=coef(j) if ok else 0.0,
                se=float(bse[col_index[j]]) if ok else float("inf"),
                df=max(min(g, ref_nodes) - 1, 1) if clustered else 10_000,
                samples=n_rec,
                nodes=g,
                identified=ok,
                since_hour=since,
            )
            if not ok:
                notes.append(f"{devices[a]}/{classes[b]}: not identified (no shared workload)")
    served_effects = {lab: coef(j) for j, lab in enumerate(s_labels) if used[j]}
    slopes = {classes[b]: coef(k_alpha + b) for b in range(nc)}
    return FitResult(
        reference_model=reference_model,
        estimates=estimates,
        served_effects=served_effects,
        slopes=slopes,
        device_effects=device_effects,
        records=int(counts.sum()),
        screened=screened,
        cells=len(uniq),
        excluded_nodes=excluded_nodes,
        warnings=tuple(notes),
    )


def widen(result: FitResult, alternatives: Sequence[FitResult], note: str) -> FitResult:
    """``result`` averaged with other readings of the reference: intervals that carry the
    reference's own uncertainty.

    Every factor is a ratio to the reference, so a doubt about the reference (one of its
    nodes looks slow: a broken node, or an extreme but legitimate draw of its fleet; its
    level looks to have moved) is a doubt about every factor of the class. Rather than bet
    silently on one reading, each estimate is the equal-weight average of the readings
    (``result`` and ``alternatives``, fitted under the other ones), with the variance of
    that mixture: the mean of their variances plus the spread of their estimates. With two
    readings Δ apart that is the midpoint and ``se² + (Δ/2)²``, which covers the truth at
    close to the nominal rate under either reading (BENCHMARKS.md, reference guard).
    """
    out: dict[Key, Estimate] = {}
    for key, est in result.estimates.items():
        if key[0] == result.reference_model or not est.identified:
            out[key] = est
            continue
        readings = [est] + [
            alt.estimates[key]
            for alt in alternatives
            if key in alt.estimates and alt.estimates[key].identified
        ]
        centre = sum(r.log_factor for r in readings) / len(readings)
        spread = sum((r.log_factor - centre) ** 2 for r in readings) / len(readings)
        variance = sum(r.se**2 for r in readings) / len(readings)
        out[key] = replace(
            est,
            log_factor=centre,
            se=math.sqrt(variance + spread),
            reference_sd=math.sqrt(spread),
        )
    return replace(result, estimates=out, warnings=(*result.warnings, note))


def screen(y: np.ndarray, group: np.ndarray) -> np.ndarray:
    """True for rows within ``SCREEN_MADS`` robust sds of their group's median."""
    keep, _ = screen_with_scale(y, group)
    return keep


def screen_with_scale(y: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The screen mask and each row's robust noise scale (1.4826·MAD of its group)."""
    _, inv = _dense(group)
    med = pd.Series(y).groupby(inv, sort=False).median().sort_index().to_numpy()
    dev = np.abs(y - med[inv])
    mad = pd.Series(dev).groupby(inv, sort=False).median().sort_index().to_numpy()
    scale = np.maximum(1.4826 * mad, 1e-6)[inv]
    return np.asarray(dev <= SCREEN_MADS * scale), scale


def screen_frame(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The outlier screen of :func:`fit` as a reusable row mask, and each row's noise scale
    (the drift detector weighs records by it: small batches are noisier)."""
    d = frame["device_model"].cat.codes.to_numpy().astype(np.int64)
    c = frame["workload_class"].cat.codes.to_numpy().astype(np.int64)
    s_codes, _ = _combine(frame["served_model"], frame["workload_class"], frame["throughput_unit"])
    b_codes, _ = _batch_codes(frame)
    return screen_with_scale(frame["log_tput"].to_numpy(), _group(d, c, s_codes, b_codes))


def _batch_codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct batch sizes and their log values (hashing, not sorting)."""
    codes, values = pd.factorize(frame["log_batch"].to_numpy())
    return codes.astype(np.int64), np.asarray(values, dtype=float)


def _dense(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like ``np.unique(key, return_inverse=True)`` for small non-negative ints, in O(n)."""
    if len(key) == 0:
        return key, key
    present = np.bincount(key) > 0
    uniq = np.flatnonzero(present)
    remap = np.cumsum(present) - 1
    return uniq, remap[key]


def residuals(frame: pd.DataFrame, result: FitResult) -> np.ndarray:
    """Observed minus fitted log throughput per row (NaN where the fit has no effect)."""
    s_codes, s_labels = _combine(
        frame["served_model"], frame["workload_class"], frame["throughput_unit"]
    )
    alpha = np.array([result.served_effects.get(lab, np.nan) for lab in s_labels])
    classes = [str(x) for x in frame["workload_class"].cat.categories]
    slope = np.array([result.slopes.get(cl, np.nan) for cl in classes])
    devs = [str(x) for x in frame["device_model"].cat.categories]
    beta = np.array(
        [[result.device_effects.get((dm, cl, 0), np.nan) for cl in classes] for dm in devs]
    )
    d = frame["device_model"].cat.codes.to_numpy()
    c = frame["workload_class"].cat.codes.to_numpy()
    pred = alpha[s_codes] + slope[c] * frame["log_batch"].to_numpy() + beta[d, c]
    return np.asarray(frame["log_tput"].to_numpy() - pred)


def _combine(*cols: pd.Series) -> tuple[np.ndarray, list[tuple[str, str, str]]]:
    """Codes of the combination of categorical columns, and the label of each code."""
    codes = np.zeros(len(cols[0]), dtype=np.int64)
    for col in cols:
        codes = codes * (len(col.cat.categories) + 1) + col.cat.codes.to_numpy().astype(np.int64)
    uniq, inv = _dense(codes)
    cats = [list(col.cat.categories) for col in cols]
    labels: list[tuple[str, str, str]] = []
    for u in uniq:
        parts = []
        for col_cats in reversed(cats):
            u, r = divmod(int(u), len(col_cats) + 1)
            parts.append(str(col_cats[r]))
        a, b, c_ = reversed(parts)
        labels.append((a, b, c_))
    return inv.astype(np.int64), labels


def _group(*codes: np.ndarray) -> np.ndarray:
    key = np.zeros(len(codes[0]), dtype=np.int64)
    for c in codes:
        key = key * (int(c.max()) + 1 if len(c) else 1) + c
    return key


def _identified(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Which coefficients are estimable: zero weight in every null-space direction."""
    xtx = (X * w[:, None]).T @ X
    vals, vecs = np.linalg.eigh(xtx)
    null = vecs[:, vals < vals.max() * 1e-10]
    if null.shape[1] == 0:
        return np.ones(X.shape[1], dtype=bool)
    return np.asarray(np.abs(null).max(axis=1) < 1e-6)


def _nodes_per(
    cd: np.ndarray, cc: np.ndarray, cseg: np.ndarray, cnode: np.ndarray
) -> dict[tuple[int, int, int], int]:
    df = pd.DataFrame({"d": cd, "c": cc, "s": cseg, "n": cnode})
    out = df.groupby(["d", "c", "s"])["n"].nunique()
    return {(int(a), int(b), int(s)): int(v) for (a, b, s), v in out.items()}


def _samples_per(
    cd: np.ndarray, cc: np.ndarray, cseg: np.ndarray, counts: np.ndarray
) -> dict[tuple[int, int, int], int]:
    df = pd.DataFrame({"d": cd, "c": cc, "s": cseg, "w": counts})
    out = df.groupby(["d", "c", "s"])["w"].sum()
    return {(int(a), int(b), int(s)): int(v) for (a, b, s), v in out.items()}


__all__ = [
    "SCREEN_MADS",
    "Cells",
    "Estimate",
    "FitResult",
    "fit",
    "fit_cells",
    "residuals",
    "screen",
    "screen_frame",
    "screen_with_scale",
    "widen",
]

"""Drift: when a device model's speed changes, and which single nodes underperform.

Two questions, both answered from the residuals of :func:`reconciler.learn.fit.fit`:

* **Slow nodes.** A node whose median residual sits far below the other nodes of its model
  (more than ``min_deficit`` and ``z`` robust sds) is reported and left out of the refit, so
  one throttled host cannot drag a whole model's factor down.
* **Level shifts.** Per (device model, class), residuals minus node effects are reduced to
  hourly medians (robust to outliers, cheap at any record count), prewhitened with an AR(1)
  coefficient estimated from first differences (a step moves one difference, so the
  estimate survives the change it must detect), and fed to two one-sided Page CUSUMs. Raw
  CUSUMs on autocorrelated hourly data false-alarm most weeks (factors.md §3b); prewhitened
  they hold their in-control run length. A workload-mix shift is absorbed by the fixed
  effects and does not move the residuals.

* **Sparse series.** When traffic is too thin for enough hourly bins (a model serving a
  class a dozen times a day), a retrospective change-point test runs on the records
  themselves (:func:`change_point`, permutation null). Every series gets a
  :class:`Coverage` line: tested how and on how much, or "not enough data (have n, need
  m)"; none is skipped silently.

Pure: arrays and frames in, alarms out.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from scipy.stats import t as student_t
from statsmodels.regression.linear_model import yule_walker

from reconciler.learn import specs


class Direction(StrEnum):
    DOWN = "down"
    UP = "up"


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Detector settings; defaults meet the acceptance criteria in docs/factors.md."""

    target_drop: float = 0.03  # the smallest regression worth finding quickly
    target_rise: float = 0.06  # upgrades matter less urgently: a larger target, fewer alarms
    threshold: float = 8.0  # h, in innovation sds
    min_k: float = 0.75  # floor on k: thin traffic targets larger shifts, not more alarms
    warmup_hours: int = 48  # hours used to set the baseline after the start or a change
    min_hours: int = 96  # fewer hourly bins than this: the record-level test is used instead
    min_records: int = 100  # fewer records than this: not tested (reported, never silent)
    min_side: int = 40  # the record-level change point leaves this many records each side
    # The record-level test is directional: a drop is called at p ≤ ``down_share·alpha``
    # (0.5%) and a rise at p ≤ the rest (0.2%), each one-sided; the series' size is
    # ``alpha`` (Bonferroni over the two directions), so a model with three classes is
    # tested at ≤ 2.1% per window, under the 3% the policy allows (the margin covers
    # residuals that are not quite exchangeable; BENCHMARKS.md). Drops get most of the
    # budget: a regression charges tenants for speed they do not get.
    alpha: float = 0.007
    down_share: float = 5.0 / 7.0
    # The record-level statistic. "mixture" (default): the likelihood ratio of a step of
    # ``design_drop`` (``design_rise``) averaged over every admissible change time, i.e.
    # mean_t exp(μ_t·Z_t − μ_t²/2) over the standardised splits Z_t: by Neyman–Pearson the
    # most powerful test, on average over change times uniformly likely at every split,
    # against a step of that size. "max": the largest split score, divided by (t(1−t))^q
    # with q = ``split_weight`` (q=½ the Gaussian likelihood ratio's maximum, q=0 the
    # plain CUSUM; Csörgő & Horváth 1997): round two's statistic, kept for comparison
    # (bench/drift_power.py).
    statistic: str = "mixture"
    # The design steps: 2% (of 1.5–3% tried on the development seeds; 3% found two fewer
    # of 80 steps) and twice that for rises, as the targets are; checked on held-out
    # seeds (BENCHMARKS.md).
    design_drop: float = 0.02
    design_rise: float = 0.04
    split_weight: float = 0.5
    # Where an alarm places the change. "window" (default): the split whose ±
    # ``place_window_hours`` hold the most posterior probability of the change time under
    # the test's own model (a step of the design size, its time uniform over the splits):
    # the Bayes choice when what counts is landing within that window. "split": the argmax
    # of the split score weighted by (t(1−t))^``place_weight`` (round two: ½).
    placement: str = "window"
    place_window_hours: int = 72
    place_weight: float = 0.5
    # The per-record score: "t" is the likelihood score of a Student-t with ``score_df``
    # degrees of freedom (efficient for the heavy-tailed per-record noise, and redescending:
    # a wild record contributes almost nothing); "huber" the clipped score (round one).
    score: str = "t"
    score_df: float = 3.0
    max_records: int = 20_000  # the record-level test holds a series' records in memory
    # The record-level test decides as a test on ``permutations`` permutations would, but
    # stops as soon as the decision is settled (Besag & Clifford 1991): the first
    # ``screen_permutations`` always run (they also give the detectable step), the rest only
    # while the observed statistic could still be called. 4,999 rather than 999: at a 0.5%
    # level the critical value then rests on 25 permuted values, not 5, and the Monte Carlo
    # test loses less power to the exact one (BENCHMARKS.md, session 10); a series far from
    # significance still costs 999.
    permutations: int = 4999
    screen_permutations: int = 999


@dataclass(frozen=True, slots=True)
class Alarm:
    device_model: str
    workload_class: specs.WorkloadClass
    direction: Direction
    change_hour: int  # estimated first hour of the new level (hours since the epoch)
    alarm_hour: int  # the hour whose data raised the alarm
    relative_change: float  # estimated new level / old level − 1
    phi: float  # sum of the AR coefficients removed before the CUSUM


class Method(StrEnum):
    HOURLY_CUSUM = "hourly CUSUM"
    RECORD_CHANGE_POINT = "record change point"
    NONE = "not tested"


@dataclass(frozen=True, slots=True)
class Coverage:
    """Whether a series was tested for drift, how, and on how much data: never silent."""

    device_model: str
    workload_class: specs.WorkloadClass
    method: Method
    have: int  # hourly bins (CUSUM) or records (change point, not tested)
    need: int
    p_value: float | None = None  # record change point only
    unit: str = "records"  # what ``have`` and ``need`` count when not tested
    detectable: float | None = None  # smallest step (relative) found with 90% power
    target: float = 0.03  # the step the policy wants seen (``DriftConfig.target_drop``)

    @property
    def tested(self) -> bool:
        return self.method is not Method.NONE

    @property
    def blind(self) -> bool:
        """True when this series cannot see the target step with 90% power (or at all)."""
        return self.detectable is None or self.detectable > self.target

    def sight(self) -> str:
        """What the series can see, in words: its minimum detectable step at 90% power."""
        if self.detectable is None:
            return f"cannot see a {self.target:.0%} step: not tested"
        if self.blind:
            return (
                f"CANNOT see a {self.target:.0%} step: detects {self.detectable:.1%} or more "
                "at 90% power"
            )
        return f"detects {self.detectable:.1%} or more at 90% power"

    def render(self) -> str:
        who = f"{self.device_model}/{self.workload_class.value}"
        if self.method is Method.HOURLY_CUSUM:
            return f"{who}: tested ({self.method.value}, {self.have} hourly bins; {self.sight()})"
        if self.method is Method.RECORD_CHANGE_POINT:
            p = f", p={self.p_value:.3f}" if self.p_value is not None else ""
            return f"{who}: tested ({self.method.value}, {self.have} records{p}; {self.sight()})"
        return (
            f"{who}: not enough data (have {self.have} {self.unit}, need {self.need}; "
            f"{self.sight()})"
        )


@dataclass(frozen=True, slots=True)
class SlowNode:
    node: str
    device_model: str
    relative: float  # node speed / its model's typical node − 1
    z: float
    records: int


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """Median residual per time bin: one hour, or several consecutive hours when traffic is
    too thin for one hour to hold ``min_records`` (a median of two records is noise)."""

    device_model: str
    workload_class: specs.WorkloadClass
    start_hours: np.ndarray  # first hour of each bin, hours since the epoch
    end_hours: np.ndarray  # last hour of each bin: the alarm can fire once it has passed
    values: np.ndarray
    counts: np.ndarray


# ------------------------------------------------------------------------------ slow nodes


def node_effects(frame: pd.DataFrame, resid: np.ndarray) -> pd.DataFrame:
    """Mean residual (NaN rows ignored) and record count per node, with its device model."""
    node = frame["node"].cat.codes.to_numpy()
    ok = np.isfinite(resid)
    n_nodes = len(frame["node"].cat.categories)
    # A mean of screened residuals: the outlier screen already removed gross errors.
    count = np.bincount(node[ok], minlength=n_nodes)
    total = np.bincount(node[ok], weights=resid[ok], minlength=n_nodes)
    model_of = np.zeros(n_nodes, dtype=np.int64)
    model_of[node] = frame["device_model"].cat.codes.to_numpy()
    idx = np.flatnonzero(count)
    med = pd.Series(total[idx] / count[idx], index=idx)
    names = frame["node"].cat.categories
    models = frame["device_model"].cat.categories
    return pd.DataFrame(
        {
            "effect": med.to_numpy(),
            "records": count[idx],
            "device_model": [str(models[m]) for m in model_of[idx]],
        },
        index=pd.Index([str(names[i]) for i in idx], name="node"),
    )


def slow_nodes(
    effects: pd.DataFrame, min_deficit: float = 0.15, z: float = 3.0, min_records: int = 30
) -> list[SlowNode]:
    """Nodes well below their model's other nodes, by both a relative and a robust-z margin."""
    out: list[SlowNode] = []
    for model, grp in effects[effects["records"] >= min_records].groupby("device_model"):
        if len(grp) < 3:
            continue  # cannot tell a slow node from a slow model with fewer than 3 nodes
        center = float(grp["effect"].median())
        spread = max(1.4826 * float((grp["effect"] - center).abs().median()), 0.01)
        for node, row in grp.iterrows():
            gap = float(row["effect"]) - center
            if gap < math.log1p(-min_deficit) and gap / spread < -z:
                out.append(
                    SlowNode(
                        str(node), str(model), math.expm1(gap), gap / spread, int(row["records"])
                    )
                )
    return sorted(out, key=lambda s: s.node)


# ---------------------------------------------------------------------------- level shifts


def hourly(
    frame: pd.DataFrame,
    resid: np.ndarray,
    effects: pd.DataFrame,
    exclude_nodes: Collection[str] = (),
    min_records: int = 20,
    scale: np.ndarray | None = None,
) -> list[HourlySeries]:
    """Median of (residual − node effect) per (device model, class) and hour (or hour bin)."""
    node_cats = frame["node"].cat.categories
    per_node = effects["effect"].reindex(node_cats).fillna(0.0).to_numpy()
    codes = frame["node"].cat.codes.to_numpy()
    r = resid - per_node[codes]
    ok = np.isfinite(r)
    if exclude_nodes:
        excluded = {str(n) for n in exclude_nodes}
        bad = np.asarray([str(n) in excluded for n in node_cats], dtype=bool)
        ok &= ~bad[codes]
    if not ok.any():
        return []
    rec_scale = scale[ok] if scale is not None else None
    d = frame["device_model"].cat.codes.to_numpy().astype(np.int64)[ok]
    c = frame["workload_class"].cat.codes.to_numpy().astype(np.int64)[ok]
    h = frame["hour"].to_numpy()[ok]
    r = r[ok]
    h0 = int(h.min())
    span = int(h.max()) - h0 + 1
    nc = len(frame["workload_class"].cat.categories)
    sid = d * nc + c
    n_series = int(sid.max()) + 1
    per_hour = np.bincount(sid * span + (h - h0), minlength=n_series * span).reshape(n_series, span)
    # Bin consecutive hours until each bin holds ``min_records``; a trailing remainder
    # joins the last bin.
    bin_of = np.full((n_series, span), -1, dtype=np.int64)
    bins: list[tuple[int, int, int]] = []  # (series, first hour offset, last hour offset)
    for s_id in range(n_series):
        row = per_hour[s_id]
        if row.sum() == 0:
            continue
        acc, first = 0, None
        for off in np.flatnonzero(row):
            if first is None:
                first = int(off)
            acc += int(row[off])
            bin_of[s_id, off] = len(bins)
            if acc >= min_records:
                bins.append((s_id, first, int(off)))
                acc, first = 0, None
        if first is not None:
            if bins and bins[-1][0] == s_id:
                prev = bins[-1]
                bin_of[s_id, first:] = np.where(bin_of[s_id, first:] >= 0, len(bins) - 1, -1)
                last_off = int(np.flatnonzero(row)[-1])
                bins[-1] = (prev[0], prev[1], last_off)
            else:
                bins.append((s_id, first, int(np.flatnonzero(row)[-1])))
    b = bin_of[sid, h - h0]
    cnt = np.bincount(b, minlength=len(bins))
    if rec_scale is None:
        rec_scale = _record_scales(frame, ok, r)
    values = huber_locations(r, b, len(bins), rec_scale)
    meta = np.asarray(bins, dtype=np.int64).reshape(-1, 3)
    devs = list(frame["device_model"].cat.categories)
    classes = list(frame["workload_class"].cat.categories)
    out: list[HourlySeries] = []
    for s_id in np.unique(meta[:, 0]):
        sel = meta[:, 0] == s_id
        di, ci = divmod(int(s_id), nc)
        out.append(
            HourlySeries(
                device_model=str(devs[di]),
                workload_class=specs.WorkloadClass(str(classes[ci])),
                start_hours=h0 + meta[sel, 1],
                end_hours=h0 + meta[sel, 2],
                values=values[sel],
                counts=cnt[sel],
            )
        )
    return out


HUBER_C = 1.345


def huber_locations(r: np.ndarray, group: np.ndarray, groups: int, scale: np.ndarray) -> np.ndarray:
    """Huber M-estimate of location per group, with a known scale per record.

    More efficient than the median under Student-t noise and still bounded against
    outliers; dividing by each record's own scale lets precise (large-batch) records count
    more, because the noise is heteroscedastic.
    """
    inv_var = 1.0 / (scale * scale)
    # Start from the precision-weighted mean: rows reaching here passed the outlier screen.
    mu = np.bincount(group, weights=inv_var * r, minlength=groups) / np.maximum(
        np.bincount(group, weights=inv_var, minlength=groups), 1e-300
    )
    for _ in range(6):
        u = np.abs(r - mu[group]) / scale
        w = np.minimum(1.0, HUBER_C / np.maximum(u, 1e-12)) * inv_var
        mu = np.bincount(group, weights=w * r, minlength=groups) / np.maximum(
            np.bincount(group, weights=w, minlength=groups), 1e-300
        )
    return mu


def _record_scales(frame: pd.DataFrame, ok: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Robust sd of residuals per (class, batch size): the noise shrinks with batch."""
    return pooled_scales(
        frame["workload_class"].cat.codes.to_numpy()[ok], frame["log_batch"].to_numpy()[ok], r
    )


def pooled_scales(group: np.ndarray, log_batch: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Each record's noise scale: 1.4826·MAD of the residuals of its (group, batch size).

    The record-level change point weighs records by 1/scale². The outlier screen's scale
    comes from one (device × class × served model × batch) group, twenty-odd records on a
    sparse series, and is so noisy that those weights cost about a tenth of the test's z at
    a known change time (``bench/drift_power.py``). Pooled over served models within a
    series (``group``), the batch dependence stays (the noise shrinks with batch) and the
    estimate is several times more precise; the in-memory and streamed paths hold the same
    records per series, so both compute the same scales.
    """
    g = np.asarray(group).astype(np.int64)
    bsz = np.unique(np.asarray(log_batch), return_inverse=True)[1].reshape(-1)
    key = g * (int(bsz.max(initial=0)) + 1) + bsz
    dev = pd.Series(np.abs(r - pd.Series(r).groupby(key).transform("median").to_numpy()))
    mad = dev.groupby(key).transform("median").to_numpy()
    return np.asarray(np.maximum(1.4826 * mad, 1e-4))


def running_level(x: np.ndarray, window: int = 49) -> np.ndarray:
    """Centred running median: follows a step within half a window, ignores single spikes."""
    level = pd.Series(x).rolling(window, center=True, min_periods=window // 4).median()
    return np.asarray(level.to_numpy())


def ar_coefficients(x: np.ndarray, order: int = 3, window: int = 49) -> np.ndarray:
    """AR coefficients of the noise around a running median level (Yule-Walker).

    The running median follows a level shift within a few bins (medians keep edges), so the
    change the CUSUM must find does not masquerade as autocorrelation; measurement noise
    plus an AR(1) process is an ARMA(1,1), which a short AR(p) approximates well.
    """
    finite = np.isfinite(x)
    if finite.sum() < 4 * window:
        return np.zeros(0)
    noise = (x - running_level(x, window))[finite]
    noise = noise[np.isfinite(noise)]
    centred = noise - np.median(noise)
    try:
        fitted = yule_walker(centred, order=order, method="mle", result_object=False)
    except TypeError:  # statsmodels < 0.15 has no result_object and returns the tuple
        fitted = yule_walker(centred, order=order, method="mle")
    rho = np.asarray(fitted[0], dtype=float)
    total = float(rho.sum())
    if total > 0.9:  # keep the filter stable and a shift visible after prewhitening
        rho *= 0.9 / total
    return rho


def prewhiten(x: np.ndarray, rho: np.ndarray, mu: float = 0.0) -> np.ndarray:
    """Innovations ``(x_t − μ) − Σ ρ_i (x_{t−i} − μ)``; the first ``len(rho)`` are NaN."""
    p = len(rho)
    e = x - mu
    out = e.copy()
    for i, r in enumerate(rho, start=1):
        out[i:] -= r * e[:-i]
    out[:p] = np.nan
    return out


def detect(series: HourlySeries, config: DriftConfig = DriftConfig()) -> list[Alarm]:
    """Page CUSUMs on the prewhitened series; after an alarm, restart at the change.

    The baseline is self-starting: the (clipped) mean of the current segment so far, so a
    noisy first day does not bias the chart for the rest of the month.
    """
    x = series.values
    if np.isfinite(x).sum() < config.min_hours:
        return []
    rho = ar_coefficients(x)
    # The noise scale comes from the series around its running median: a persistent step
    # would otherwise inflate it and hide itself.
    innov = prewhiten(x - running_level(x), rho)
    sigma = 1.4826 * float(np.nanmedian(np.abs(innov - np.nanmedian(innov))))
    if not math.isfinite(sigma) or sigma <= 0:
        return []
    alarms: list[Alarm] = []
    start = 0
    while start + config.warmup_hours < len(x):
        hit = _run(x, start, rho, sigma, config)
        if hit is None:
            break
        direction, change, at, before = hit
        after = x[change : at + 1]
        new_level = float(np.nanmedian(after)) if np.isfinite(after).any() else before
        alarms.append(
            Alarm(
                device_model=series.device_model,
                workload_class=series.workload_class,
                direction=direction,
                change_hour=int(series.start_hours[change]),
                alarm_hour=int(series.end_hours[at]),
                relative_change=math.expm1(new_level - before),
                phi=float(rho.sum()) if len(rho) else 0.0,
            )
        )
        start = max(change, at + 1 - config.warmup_hours, start + 1)
    return alarms


def _run(
    x: np.ndarray, start: int, rho: np.ndarray, sigma: float, config: DriftConfig
) -> tuple[Direction, int, int, float] | None:
    """First alarm after the warm-up: (direction, change index, alarm index, old level)."""
    keep = 1.0 - float(rho.sum())  # share of a persistent shift left after prewhitening
    k_down = max(0.5 * keep * -math.log1p(-config.target_drop) / sigma, config.min_k)
    k_up = max(0.5 * keep * math.log1p(config.target_rise) / sigma, config.min_k)
    warm = x[start : start + config.warmup_hours]
    if np.isfinite(warm).sum() < config.warmup_hours // 2:
        return None
    center = float(np.nanmedian(warm))
    clip = 3.0 * sigma / max(keep, 0.1)
    total = float(np.nansum(np.clip(warm, center - clip, center + clip)))
    count = int(np.isfinite(warm).sum())
    # e_t = (x_t − μ) − Σρ_i(x_{t−i} − μ) = y_t − keep·μ with y the filtered series.
    y = prewhiten(x, rho).tolist()
    xs = x.tolist()
    s_dn = s_up = 0.0
    begin = max(start + config.warmup_hours, len(rho))
    last_zero_dn = last_zero_up = begin
    for t in range(begin, len(xs)):
        v = xs[t]
        yt = y[t]
        if not (math.isfinite(v) and math.isfinite(yt)):
            continue
        mu = total / count
        z = (yt - keep * mu) / sigma
        z = min(max(z, -4.0), 4.0)  # one wild bin must not raise an alarm on its own
        s_dn = max(0.0, s_dn - z - k_down)
        s_up = max(0.0, s_up + z - k_up)
        if s_dn == 0.0:
            last_zero_dn = t + 1
        if s_up == 0.0:
            last_zero_up = t + 1
        if s_dn > config.threshold:
            return Direction.DOWN, min(last_zero_dn, t), t, mu
        if s_up > config.threshold:
            return Direction.UP, min(last_zero_up, t), t, mu
        total += min(max(v, mu - clip), mu + clip)
        count += 1
    return None


def detect_all(series: list[HourlySeries], config: DriftConfig = DriftConfig()) -> list[Alarm]:
    return [a for s in series for a in detect(s, config)]


# -------------------------------------------------------------- sparse series: records


@dataclass(frozen=True, slots=True)
class RecordSeries:
    """One (device, class)'s screened records in time order: residual minus node effect,
    divided by the record's noise scale, with its hour."""

    device_model: str
    workload_class: specs.WorkloadClass
    hours: np.ndarray
    z: np.ndarray
    scale: np.ndarray


def record_series(
    frame: pd.DataFrame,
    resid: np.ndarray,
    effects: pd.DataFrame,
    exclude_nodes: Collection[str] = (),
) -> list[RecordSeries]:
    """Standardised residuals per (device model, class), ordered by time; each record's
    scale is :func:`pooled_scales` over its series' records of the same batch size."""
    node_cats = frame["node"].cat.categories
    per_node = effects["effect"].reindex(node_cats).fillna(0.0).to_numpy()
    codes = frame["node"].cat.codes.to_numpy()
    r = resid - per_node[codes]
    ok = np.isfinite(r)
    if exclude_nodes:
        excluded = {str(n) for n in exclude_nodes}
        ok &= ~np.asarray([str(n) in excluded for n in node_cats], dtype=bool)[codes]
    d = frame["device_model"].cat.codes.to_numpy().astype(np.int64)
    c = frame["workload_class"].cat.codes.to_numpy().astype(np.int64)
    nc = len(frame["workload_class"].cat.categories)
    ts = frame["timestamp"].to_numpy()
    devs = list(frame["device_model"].cat.categories)
    classes = list(frame["workload_class"].cat.categories)
    sid = np.where(ok, d * nc + c, -1)
    scale = np.full(len(r), np.nan)
    if ok.any():
        scale[ok] = pooled_scales(sid[ok], frame["log_batch"].to_numpy()[ok], r[ok])
    out: list[RecordSeries] = []
    for s_id in np.unique(sid[sid >= 0]):
        idx = np.flatnonzero(sid == s_id)
        idx = idx[np.argsort(ts[idx], kind="stable")]
        di, ci = divmod(int(s_id), nc)
        out.append(
            RecordSeries(
                str(devs[di]),
                specs.WorkloadClass(str(classes[ci])),
                frame["hour"].to_numpy()[idx],
                r[idx] / scale[idx],
                scale[idx],
            )
        )
    return out


POWER_Z = 1.2816
"""z of 90% power: a step is "detectable" when the statistic's mean clears the test's
critical value by this many of its (unit) standard deviations."""


def hourly_detectable(series: HourlySeries, config: DriftConfig = DriftConfig()) -> float | None:
    """The smallest drop the hourly CUSUM confirms with 90% power by the window's end, for
    a change in its middle: after prewhitening a step δ leaves ``keep·δ/σ`` per bin, the
    chart gains that minus ``k`` per bin over the B/2 bins after the change, and must
    clear ``h`` by 1.28 sds of that sum (√(B/2))."""
    x = series.values
    if np.isfinite(x).sum() < config.min_hours:
        return None
    rho = ar_coefficients(x)
    innov = prewhiten(x - running_level(x), rho)
    sigma = 1.4826 * float(np.nanmedian(np.abs(innov - np.nanmedian(innov))))
    if not math.isfinite(sigma) or sigma <= 0:
        return None
    keep = max(1.0 - float(rho.sum()), 0.1)
    k = max(0.5 * keep * -math.log1p(-config.target_drop) / sigma, config.min_k)
    after = max(int(np.isfinite(x).sum()) // 2 - config.warmup_hours // 2, 1)
    step = sigma / keep * (k + (config.threshold + POWER_Z * math.sqrt(after)) / after)
    return -math.expm1(-step)


def change_point(
    series: RecordSeries, config: DriftConfig = DriftConfig()
) -> tuple[Alarm | None, float]:
    """At most one change in the mean of a sparse series, and the test's p-value (see
    :func:`tested_change_point`, which also says what the test could have seen)."""
    alarm, p, _ = tested_change_point(series, config)
    return alarm, p


def tested_change_point(
    series: RecordSeries, config: DriftConfig = DriftConfig()
) -> tuple[Alarm | None, float, float | None]:
    """At most one change in the mean of a sparse series, the test's p-value, and the
    smallest drop it could have seen (:func:`_record_detectable`).

    A retrospective likelihood-score test on the records themselves, for series whose
    hourly bins are too few for the CUSUM. Each record's residual (fitted served-model,
    batch, class and node terms removed) is standardised by its pooled noise scale and
    scored by :func:`record_score` (the Student-t likelihood score by default). At each
    split (at least ``min_side`` records each side) the weighted score before it, centred
    on its share of the total, measures how far the level before sits above the level
    after; :meth:`_Splits.statistics` turns the splits into one statistic for a drop and one for
    a rise (``config.statistic``). The null of each comes from the same permutations
    (records in random order are exchangeable when nothing changed): a drop is called at
    ``down_share·alpha``, a rise at the rest. The permutations are seeded by the series
    name, so the result is a pure function of the data. The p-value returned is the
    Bonferroni one over the two directions, comparable with ``alpha``.
    """
    n = len(series.z)
    m = config.min_side
    if n < max(config.min_records, 2 * m + 1):
        return None, 1.0, None
    psi, slope = record_score(series.z, config)
    # Efficient score of a common shift in log units: ψ(z)/scale, with the Fisher weights
    # 1/scale² (large batches are less noisy, so their records weigh more).
    u = psi / series.scale
    w = 1.0 / (series.scale * series.scale)
    k = np.arange(m, n - m + 1)
    if len(k) > MAX_SPLITS:  # a grid: neighbouring splits of a long series say the same
        k = np.unique(np.linspace(m, n - m, MAX_SPLITS).round().astype(np.int64))
    observed = _splits(u, w, k)
    obs_down, obs_up = (float(x) for x in observed.statistics(slope, config))
    seed = zlib.crc32(f"{series.device_model}/{series.workload_class.value}/{n}".encode())
    rng = np.random.default_rng(seed)
    share = min(max(config.down_share, 0.0), 1.0)
    level_down, level_up = share * config.alpha, (1.0 - share) * config.alpha
    total = config.permutations + 1
    screen = min(config.screen_permutations, config.permutations)
    # The most permuted values ≥ the observed one a call allows, in the full test. The
    # levels get a relative tolerance: ``down_share·alpha`` is a float product, and a
    # p-value exactly at the level (25/5000 at 0.5%) must count.
    allow_down = math.floor(level_down * total * (1 + 1e-9)) - 1
    allow_up = math.floor(level_up * total * (1 + 1e-9)) - 1
    null_down = np.empty(config.permutations)
    null_up = np.empty(config.permutations)
    power_rows: list[np.ndarray] = []
    done = 0
    while done < config.permutations:
        rows = min(PERMUTATION_CHUNK, config.permutations - done)
        perms = np.argsort(rng.random((rows, n)), axis=1)
        chunk_down, chunk_up = _statistics(u[perms], w[perms], k, slope, config)
        null_down[done : done + rows], null_up[done : done + rows] = chunk_down, chunk_up
        if done < POWER_ROWS:
            power_rows.append(perms)
        done += rows
        if done >= screen and (
            np.sum(null_down[:done] >= obs_down) > allow_down
            and np.sum(null_up[:done] >= obs_up) > allow_up
        ):
            break  # neither direction can be called any more
    above_down = int(np.sum(null_down[:done] >= obs_down))
    above_up = int(np.sum(null_up[:done] >= obs_up))
    if done < config.permutations:  # stopped early: Besag & Clifford's p-value, h / l
        p_down, p_up = max(above_down, 1) / done, max(above_up, 1) / done
    else:
        p_down, p_up = (1 + above_down) / total, (1 + above_up) / total
    adj_down = p_down / share if share > 0 else math.inf
    adj_up = p_up / (1.0 - share) if share < 1 else math.inf
    p = min(1.0, adj_down, adj_up)
    perms_for_power = np.concatenate(power_rows)[:POWER_ROWS]
    detectable = _record_detectable(
        u, w, k, slope, perms_for_power, null_down[:screen], level_down, config
    )
    down_ok = done == config.permutations and above_down <= allow_down
    up_ok = done == config.permutations and above_up <= allow_up
    if not (down_ok or up_ok):
        return None, p, detectable
    down = down_ok and (not up_ok or adj_down <= adj_up)
    split = _place(series, observed, k, slope, down, config)
    raw = series.z * series.scale  # back in log units, precision-weighted
    before = huber_locations(raw[:split], np.zeros(split, np.int64), 1, series.scale[:split])[0]
    after = huber_locations(raw[split:], np.zeros(n - split, np.int64), 1, series.scale[split:])[0]
    change = float(after - before)
    return (
        Alarm(
            device_model=series.device_model,
            workload_class=series.workload_class,
            direction=Direction.DOWN if down else Direction.UP,
            change_hour=int(series.hours[split]),
            alarm_hour=int(series.hours[-1]),
            relative_change=math.expm1(change),
            phi=0.0,
        ),
        p,
        detectable,
    )


def _place(
    series: RecordSeries,
    splits: _Splits,
    k: np.ndarray,
    slope: float,
    down: bool,
    config: DriftConfig,
) -> int:
    """The first record of the new level (``config.placement``).

    "window": with a step of the design size in the alarm's direction and its time
    uniform over the splits, the posterior of the change time is ∝ exp(μ_t·Z_t − μ_t²/2)
    (:meth:`_Splits.log_ratios`); the split whose ±``place_window_hours`` hold the most of it is
    the choice that most often lands within that window of the truth. Over the
    benchmark's steps at days 6, 15 and 24 together it placed 148 of 167 hits within 3
    days, the q=¼ and q=½ split scores 143 and 140 (q=½ one more at each of days 6 and
    24; BENCHMARKS.md, "Drift on sparse series, round three").
    """
    if config.placement == "split":
        placed = splits.scores(config.place_weight)
        return int(k[int(np.argmax(placed if down else -placed))])
    design = config.design_drop if down else config.design_rise
    log_post = splits.log_ratios(slope, design, down)
    post = np.exp(log_post - log_post.max())
    mass = np.concatenate(([0.0], np.cumsum(post)))
    hours = series.hours[k].astype(np.float64)  # records are in time order
    lo = np.searchsorted(hours, hours - config.place_window_hours, side="left")
    hi = np.searchsorted(hours, hours + config.place_window_hours, side="right")
    return int(k[int(np.argmax(mass[hi] - mass[lo]))])


MAX_SPLITS = 2000
"""Candidate splits scored at most: beyond, an even grid (one per ten records at 20,000)."""
PERMUTATION_CHUNK = 128
"""Permutations scored at a time: bounds the test's memory at ``max_records`` records
(128 rows × 20,000 records × a few float arrays, tens of MB) whatever ``permutations`` is."""
POWER_ROWS = 256
"""Permuted orders on which :func:`_record_detectable` simulates a step."""


def record_score(z: np.ndarray, config: DriftConfig = DriftConfig()) -> tuple[np.ndarray, float]:
    """Each record's location score ψ(z), and the mean slope E ψ' (how much of a shift of
    the level reaches the score; 1 for the plain mean).

    ``z`` is in robust-sd units (1.4826·MAD). ``score="t"``: the Student-t likelihood score
    with ``score_df`` degrees of freedom, z first rescaled to the t's own scale (the
    1.4826·MAD of a t_ν is 1.4826·t_ν(0.75) of its scale); it is the efficient score
    when the per-record noise is t_ν and redescends, so a gross error adds almost nothing.
    ``score="huber"``: the clipped score at 1.345.
    """
    if config.score == "huber":
        inside = np.abs(z) < HUBER_C
        return np.clip(z, -HUBER_C, HUBER_C), max(float(np.mean(inside)), 1e-3)
    nu = config.score_df
    c = 1.4826 * float(student_t.ppf(0.75, nu))
    x = z * c
    psi = (nu + 1.0) * x / (nu + x * x)
    slope = c * (nu + 1.0) * (nu - x * x) / (nu + x * x) ** 2
    return psi, max(float(np.mean(slope)), 1e-3)


@dataclass(frozen=True, slots=True)
class _Splits:
    """Every candidate split of the records (rows: one per order of the records): the
    weighted score before the split minus its share of the total (``centred``; positive
    when the level before sits above the level after, a drop), that share t (``frac``),
    the null variance of the whole (``var`` = var ψ·W, so a split's null sd is
    √(var·t(1−t))) and the total weight W. The test, the placement and the detectable
    step all read the splits through the two views below."""

    centred: np.ndarray
    frac: np.ndarray
    var: np.ndarray
    total_w: np.ndarray

    def shifted(self, extra: np.ndarray) -> _Splits:
        """The same splits with ``extra`` added to the centred scores (a simulated step)."""
        return _Splits(self.centred + extra, self.frac, self.var, self.total_w)

    def scores(self, q: float) -> np.ndarray:
        """Centred score over the null sd at t=½ · (t(1−t))^q; q=½ standardises every
        split."""
        return np.asarray(self.centred / (np.sqrt(self.var) * (self.frac * (1 - self.frac)) ** q))

    def log_ratios(self, slope: float, design: float, down: bool) -> np.ndarray:
        """Per split, the log likelihood ratio of a step of ``design`` there: a step δ (log
        units) moves the standardised score Z_t by μ_t = e·δ·√(W·t(1−t)/var ψ) (e the mean
        slope of ψ), so the ratio is exp(μ_t·Z_t − μ_t²/2). Up to a constant, also the log
        posterior of the change time under a uniform prior over the splits."""
        spread = np.sqrt(self.frac * (1.0 - self.frac))
        z = self.centred / (np.sqrt(self.var) * spread)
        mu = -math.log1p(-design) * slope * self.total_w * spread / np.sqrt(self.var)
        return np.asarray((z if down else -z) * mu - mu * mu / 2.0)

    def statistics(self, slope: float, config: DriftConfig) -> tuple[np.ndarray, np.ndarray]:
        """The drop and the rise statistic of each row: "mixture", the log of the summed
        likelihood ratios of the design steps; "max", the largest split score with weight
        ``split_weight``."""
        if config.statistic == "max":
            scores = self.scores(config.split_weight)
            return scores.max(axis=-1), (-scores).max(axis=-1)
        return (
            logsumexp(self.log_ratios(slope, config.design_drop, True), axis=-1),
            logsumexp(self.log_ratios(slope, config.design_rise, False), axis=-1),
        )


def _splits(u: np.ndarray, w: np.ndarray, k: np.ndarray) -> _Splits:
    """:class:`_Splits` of the scores ``u`` with weights ``w`` at the splits ``k``."""
    cu = np.cumsum(u, axis=-1)
    cw = np.cumsum(w, axis=-1)
    total_u, total_w = cu[..., -1:], cw[..., -1:]
    left_u, left_w = cu[..., k - 1], cw[..., k - 1]
    centred = left_u - left_w / total_w * total_u
    var_psi = np.var(u * np.sqrt(1.0 / w), axis=-1, keepdims=True)  # var of ψ(z)
    frac = np.clip(left_w / total_w, 1e-12, 1.0 - 1e-12)
    return _Splits(centred, frac, np.maximum(var_psi * total_w, 1e-300), total_w)


def _statistics(
    u: np.ndarray, w: np.ndarray, k: np.ndarray, slope: float, config: DriftConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The drop and the rise statistic of each row (an order of the records)."""
    return _splits(u, w, k).statistics(slope, config)


def _record_detectable(
    u: np.ndarray,
    w: np.ndarray,
    k: np.ndarray,
    slope: float,
    perms: np.ndarray,
    null_down: np.ndarray,
    level: float,
    config: DriftConfig,
) -> float:
    """The smallest drop the record-level test finds with 90% power, for a change in the
    middle of these records, by simulation on the records themselves: a step δ (log units)
    moves each score ψ(z)/scale by about e·δ·w (e the mean slope of ψ, :func:`record_score`);
    added after the middle of each of ``perms`` (random orders of the records, so the
    noise is the series' own), the drop statistic must beat the drop test's own critical
    value (from ``null_down`` at ``level``) in 90% of them. Bisection on δ."""
    n = u.shape[-1]
    total = len(null_down) + 1
    allowed = math.floor(level * total * (1 + 1e-9)) - 1  # permuted values ≥ obs allowed
    if allowed < 0:
        return 1.0
    critical = float(np.sort(null_down)[::-1][min(allowed, len(null_down) - 1)])
    wp = w[perms]
    splits = _splits(u[perms], wp, k)
    after = np.zeros(n)
    after[n // 2 :] = 1.0
    unit = slope * wp * after  # the score shift of a unit step, level after lower
    left = np.cumsum(unit, axis=-1)[..., k - 1]
    # A drop lowers the level after the split: the centred score before it rises.
    per_unit = splits.frac * np.sum(unit, axis=-1, keepdims=True) - left

    def power(step: float) -> float:
        down, _ = splits.shifted(step * per_unit).statistics(slope, config)
        return float(np.mean(down > critical))

    hi = 0.02
    while power(hi) < 0.9:
        hi *= 2.0
        if hi > MAX_DETECTABLE_LOG:
            return -math.expm1(-MAX_DETECTABLE_LOG)
    lo = 0.0
    for _ in range(12):  # to 1/4096 of the bracket: far below the figure's precision
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if power(mid) < 0.9 else (lo, mid)
    return -math.expm1(-hi)


MAX_DETECTABLE_LOG = 3.0
"""A series that cannot see a 95% drop says so (detectable = 95%) rather than searching on."""


def check_all(
    hourly_series: list[HourlySeries],
    record_series_: list[RecordSeries],
    config: DriftConfig = DriftConfig(),
    totals: Mapping[tuple[str, specs.WorkloadClass], tuple[int, int]] | None = None,
) -> tuple[list[Alarm], list[Coverage]]:
    """Every series tested by the method its data allow, and a coverage line for each.

    Enough hourly bins: the prewhitened hourly CUSUM (fast detection on dense traffic).
    Fewer bins but ``min_records`` records (and at most ``max_records``, which bounds the
    memory of the streamed path): the record-level change point. Otherwise "not enough
    data (have n, need m)". Nothing is skipped without saying so. ``totals``: (records,
    hourly bins) per series when the caller holds the series only in part (streaming).
    """
    by_key = {(s.device_model, s.workload_class): s for s in record_series_}
    hourly_by = {(s.device_model, s.workload_class): s for s in hourly_series}
    if totals is None:
        totals = {
            k: (
                len(by_key[k].z) if k in by_key else 0,
                int(np.isfinite(hourly_by[k].values).sum()) if k in hourly_by else 0,
            )
            for k in set(by_key) | set(hourly_by)
        }
    alarms: list[Alarm] = []
    coverage: list[Coverage] = []
    need = max(config.min_records, 2 * config.min_side + 1)
    for key in sorted(totals):
        count, bins = totals[key]
        hs = hourly_by.get(key)
        target = config.target_drop
        if bins >= config.min_hours and hs is not None:
            alarms += detect(hs, config)
            coverage.append(
                Coverage(
                    *key,
                    Method.HOURLY_CUSUM,
                    bins,
                    config.min_hours,
                    detectable=hourly_detectable(hs, config),
                    target=target,
                )
            )
            continue
        if count > config.max_records:  # a short, busy window: wait for more hours
            coverage.append(
                Coverage(
                    *key, Method.NONE, bins, config.min_hours, unit="hourly bins", target=target
                )
            )
            continue
        rs = by_key.get(key)
        if rs is None or count < need:
            coverage.append(Coverage(*key, Method.NONE, count, need, target=target))
            continue
        alarm, p, detectable = tested_change_point(rs, config)
        if alarm is not None:
            alarms.append(alarm)
        coverage.append(
            Coverage(
                *key,
                Method.RECORD_CHANGE_POINT,
                count,
                need,
                p,
                detectable=detectable,
                target=target,
            )
        )
    return alarms, coverage


def latest_changes(alarms: list[Alarm]) -> Mapping[tuple[str, specs.WorkloadClass], int]:
    """The most recent change hour per (device, class): where the current level begins."""
    out: dict[tuple[str, specs.WorkloadClass], int] = {}
    for a in alarms:
        key = (a.device_model, a.workload_class)
        out[key] = max(out.get(key, a.change_hour), a.change_hour)
    return out


__all__ = [
    "POWER_Z",
    "Alarm",
    "Coverage",
    "Direction",
    "DriftConfig",
    "HourlySeries",
    "Method",
    "RecordSeries",
    "SlowNode",
    "ar_coefficients",
    "change_point",
    "check_all",
    "detect",
    "detect_all",
    "hourly",
    "hourly_detectable",
    "latest_changes",
    "node_effects",
    "pooled_scales",
    "prewhiten",
    "record_score",
    "record_series",
    "slow_nodes",
    "tested_change_point",
]

"""Throughput at the latency target: fit each device's latency curve, invert it at the SLO.

A raw factor compares throughputs at whatever load the records happened to have. A workload
class that declares ``latencyTarget.p99Ms`` sells something else: what a device delivers
*while its p99 latency meets the target*. Per (device model, class, served model, unit),
from the screened cells of :mod:`reconciler.learn.stream` (duplicates counted once, outliers
screened, slow nodes left out — the evidence rules of the raw fit):

- **latency curve** ``p99(b) = a + β·b + γ·b²`` by least squares on cell means weighted by
  their record counts (a step time linear in the batch, plus the quadratic term a knee needs:
  memory pressure, KV-cache eviction);
- **step-time curve** ``b / throughput = a' + β'·b + γ'·b²`` (the mean time one step of a
  batch takes; throughput = b / step, so a saturating throughput is a linear step);
- the largest batch ``b*`` with ``p99(b*) ≤ target`` (the root of the quadratic, kept inside
  the batches the records show: beyond them is a guess, so ``b*`` stops at the largest
  recorded batch and the row says so);
- **throughput at the SLO** ``b* / step(b*)``.

The at-SLO factor of a device is its throughput at the SLO over the reference's, for the same
served model and unit, geometrically averaged over the served models both serve (weighted by
the device's records). Its interval is a node-clustered bootstrap (nodes resampled with
replacement, device and reference independently; seeded from the series name, so the result is
a pure function of the data): the bootstrap sd of the log factor, widened by √(G/(G−1)) and
taken with Student t on G−1 degrees of freedom, G the fewest nodes of device or reference (the
few-cluster correction the raw fit uses). The policy's update rule then decides, exactly as
for raw factors (:func:`reconciler.learn.update.decide`). Pure: no I/O, clock or randomness
beyond the seeded bootstrap.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from reconciler.learn import combine, fit, specs, update
from reconciler.model import documents as docs

BOOTSTRAP = 400
"""Bootstrap replicates; the interval's Monte Carlo error is a few % of its width."""
MIN_BATCHES = 3
"""Distinct batch sizes a curve needs (three coefficients)."""

Group = tuple[str, str, str, str]  # device, class, served model, unit


@dataclass(frozen=True, slots=True)
class Point:
    """One device's throughput at the SLO for one served model (the point estimate)."""

    batch: float
    throughput: float
    capped: bool
    """The target is not reached within the recorded batches: the largest is used."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """The at-SLO factor of one (device, class), or why there is none."""

    device_model: str
    workload_class: str
    target_ms: float
    value: float | None
    log_sd: float
    df: int
    samples: int
    nodes: int
    served_model: str = ""
    throughput: float | None = None
    unit: str = ""
    capped: bool = False
    problem: str = ""

    def interval(self, confidence: float) -> tuple[float, float] | None:
        if self.value is None:
            return None
        q = float(stats.t.ppf(0.5 + confidence / 2.0, max(self.df, 1)))
        return self.value * math.exp(-q * self.log_sd), self.value * math.exp(q * self.log_sd)


# --------------------------------------------------------------------------- curves


def _stats(batch: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted normal-equation pieces X'WX (3×3) and X'Wy of a quadratic in the batch."""
    x = np.stack([np.ones_like(batch), batch, batch * batch], axis=1)
    return (x * w[:, None]).T @ x, (x * w[:, None]).T @ y


def _solve(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray | None:
    coef = _solve_many(xtx[None], xty[None])[0]
    return coef if np.all(np.isfinite(coef)) else None


def _solve_many(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    """Coefficients for a stack of normal equations (k, 3, 3), (k, 3); NaN rows where the
    system is singular (too few distinct batches among the nodes drawn)."""
    with np.errstate(all="ignore"):
        bad = ~np.isfinite(xtx).all(axis=(1, 2)) | (np.linalg.cond(xtx) > 1e13)
    safe = np.where(bad[:, None, None], np.eye(3), xtx)
    coef = np.linalg.solve(safe, np.where(bad[:, None], 0.0, xty)[..., None])[..., 0]
    coef[bad] = np.nan
    return coef


def throughput_at(
    lat: np.ndarray, step: np.ndarray, target: float, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of coefficients (k, 3) of the latency and step-time curves: the largest batch
    in [lo, hi] whose p99 meets ``target``, the throughput there, and whether the batch is
    capped at ``hi``. NaN where even ``lo`` misses the target or a curve is not fitted."""
    a, b, c = lat[:, 0] - target, lat[:, 1], lat[:, 2]
    with np.errstate(all="ignore"):
        p_lo = lat[:, 0] + b * lo + c * lo * lo
        p_hi = lat[:, 0] + b * hi + c * hi * hi
        sq = np.sqrt(np.maximum(b * b - 4 * c * a, 0.0))
        r1, r2 = (-b + sq) / (2 * c), (-b - sq) / (2 * c)
        in1, in2 = (r1 >= lo) & (r1 <= hi), (r2 >= lo) & (r2 <= hi)
        root = np.where(in1 & in2, np.minimum(r1, r2), np.where(in1, r1, np.where(in2, r2, hi)))
        linear = np.abs(c) < 1e-12 * np.maximum(np.abs(b), 1e-300)
        root = np.clip(np.where(linear, -a / b, root), lo, hi)
        capped = p_hi <= target
        batch = np.where(capped, hi, root)
        batch = np.where((p_lo > target) | np.isnan(p_lo) | np.isnan(p_hi), np.nan, batch)
        s = step[:, 0] + step[:, 1] * batch + step[:, 2] * batch * batch
        tput = np.where(s > 0, batch / s, np.nan)
    return batch, tput, capped & np.isfinite(batch)


def max_batch(lat: np.ndarray, target: float, lo: float, hi: float) -> tuple[float, bool] | None:
    """The largest batch in [lo, hi] whose fitted p99 meets ``target``, and whether it is
    capped at ``hi``; None when even ``lo`` misses it."""
    batch, _, capped = throughput_at(
        np.asarray(lat, dtype=float)[None], np.asarray([[0.0, 1.0, 0.0]]), target, lo, hi
    )
    return None if np.isnan(batch[0]) else (float(batch[0]), bool(capped[0]))


# --------------------------------------------------------------------------- learning


@dataclass(frozen=True, slots=True)
class _Series:
    """One (device, class, served, unit): per node, the curves' normal-equation pieces."""

    nodes: tuple[str, ...]
    lat: np.ndarray  # (nodes, 3, 4): X'WX | X'Wy for the p99 curve
    step: np.ndarray  # (nodes, 3, 4) for the step-time curve
    records: np.ndarray  # (nodes,)
    lo: float
    hi: float
    batches: int
    latency_max: float = 0.0
    """Largest cell mean p99: 0 means the records carry no latency at all."""

    def points(
        self, target: float, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`throughput_at` for each row of node weights (k, nodes): the curves refitted
        on the nodes as weighted (1 each: the estimate; bootstrap counts: a draw)."""
        lat = (weights @ self.lat.reshape(len(self.nodes), 12)).reshape(-1, 3, 4)
        step = (weights @ self.step.reshape(len(self.nodes), 12)).reshape(-1, 3, 4)
        return throughput_at(
            _solve_many(lat[:, :, :3], lat[:, :, 3]),
            _solve_many(step[:, :, :3], step[:, :, 3]),
            target,
            self.lo,
            self.hi,
        )

    def point(self, target: float) -> Point | None:
        batch, tput, capped = self.points(target, np.ones((1, len(self.nodes))))
        if not np.isfinite(tput[0]):
            return None
        return Point(float(batch[0]), float(tput[0]), bool(capped[0]))


def _relative_weights(batch: np.ndarray, y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``n / ŷ²`` with ŷ the count-weighted quadratic fit (``n`` alone if it cannot be fitted)."""
    coef = _solve(*_stats(batch, y, n))
    if coef is None:
        return n
    fitted = coef[0] + coef[1] * batch + coef[2] * batch * batch
    floor = max(float(np.min(y[y > 0])) if np.any(y > 0) else 1.0, 1e-12) / 4
    return np.asarray(n / np.maximum(fitted, floor) ** 2, dtype=float)


def _series(cells: pd.DataFrame) -> dict[Group, _Series]:
    """Cells (summed over hours) as per-node normal equations for each group."""
    keys = ["device_model", "workload_class", "served_model", "throughput_unit"]
    out: dict[Group, _Series] = {}
    for key, g in cells.groupby(keys, sort=True, observed=True):
        batch = np.exp(g["log_batch"].to_numpy(dtype=float))
        n = g["n"].to_numpy(dtype=float)
        lat_mean = g["lat"].to_numpy(dtype=float) / n
        step_mean = g["step"].to_numpy(dtype=float) / n
        nodes = tuple(sorted(set(g["node"].astype(str))))
        node_of = g["node"].astype(str).map({v: i for i, v in enumerate(nodes)}).to_numpy()
        # Latency noise is multiplicative (a slower node or window is slower at every batch):
        # weights n / fitted² from a first unweighted pass (feasible GLS), so the large
        # batches' large absolute noise does not drown the curve's low end.
        w_lat, w_step = (
            _relative_weights(batch, lat_mean, n),
            _relative_weights(batch, step_mean, n),
        )
        lat = np.zeros((len(nodes), 3, 4))
        stp = np.zeros((len(nodes), 3, 4))
        rec = np.zeros(len(nodes))
        for i in range(len(nodes)):
            sel = node_of == i
            xtx, xty = _stats(batch[sel], lat_mean[sel], w_lat[sel])
            lat[i, :, :3], lat[i, :, 3] = xtx, xty
            xtx, xty = _stats(batch[sel], step_mean[sel], w_step[sel])
            stp[i, :, :3], stp[i, :, 3] = xtx, xty
            rec[i] = n[sel].sum()
        dm, cls, served, unit = (str(k) for k in key)
        out[(dm, cls, served, unit)] = _Series(
            nodes,
            lat,
            stp,
            rec,
            float(batch.min()),
            float(batch.max()),
            len(set(batch)),
            float(lat_mean.max()),
        )
    return out


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big")


def estimate(
    cells: pd.DataFrame,
    reference: str,
    targets: Mapping[str, float],
    exclude: Sequence[str] = (),
    replicates: int = BOOTSTRAP,
) -> tuple[Estimate, ...]:
    """The at-SLO factor (and the reference's own throughput) of every (device, class) with a
    target, from streamed cells; slow nodes in ``exclude`` are left out."""
    if not targets or not len(cells):
        return ()
    frame = cells[cells["workload_class"].astype(str).isin(list(targets))]
    if exclude:
        frame = frame[~frame["node"].astype(str).isin(list(exclude))]
    keys = ["node", "device_model", "workload_class", "served_model", "throughput_unit"]
    frame = frame.groupby([*keys, "log_batch"], sort=True, observed=True)[
        ["n", "lat", "step"]
    ].sum()
    frame = frame[frame["n"] > 0].reset_index()
    groups = _series(frame)
    out: list[Estimate] = []
    for cls, target in sorted(targets.items()):
        devices = sorted({g[0] for g in groups if g[1] == cls})
        for device in devices:
            out.append(_one(groups, device, cls, reference, target, replicates))
    return tuple(out)


def _one(
    groups: Mapping[Group, _Series],
    device: str,
    cls: str,
    reference: str,
    target: float,
    replicates: int,
) -> Estimate:
    mine = {(g[2], g[3]): s for g, s in groups.items() if g[0] == device and g[1] == cls}
    refs = {(g[2], g[3]): s for g, s in groups.items() if g[0] == reference and g[1] == cls}
    shared = sorted(k for k in mine if k in refs and k[1] in ("tokens/s", "requests/s"))
    samples = int(sum(s.records.sum() for s in mine.values()))
    nodes = len({n for s in mine.values() for n in s.nodes})

    def missing(problem: str) -> Estimate:
        return Estimate(device, cls, target, None, math.inf, 0, samples, nodes, problem=problem)

    silent = [
        name
        for name, series in ((device, mine), (reference, refs))
        if series and all(s.latency_max <= 0 for s in series.values())
    ]
    if silent:
        return missing(
            f"the records carry no latency (latency_p99_ms is 0 on every record of "
            f"{' and '.join(sorted(set(silent)))}); a class with a latency target needs it"
        )

    usable = [
        k for k in shared if mine[k].batches >= MIN_BATCHES and refs[k].batches >= MIN_BATCHES
    ]
    if not usable:
        return missing(
            f"no served model recorded at {MIN_BATCHES}+ batch sizes on both it and {reference}"
        )
    points: dict[tuple[str, str], tuple[Point, Point]] = {}
    for k in usable:
        p, r = mine[k].point(target), refs[k].point(target)
        if p is not None and r is not None:
            points[k] = (p, r)
    if not points:
        return missing(f"p99 above {target:g} ms even at the smallest recorded batch")
    weight = {k: float(mine[k].records.sum()) for k in points}
    total = math.fsum(weight.values())

    def log_factor(pts: Mapping[tuple[str, str], tuple[Point, Point]]) -> float:
        return (
            math.fsum(
                weight[k] * math.log(p.throughput / r.throughput) for k, (p, r) in pts.items()
            )
            / total
        )

    value = math.exp(log_factor(points))
    main = max(points, key=lambda k: (weight[k], k))
    # Node-clustered bootstrap: every replicate draws each side's nodes with replacement.
    rng = np.random.default_rng(_seed(device, cls, reference, f"{target:g}"))
    total_log = np.zeros(replicates)
    for k in points:
        counts = []
        for series in (mine[k], refs[k]):
            n = len(series.nodes)
            w = rng.multinomial(n, np.full(n, 1 / n), size=replicates).astype(float)
            counts.append(series.points(target, w)[1])
        with np.errstate(all="ignore"):
            total_log += weight[k] * np.log(counts[0] / counts[1])
    finite = np.isfinite(total_log)
    draws = total_log[finite] / total
    if len(draws) < replicates * 0.9:
        return missing(
            f"the latency curve cannot be inverted at {target:g} ms in "
            f"{replicates - len(draws)} of {replicates} bootstrap draws (too few nodes or batches)"
        )
    g = min(min(len(mine[k].nodes), len(refs[k].nodes)) for k in points)
    sd = float(np.std(draws, ddof=1)) * math.sqrt(g / max(g - 1, 1))
    p, r = points[main]
    return Estimate(
        device,
        cls,
        target,
        value,
        sd,
        max(g - 1, 1),
        samples,
        nodes,
        served_model=main[0],
        throughput=r.throughput if device == reference else p.throughput,
        unit=main[1],
        capped=any(p.capped or r.capped for p, r in points.values()),
    )


# --------------------------------------------------------------------------- the update rule


@dataclass(frozen=True, slots=True)
class Change:
    """The rule's decision for one at-SLO row, and the row to write (None: nothing moves)."""

    estimate: Estimate
    change: update.FactorChange | None
    row: docs.Factor | None
    note: str = ""

    def render(self) -> str:
        e = self.estimate
        head = f"{e.device_model}/{e.workload_class} at p99 ≤ {e.target_ms:g} ms"
        if self.change is None:
            return f"{head}: {self.note}"
        text = self.change.render().split(": ", 1)[1]
        tput = ""
        if e.throughput is not None:
            tput = f"; {e.throughput:.4g} {e.unit} at the target ({e.served_model})"
        cap = "; target beyond the largest recorded batch (a lower bound)" if e.capped else ""
        return f"{head}: {text}{tput}{cap}"


def decide(
    estimates: Sequence[Estimate],
    published: Sequence[docs.Factor],
    policy: docs.FactorPolicy,
    reference: str,
    records_revision: str,
    held_classes: Mapping[str, str] | None = None,
) -> tuple[Change, ...]:
    """The policy's update rule on each at-SLO estimate, against the published atSLO row at
    the same target (a row learned at another target is a different quantity: replaced).

    ``held_classes``: class → why its reference is in doubt (a drift alarm on the reference,
    :func:`reconciler.learn.adapter.guarded_refit`); nothing of such a class moves, raw or
    at the SLO."""
    rows = {(f.device_model, f.workload_class): f for f in published}
    out: list[Change] = []
    for e in estimates:
        cls = specs.parse_class(e.workload_class)
        if cls is None:
            continue
        hold = (held_classes or {}).get(e.workload_class)
        if hold:
            out.append(Change(e, None, None, f"held: {hold}"))
            continue
        old = rows.get((e.device_model, e.workload_class))
        same_target = (
            old is not None
            and old.latency_target is not None
            and math.isclose(old.latency_target.p99_ms, e.target_ms)
        )
        if e.value is None:
            out.append(Change(e, None, None, f"held: {e.problem}"))
            continue
        if e.device_model == reference:
            out.append(_reference_row(e, old if same_target else None, policy, records_revision))
            continue
        z = float(stats.norm.ppf(0.5 + policy.confidence / 2.0))
        q = float(stats.t.ppf(0.5 + policy.confidence / 2.0, max(e.df, 1)))
        post = combine.Posterior(
            e.device_model,
            cls,
            math.log(e.value),
            e.log_sd * q / z,
            policy.confidence,
            None,
            fit.Estimate(
                e.device_model, cls, math.log(e.value), e.log_sd, e.df, e.samples, e.nodes
            ),
            0.0,
        )
        ch = update.decide(post, old if same_target else None, policy, (), records_revision)
        if ch.decision is update.Decision.NEW and ch.reason.startswith("spec prior"):
            out.append(Change(e, ch, None, ch.reason.removeprefix("spec prior; ")))
            continue
        row = None
        if ch.decision.changes_value:
            interval = (
                ch.interval if ch.interval and ch.interval[0] <= ch.new <= ch.interval[1] else None
            )
            row = _row(e, ch.new, interval, records_revision)
        out.append(Change(e, ch, row))
    # The unit's row moves with its class: rewritten only when it is new or a factor of the
    # class moves, so fresh records alone never make a change (exit 1) out of noise.
    moved = {c.estimate.workload_class for c in out if c.row is not None and c.change is not None}
    return tuple(
        Change(c.estimate, None, None, "unchanged (no atSLO factor of the class moves)")
        if c.change is None
        and c.row is not None
        and c.estimate.workload_class not in moved
        and (c.estimate.device_model, c.estimate.workload_class) in rows
        else c
        for c in out
    )


def _reference_row(
    e: Estimate, old: docs.Factor | None, policy: docs.FactorPolicy, records_revision: str
) -> Change:
    """The reference is 1 by definition; its row carries the unit's throughput at the target
    (tokens per CU-hour, for cost per token), written when the evidence suffices."""
    if e.samples < policy.min_samples or e.nodes < policy.min_nodes:
        return Change(
            e, None, None, f"held: {e.samples} samples / {e.nodes} nodes below the policy's minimum"
        )
    if old is not None and old.records_revision == records_revision:
        return Change(e, None, None, "unchanged (already published from these records)")
    row = _row(e, 1.0, None, records_revision)
    if old is not None and old.throughput == row.throughput:
        return Change(e, None, None, "unchanged")
    return Change(e, None, row, f"the unit: {row.throughput:.4g} {e.unit} at the target")


def _row(
    e: Estimate, value: float, interval: tuple[float, float] | None, records_revision: str
) -> docs.Factor:
    bounds = (
        (math.floor(interval[0] * 1e4) / 1e4, math.ceil(interval[1] * 1e4) / 1e4)
        if interval
        else None
    )
    value = float(f"{value:.4g}")
    if bounds is not None and not (bounds[0] <= value <= bounds[1]):
        bounds = None
    return docs.Factor(
        device_model=e.device_model,
        workload_class=e.workload_class,
        value=value,
        source=docs.FactorSource.LEARNED,
        samples=e.samples,
        interval=bounds,
        records_revision=records_revision or None,
        basis=docs.FactorBasis.AT_SLO,
        latency_target=docs.LatencyTarget(p99_ms=e.target_ms),
        throughput=float(f"{e.throughput:.4g}") if e.throughput is not None else None,
        throughput_unit=e.unit if e.throughput is not None else None,  # type: ignore[arg-type]
        served_model=e.served_model if e.throughput is not None else None,
    )


def write_rows(
    table: docs.FactorTable | None, name: str, reference: str, rows: Sequence[docs.Factor]
) -> docs.FactorTable:
    """The bot table with each at-SLO row replacing its (model, class) atSLO row or appended
    (sorted), at schemaVersion 2; raw rows untouched."""
    new = {(r.device_model, r.workload_class): r for r in rows}
    out: list[docs.Factor] = []
    seen: set[tuple[str, str | None]] = set()
    for f in table.spec.factors if table is not None else []:
        key = (f.device_model, f.workload_class)
        if f.basis is docs.FactorBasis.AT_SLO and key in new:
            out.append(new[key])
            seen.add(key)
        else:
            out.append(f)
    out += [r for k, r in sorted(new.items(), key=lambda kv: str(kv[0])) if k not in seen]
    metadata = (
        table.metadata.model_dump(by_alias=True, exclude_none=True, mode="json")
        if table is not None
        else {"name": name}
    )
    return docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": metadata,
            "spec": {
                "schemaVersion": 2,
                "referenceModel": table.spec.reference_model if table is not None else reference,
                "factors": [
                    f.model_dump(by_alias=True, exclude_none=True, mode="json") for f in out
                ],
            },
        }
    )


def render(changes: Sequence[Change]) -> str:
    """The commit message's section: every at-SLO decision, one line each."""
    if not changes:
        return ""
    lines = ["", "Throughput at the SLO (factor = throughput at the p99 target / the reference's):"]
    lines += [f"  {c.render()}" for c in changes]
    return "\n".join(lines) + "\n"


__all__ = ["Change", "Estimate", "decide", "estimate", "max_batch", "render", "write_rows"]

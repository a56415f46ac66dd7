"""A synthetic inference-record generator with known true factors, for tests and benchmarks.

The data-generating mechanism follows factors.md §4 so the learner is judged against a
truth it cannot see::

    log tput = α[served model, class] + 0.35·log batch + log f[device, class](t)
               + u[node] + slow[node] + a[device, hour] + ε

with node spread ``u ~ N(0, node_sd²)``, one slow node, hourly AR(1) noise ``a`` per device
model, heteroscedastic Student-t noise ``ε`` (wider at small batches), a share of gross
outliers (×0.3 throttling or ×3 mis-attribution), a workload-mix shift that changes which
classes, models and batch sizes are served (it must not alarm), and real steps (a driver
regression, a runtime upgrade) at known times. Pure: everything comes from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from reconciler.learn import specs
from reconciler.learn.records import RejectReason

WC = specs.WorkloadClass

TRUE_FACTORS: Mapping[tuple[str, WC], float] = {
    (model, cls): value
    for model, row in {
        # prefill, decode, embedding: realised ratios, deliberately off the spec roofline
        "A100-SXM4-80GB": (1.0, 1.0, 1.0),
        "H100-SXM5-80GB": (2.6, 1.55, 2.4),
        "L40S": (1.05, 0.42, 1.1),
        "BR104": (1.35, 0.38, 1.5),
        "BI-V100": (0.40, 0.52, 0.42),
        "BI-V150": (0.55, 0.33, 0.55),
        "Z100": (0.08, 0.45, 0.09),  # decode-fast / prefill-slow (gfx906, no matrix cores)
        "K100": (0.12, 0.50, 0.13),
        "Ascend-910B2": (0.95, 0.72, 0.95),
        "BR100": (2.3, 0.74, 2.5),  # in the example cluster, not in the default scenario
    }.items()
    for cls, value in zip(WC, row, strict=True)
}
"""The truth before any step: speed relative to A100-SXM4-80GB per workload class."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    base: Mapping[WC, float]  # throughput on the reference at batch 1
    memory_gb: float  # devices with less memory cannot serve it
    unit: Mapping[WC, str]


SERVED_MODELS: tuple[ServedModel, ...] = (
    ServedModel("llama3-8b", {WC.PREFILL: 9000.0, WC.DECODE: 90.0}, 24, {}),
    ServedModel("qwen2.5-14b", {WC.PREFILL: 5200.0, WC.DECODE: 55.0}, 32, {}),
    ServedModel("qwen2.5-32b", {WC.PREFILL: 2300.0, WC.DECODE: 28.0}, 64, {}),
    ServedModel("bge-large", {WC.EMBEDDING: 420.0}, 4, {WC.EMBEDDING: "requests/s"}),
    ServedModel("e5-mistral-7b", {WC.EMBEDDING: 65.0}, 24, {WC.EMBEDDING: "requests/s"}),
)

CANONICAL_MODELS: tuple[str, ...] = (
    "A100-SXM4-80GB",
    "Ascend-910B2",
    "BI-V100",
    "BI-V150",
    "BR104",
    "H100-SXM5-80GB",
    "K100",
    "L40S",
    "Z100",
)
"""The device models of the default scenario (the project's canonical nine)."""

BATCHES: Mapping[WC, tuple[int, ...]] = {
    WC.PREFILL: (1, 2, 4, 8),
    WC.DECODE: (1, 4, 8, 16, 32, 64),
    WC.EMBEDDING: (8, 16, 32, 64),
}
BATCH_SLOPE = 0.35


@dataclass(frozen=True, slots=True)
class Step:
    """A real change of speed: ``relative`` = -0.03 is a 3% regression from ``at`` on."""

    device_model: str
    workload_class: WC | None  # None: every class of the device
    at: datetime
    relative: float


@dataclass(frozen=True, slots=True)
class Scenario:
    start: datetime = datetime(2026, 10, 28, tzinfo=UTC)
    days: float = 30.0
    records: int = 100_000
    device_models: tuple[str, ...] = CANONICAL_MODELS
    nodes_per_model: int = 8
    reference_nodes: int = 16
    devices_per_node: int = 8
    noise_sigma: float = 0.10  # scale of the t noise at batch 1 (t3 sd is √3 times this)
    t_df: float = 3.0
    outlier_rate: float = 0.05
    node_sd: float = 0.05
    ar_phi: float = 0.5
    ar_sd: float = 0.01  # marginal sd of the hourly AR(1) noise, log units
    slow_node_deficit: float = 0.25  # the first node of ``slow_node_model`` is this much slower
    slow_node_model: str | None = "BR104"
    class_mix: Mapping[WC, float] = field(
        default_factory=lambda: {WC.PREFILL: 0.3, WC.DECODE: 0.6, WC.EMBEDDING: 0.1}
    )
    mix_shift_at_day: float | None = 15.0
    shifted_class_mix: Mapping[WC, float] = field(
        default_factory=lambda: {WC.PREFILL: 0.5, WC.DECODE: 0.3, WC.EMBEDDING: 0.2}
    )
    steps: tuple[Step, ...] = ()
    bad_rows: int = 0  # rows corrupted on purpose, spread over the reject reasons

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True, slots=True)
class Truth:
    factors: Mapping[tuple[str, WC], float]  # current speeds: after every step
    initial: Mapping[tuple[str, WC], float]
    steps: tuple[Step, ...]
    slow_nodes: tuple[str, ...]
    bad_rows: Mapping[RejectReason, int]


def default_steps(start: datetime) -> tuple[Step, ...]:
    """The two real changes the acceptance test must find: −3% and +12%."""
    return (
        Step("L40S", WC.DECODE, start + timedelta(days=10, hours=5), -0.03),
        Step("H100-SXM5-80GB", WC.PREFILL, start + timedelta(days=20, hours=13), +0.12),
    )


def node_names(model: str, count: int) -> list[str]:
    return [f"{model.lower()}-n{i:02d}" for i in range(count)]


def generate(
    scenario: Scenario, seed: int, part: tuple[int, int] | None = None
) -> tuple[pd.DataFrame, Truth]:
    """Records as a DataFrame in the documented columns, and the truth behind them.

    ``part=(i, k)``: only the records of the i-th of k equal time slices (``records / k``
    of them), drawn from their own stream while the fleet (node effects, hourly noise)
    stays the seed's: generating a huge window slice by slice gives one consistent fleet
    in bounded memory.
    """
    rng = np.random.default_rng(seed)
    rec = rng if part is None else np.random.default_rng([seed, part[0], part[1]])
    sc = scenario
    n = sc.records if part is None else sc.records // part[1]
    models = list(sc.device_models)
    classes = list(WC)

    # Fleet: nodes per device model, their effects, one slow node.
    node_model: list[int] = []
    node_label: list[str] = []
    for model_idx, m in enumerate(models):
        count = sc.reference_nodes if m == specs.REFERENCE_MODEL else sc.nodes_per_model
        node_label += node_names(m, count)
        node_model += [model_idx] * count
    node_model_arr = np.asarray(node_model)
    node_effect = rng.normal(0.0, sc.node_sd, len(node_label))
    slow: list[str] = []
    if sc.slow_node_model in models:
        first = node_model.index(models.index(sc.slow_node_model))
        node_effect[first] += math.log(1.0 - sc.slow_node_deficit)
        slow.append(node_label[first])

    # Time and the hourly AR(1) noise per device model.
    span = sc.days * 86400.0
    lo, hi = (
        (0.0, span) if part is None else (span * part[0] / part[1], span * (part[0] + 1) / part[1])
    )
    t = np.sort(rec.uniform(lo, hi, n))
    hours = math.ceil(sc.days * 24) + 1
    ar = _ar1(rng, len(models), hours, sc.ar_phi, sc.ar_sd)
    hour_idx = (t // 3600).astype(np.int64)
    shifted = (
        t >= sc.mix_shift_at_day * 86400.0 if sc.mix_shift_at_day is not None else np.zeros(n, bool)
    )

    # Which device serves what: model uniform, node uniform within the model.
    mi = rec.integers(0, len(models), n)
    nodes_of = [np.flatnonzero(node_model_arr == k) for k in range(len(models))]
    node_counts = np.array([len(x) for x in nodes_of])
    node_pick = (rec.random(n) * node_counts[mi]).astype(np.int64)
    node_offsets = np.concatenate([[0], np.cumsum(node_counts)[:-1]])
    node = node_offsets[mi] + node_pick
    dev_slot = rec.integers(0, sc.devices_per_node, n)

    p_before = np.array([sc.class_mix.get(c, 0.0) for c in classes])
    p_after = np.array([sc.shifted_class_mix.get(c, 0.0) for c in classes])
    u = rec.random(n)
    ci = np.where(
        shifted,
        np.searchsorted(np.cumsum(p_after / p_after.sum()), u, side="right"),
        np.searchsorted(np.cumsum(p_before / p_before.sum()), u, side="right"),
    )
    ci = np.minimum(ci, len(classes) - 1)

    # Served model: among those of the class that fit the device; the mix shift favours
    # the larger models, which must not look like a slowdown.
    mem = np.array([specs.SPECS[m].memory_gb for m in models])
    served_idx = np.empty(n, dtype=np.int64)
    base = np.empty(n)
    u2 = rec.random(n)
    for k, cls in enumerate(classes):
        cand = [j for j, s in enumerate(SERVED_MODELS) if cls in s.base]
        for dm in range(len(models)):
            sel = (ci == k) & (mi == dm)
            fits = [j for j in cand if SERVED_MODELS[j].memory_gb <= mem[dm]]
            w_before = np.ones(len(fits))
            w_after = np.arange(1, len(fits) + 1, dtype=float) ** 1.5
            for mask, w in ((sel & ~shifted, w_before), (sel & shifted, w_after)):
                pick = np.searchsorted(np.cumsum(w / w.sum()), u2[mask], side="right")
                chosen = np.asarray(fits)[np.minimum(pick, len(fits) - 1)]
                served_idx[mask] = chosen
                base[mask] = [SERVED_MODELS[j].base[cls] for j in chosen]

    # Batch sizes: the shift also moves decode toward larger batches.
    batch = np.empty(n)
    for k, cls in enumerate(classes):
        opts = np.asarray(BATCHES[cls], dtype=float)
        for mask, tilt in ((ci == k) & ~shifted, 0.0), ((ci == k) & shifted, 1.0):
            w = np.exp(tilt * np.linspace(0, 1.5, len(opts)))
            batch[mask] = rec.choice(opts, int(mask.sum()), p=w / w.sum())
    log_batch = np.log(batch)

    # True factor at each record's time, steps included.
    log_f = np.empty(n)
    for k, cls in enumerate(classes):
        for dm, m in enumerate(models):
            sel = (ci == k) & (mi == dm)
            log_f[sel] = math.log(TRUE_FACTORS[(m, cls)])
    for st in sc.steps:
        if st.device_model not in models:
            continue
        after = t >= (st.at - sc.start).total_seconds()
        sel = (mi == models.index(st.device_model)) & after
        if st.workload_class is not None:
            sel &= ci == classes.index(st.workload_class)
        log_f[sel] += math.log1p(st.relative)

    scale = sc.noise_sigma * np.clip(1.5 - 0.15 * log_batch, 0.5, None)
    eps = scale * rec.standard_t(sc.t_df, n)
    log_tput = (
        np.log(base)
        + BATCH_SLOPE * log_batch
        + log_f
        + node_effect[node]
        + ar[mi, np.minimum(hour_idx, hours - 1)]
        + eps
    )
    out = rec.random(n) < sc.outlier_rate
    log_tput[out] += np.where(rec.random(int(out.sum())) < 0.5, math.log(0.3), math.log(3.0))
    tput = np.exp(log_tput)

    p50 = 1000.0 * batch / tput * np.exp(rec.normal(0.0, 0.05, n))
    p99 = p50 * (1.3 + rec.exponential(0.4, n))

    device_uuid = np.char.add(
        np.char.add("GPU-", np.asarray(node_label, dtype=str)[node]),
        np.char.add("-", dev_slot.astype(str)),
    )
    vendor = np.asarray([specs.SPECS[m].vendor for m in models])
    unit = np.asarray(
        [
            SERVED_MODELS[j].unit.get(cls, "tokens/s")
            for j in range(len(SERVED_MODELS))
            for cls in classes
        ]
    ).reshape(len(SERVED_MODELS), len(classes))
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(sc.start) + pd.to_timedelta(np.round(t, 3), unit="s"),
            "node": pd.Categorical.from_codes(node, categories=node_label),
            "device_uuid": pd.Categorical(device_uuid),
            "device_model": pd.Categorical.from_codes(mi, categories=models),
            "vendor": pd.Categorical(vendor[mi]),
            "served_model": pd.Categorical.from_codes(
                served_idx, categories=[s.name for s in SERVED_MODELS]
            ),
            "workload_class": pd.Categorical.from_codes(ci, categories=[c.value for c in classes]),
            "batch_size": batch.astype(np.int64),
            "throughput": np.round(tput, 4),
            "throughput_unit": pd.Categorical(unit[served_idx, ci]),
            "latency_p50_ms": np.round(p50, 3),
            "latency_p99_ms": np.round(p99, 3),
        }
    )
    bad = _corrupt(frame, rec, sc.bad_rows, sc.end) if sc.bad_rows else {}

    current = dict(TRUE_FACTORS)
    for st in sc.steps:
        for cls in classes if st.workload_class is None else [st.workload_class]:
            key = (st.device_model, cls)
            current[key] = current[key] * (1.0 + st.relative)
    truth = Truth(
        factors={k: v for k, v in current.items() if k[0] in models},
        initial={k: v for k, v in TRUE_FACTORS.items() if k[0] in models},
        steps=sc.steps,
        slow_nodes=tuple(slow),
        bad_rows=bad,
    )
    return frame, truth


def _ar1(rng: np.random.Generator, rows: int, hours: int, phi: float, sd: float) -> np.ndarray:
    innov = rng.normal(0.0, sd * math.sqrt(1.0 - phi * phi), (rows, hours))
    out = np.empty((rows, hours))
    out[:, 0] = rng.normal(0.0, sd, rows)
    for h in range(1, hours):
        out[:, h] = phi * out[:, h - 1] + innov[:, h]
    return out


def _corrupt(
    frame: pd.DataFrame, rng: np.random.Generator, count: int, end: datetime
) -> dict[RejectReason, int]:
    """Break ``count`` rows, an equal share per reason; returns what was injected."""
    kinds = (
        RejectReason.MISSING_FIELD,
        RejectReason.BAD_THROUGHPUT,
        RejectReason.UNKNOWN_DEVICE,
        RejectReason.FUTURE_TIMESTAMP,
    )
    rows = rng.choice(len(frame), count, replace=False)
    injected: dict[RejectReason, int] = {}
    for k, kind in enumerate(kinds):
        idx = rows[k :: len(kinds)]
        injected[kind] = len(idx)
        if kind is RejectReason.MISSING_FIELD:
            frame["node"] = frame["node"].astype(object)
            frame.loc[idx, "node"] = None
        elif kind is RejectReason.BAD_THROUGHPUT:
            half = len(idx) // 2
            frame.loc[idx[:half], "throughput"] = -1.0
            frame.loc[idx[half:], "throughput"] = np.nan
        elif kind is RejectReason.UNKNOWN_DEVICE:
            frame["device_model"] = frame["device_model"].astype(object)
            frame.loc[idx, "device_model"] = "MYSTERY-9000"
        else:
            frame.loc[idx, "timestamp"] = pd.Timestamp(end) + pd.Timedelta(days=2)
    for col in ("node", "device_model"):
        frame[col] = frame[col].astype("category")
    return injected


__all__ = [
    "CANONICAL_MODELS",
    "SERVED_MODELS",
    "TRUE_FACTORS",
    "Scenario",
    "Step",
    "Truth",
    "default_steps",
    "generate",
    "node_names",
]


# ------------------------------------------------------------------ latency curves (SLO)


@dataclass(frozen=True, slots=True)
class LatencyCurve:
    """A device's mean step time for a batch: ``a + b·batch + c·batch²`` milliseconds.

    Throughput is ``1000·batch / step`` tokens/s and the window's p99 is ``P99_RATIO·step``, so
    the device's throughput at a p99 target T is ``1000·b*·P99_RATIO / T`` with ``b*`` the
    batch whose step is ``T / P99_RATIO``: the at-SLO truth is exact, not simulated.
    """

    a: float
    b: float
    c: float

    def step(self, batch: np.ndarray | float) -> np.ndarray | float:
        return self.a + self.b * batch + self.c * batch * batch

    def batch_at(self, step: float) -> float:
        if self.c == 0:
            return (step - self.a) / self.b
        return (-self.b + math.sqrt(self.b**2 + 4 * self.c * (step - self.a))) / (2 * self.c)

    def throughput_at_slo(self, p99_ms: float) -> float:
        return 1000.0 * self.batch_at(p99_ms / P99_RATIO) * P99_RATIO / p99_ms


P99_RATIO = 1.3
SLO_CURVES: Mapping[str, LatencyCurve] = {
    "A100-SXM4-80GB": LatencyCurve(15.0, 0.8, 0.002),
    # Fast under load (higher throughput at batch 32 than L40S) but a high latency floor and
    # a quadratic knee: it loses at a tight p99 target and wins at a loose one.
    "BR104": LatencyCurve(30.0, 0.4, 0.004),
    # Slower under load, flat (no knee), low latency floor.
    "L40S": LatencyCurve(12.0, 1.6, 0.0),
}
SLO_BATCHES: tuple[int, ...] = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 160, 192)
TIGHT_P99_MS = 45.0
LOOSE_P99_MS = 180.0


def slo_truth(p99_ms: float, reference: str = specs.REFERENCE_MODEL) -> dict[str, float]:
    """True at-SLO factors (device throughput at the target / the reference's)."""
    ref = SLO_CURVES[reference].throughput_at_slo(p99_ms)
    return {m: c.throughput_at_slo(p99_ms) / ref for m, c in SLO_CURVES.items()}


def generate_slo(
    seed: int,
    records_per_model: int = 3000,
    nodes_per_model: int = 8,
    node_sd: float = 0.03,
    noise_sd: float = 0.06,
    slow_node_model: str | None = "L40S",
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
    days: float = 14.0,
) -> pd.DataFrame:
    """Decode records of :data:`SLO_CURVES` devices in the documented columns.

    Each node's step time is its curve times ``exp(u)`` (node spread ``u``; one node of
    ``slow_node_model`` 25% slower, which the slow-node screen must exclude); per record the
    throughput and the p99 carry independent multiplicative noise of mean 1, so the mean step
    time and mean p99 at a batch are exactly the curve's. Pure: everything comes from ``seed``.
    """
    rng = np.random.default_rng(seed)
    frames = []
    for model, curve in SLO_CURVES.items():
        nodes = node_names(model, nodes_per_model)
        u = rng.normal(0.0, node_sd, nodes_per_model)
        if model == slow_node_model:
            u[0] += -math.log(0.75)
        n = records_per_model
        node = rng.integers(0, nodes_per_model, n)
        batch = rng.choice(np.asarray(SLO_BATCHES, dtype=float), n)
        step = np.asarray(curve.step(batch)) * np.exp(u[node])
        # Mean-one noise: lognormal with the -σ²/2 correction.
        e1 = np.exp(rng.normal(-(noise_sd**2) / 2, noise_sd, n))
        e2 = np.exp(rng.normal(-((1.5 * noise_sd) ** 2) / 2, 1.5 * noise_sd, n))
        tput = 1000.0 * batch / step * (1.0 / e1)  # b / tput = step · e1 / 1000: mean step
        p99 = P99_RATIO * step * e2
        p50 = np.minimum(step, p99)
        t = np.sort(rng.uniform(0, days * 86400.0, n))
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(start) + pd.to_timedelta(np.round(t, 3), unit="s"),
                    "node": np.asarray(nodes)[node],
                    "device_uuid": [f"GPU-{nodes[k]}-{k % 8}" for k in node],
                    "device_model": model,
                    "vendor": specs.SPECS[model].vendor,
                    "served_model": "llama3-8b",
                    "workload_class": WC.DECODE.value,
                    "batch_size": batch.astype(np.int64),
                    "throughput": np.round(tput, 6),
                    "throughput_unit": "tokens/s",
                    "latency_p50_ms": np.round(p50, 6),
                    "latency_p99_ms": np.round(p99, 6),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)

"""A self-contained HTML report of one learning run: tables plus PNG plots inlined as base64.

Sections: records and rejects; learned factors with intervals per class; prior vs learned;
factor history (from ``git log`` of the table); drift alarms with their hourly series;
slow nodes; and, per pool, how well published CU predicts the throughput the records
show. Rendering is pure (``render`` returns a string); ``write`` is the only I/O.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from reconciler.learn import adapter, combine, fidelity, specs, update, writeback
from reconciler.model import documents as docs
from reconciler.model import observed as obs
from reconciler.model import selection

Key = tuple[str, specs.WorkloadClass]


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    models: tuple[str, ...]
    mix: Mapping[str, float]
    observed: bool = False  # models from the devices the selector takes, not its model list


def render(
    outcome: adapter.Outcome,
    published: docs.FactorTable | None,
    *,
    history: Sequence[writeback.HistoryEntry] = (),
    pools: Sequence[Pool] = (),
    title: str = "cu-reconciler factor report",
) -> str:
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>Learned at {_e(outcome.now.astimezone(UTC).isoformat())}; reference device "
        f"<b>{_e(outcome.reference_model)}</b>; records {_e(outcome.records_revision)}.</p>",
        _records_section(outcome),
        "<h2>Throughput by device model (learned factor, 95% interval)</h2>",
        _img(_plot_factors(outcome)),
        _factor_table(outcome, published),
        "<h2>Prior vs learned factors</h2>",
        _img(_plot_prior_vs_learned(outcome)),
        "<h2>Factor history</h2>",
        _history_section(history),
        "<h2>Drift checks</h2>",
        _coverage_section(outcome),
        "<h2>Drift alarms</h2>",
        _drift_section(outcome),
        "<h2>Slow nodes</h2>",
        _slow_section(outcome),
        "<h2>How well CU predicts delivered throughput, per pool</h2>",
        _pool_section(outcome, published, pools),
    ]
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def write(out_dir: Path, text: str, name: str = "report.html") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------- sections


def _records_section(outcome: adapter.Outcome) -> str:
    rep = outcome.reject_report
    rows = [
        ("read", rep.total),
        ("used", rep.accepted),
        ("screened as outliers", outcome.fit.screened),
    ]
    rows += [(f"rejected: {r.value}", n) for r, n in rep.by_reason.items()]
    return "<h2>Records</h2>" + _table(["", "rows"], [[a, str(b)] for a, b in rows], cls="records")


def _factor_table(outcome: adapter.Outcome, published: docs.FactorTable | None) -> str:
    by_key = {(c.device_model, c.workload_class): c for c in outcome.proposal.changes}
    rows = []
    for key, post in sorted(outcome.posteriors.items()):
        lo, hi = post.interval()
        old = update.published(published, key)
        ch = by_key.get(key)
        rows.append(
            [
                key[0],
                key[1].value,
                f"{post.prior.value:.4g}" if post.prior else "—",
                f"{post.value:.4g}",
                f"[{lo:.4g}, {hi:.4g}]",
                str(post.estimate.samples if post.estimate else 0),
                str(post.estimate.nodes if post.estimate else 0),
                f"{old.value:.4g}" if old else "—",
                f"{ch.new:.4g}" if ch else "1",
                ch.decision.value if ch else "reference",
            ]
        )
    return _table(
        [
            "device model",
            "class",
            "spec prior",
            "learned",
            "95% interval",
            "samples",
            "nodes",
            "published",
            "proposed",
            "decision",
        ],
        rows,
        cls="factors",
    )


def _history_section(history: Sequence[writeback.HistoryEntry]) -> str:
    if not history:
        return "<p>No commits of the factor table yet.</p>"
    rows = [[h.sha[:10], h.when.isoformat(), _e(h.summary)] for h in history]
    return _img(_plot_history(history)) + _table(["commit", "date", "summary"], rows, cls="history")


def _drift_section(outcome: adapter.Outcome) -> str:
    if not outcome.alarms:
        return "<p>No drift alarms.</p>"
    rows = [
        [
            a.device_model,
            a.workload_class.value,
            a.direction.value,
            f"{a.relative_change:+.1%}",
            _hour(a.change_hour),
            _hour(a.alarm_hour),
        ]
        for a in outcome.alarms
    ]
    return _img(_plot_drift(outcome)) + _table(
        ["device model", "class", "direction", "change", "from", "alarm at"], rows, cls="alarms"
    )


def _coverage_section(outcome: adapter.Outcome) -> str:
    rows = [
        [
            c.device_model,
            c.workload_class.value,
            "tested" if c.tested else "not enough data",
            c.method.value,
            str(c.have),
            str(c.need),
            f"{c.p_value:.3f}" if c.p_value is not None else "—",
            f"{c.detectable:.1%}" if c.detectable is not None else "—",
            f"CANNOT see a {c.target:.0%} step" if c.blind else f"sees a {c.target:.0%} step",
        ]
        for c in outcome.coverage
    ]
    blind = sum(1 for c in outcome.coverage if c.blind)
    note = (
        f"<p>{blind} of {len(outcome.coverage)} series cannot see the policy's "
        f"{outcome.coverage[0].target:.0%} step with 90% power.</p>"
        if blind
        else ""
    )
    return note + _table(
        [
            "device model",
            "class",
            "status",
            "method",
            "have",
            "need",
            "p",
            "smallest step seen (90% power)",
            "the policy's step",
        ],
        rows,
        cls="coverage",
    )


def _slow_section(outcome: adapter.Outcome) -> str:
    plot = _img(_plot_nodes(outcome)) if outcome.nodes else "<p>No per-node data.</p>"
    if not outcome.slow_nodes:
        return plot + "<p>No node underperforms its model.</p>"
    rows = [
        [s.node, s.device_model, f"{s.relative:+.1%}", f"{s.z:.1f}", str(s.records)]
        for s in outcome.slow_nodes
    ]
    return plot + _table(
        ["node", "device model", "vs its model", "robust z", "records"], rows, cls="slow-nodes"
    )


def _pool_section(
    outcome: adapter.Outcome, published: docs.FactorTable | None, pools: Sequence[Pool]
) -> str:
    """Per pool: its device models, the factor in force for each (the published table the
    planner reads), what the records say, and the quota gap. A model without records shows
    its published value only: a spec prior is never passed off as a measurement."""
    learned = {k: p.value for k, p in outcome.posteriors.items() if p.learned}
    models = sorted({k[0] for k in outcome.posteriors})
    if not pools:
        pools = [
            Pool("all devices", tuple(models), {"prefill": 0.3, "decode": 0.6, "embedding": 0.1})
        ]
    pub = adapter.table_values(published) if published is not None else {}
    proposed = adapter.table_values(outcome.proposal.table)
    rows = []
    members_rows = []
    figs = []
    for pool in pools:
        in_force = fidelity.device_values(pub, list(pool.models), pool.mix)
        measured = fidelity.device_values(learned, list(pool.models), pool.mix)
        for m in pool.models:
            members_rows.append(
                [
                    pool.name,
                    m,
                    f"{in_force[m]:.4g}" if m in in_force else "not in the table",
                    f"{measured[m]:.4g}" if m in measured else "no records",
                    "observed devices" if pool.observed else "selector",
                ]
            )
        members = [m for m in pool.models if m in measured]
        if members:
            figs.append(_plot_pool(pool, list(pool.models), measured, in_force))
        if not members:
            continue
        # one device of each model, guarantees of half the pool: where the gap shows
        tables = {"published": pub, "proposed": proposed, "whole GPUs": {k: 1.0 for k in learned}}
        for label, table in tables.items():
            values = fidelity.device_values(table, members, pool.mix)
            if set(values) != set(members):
                continue
            fid = fidelity.simulate(
                members * 8,
                values,
                measured,
                guarantee_devices=sum(values[m] for m in members) * 2,
                trials=200,
                seed=0,
                label=label,
            )
            rows.append(
                [pool.name, label, f"{fid.median:.1%}", f"{fid.p95:.1%}", f"{fid.worst:.1%}"]
            )
    return (
        _table(
            ["pool", "device model", "CU per device in force", "measured", "models from"],
            members_rows,
            cls="pool-models",
        )
        + "".join(_img(f) for f in figs)
        + _table(["pool", "factors", "median gap", "p95 gap", "worst gap"], rows, cls="pools")
        + (
            "<p>Gap = |throughput delivered / throughput promised − 1| for a tenant whose "
            "guarantee is filled from a random order of the pool's devices with records; the "
            "learned factors stand in for the delivered throughput.</p>"
        )
    )


# ---------------------------------------------------------------------------------- plots


def _plot_factors(outcome: adapter.Outcome) -> Figure:
    classes = list(specs.WorkloadClass)
    fig, axes = plt.subplots(1, len(classes), figsize=(13, 4.2), sharey=False)
    for ax, cls in zip(np.atleast_1d(axes), classes, strict=True):
        items = sorted((k[0], p) for k, p in outcome.posteriors.items() if k[1] is cls)
        names = [n for n, _ in items]
        vals = np.asarray([p.value for _, p in items])
        lo = np.asarray([p.interval()[0] for _, p in items])
        hi = np.asarray([p.interval()[1] for _, p in items])
        y = np.arange(len(items))
        learned = np.asarray([p.learned for _, p in items], dtype=bool)
        for mask, style, label in ((learned, "o", "learned"), (~learned, "o", "spec prior only")):
            if mask.any():
                ax.errorbar(
                    vals[mask],
                    y[mask],
                    xerr=[(vals - lo)[mask], (hi - vals)[mask]],
                    fmt=style,
                    capsize=3,
                    label=label,
                    color=None if label == "learned" else "grey",
                    mfc=None if label == "learned" else "white",
                )
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(1.0, color="grey", lw=0.8, ls="--", label=f"{outcome.reference_model} = 1")
        if not items:
            _no_data(ax, f"no records of class {cls.value}")
        ax.set_title(f"{cls.value}: speed vs {outcome.reference_model}", fontsize=9)
    _legend_below(fig, axes)
    return fig


def _plot_prior_vs_learned(outcome: adapter.Outcome) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 5))
    for cls, marker in zip(specs.WorkloadClass, "os^", strict=True):
        pts = [
            (p.prior.value, p.value)
            for k, p in outcome.posteriors.items()
            if k[1] is cls and p.prior is not None and p.learned and k[0] != outcome.reference_model
        ]
        if pts:
            x, y = zip(*pts, strict=True)
            ax.scatter(x, y, marker=marker, label=cls.value)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lims = [0.03, 5.0]
    ax.plot(lims, lims, color="grey", lw=0.8, ls="--", label="learned = prior")
    ax.set_xlabel("spec prior factor")
    ax.set_ylabel("learned factor")
    if not any(
        p.prior is not None and p.learned and k[0] != outcome.reference_model
        for k, p in outcome.posteriors.items()
    ):
        _no_data(ax, "no learned factor with a spec prior")
    _legend_right(fig, ax)
    return fig


def _plot_history(history: Sequence[writeback.HistoryEntry]) -> Figure:
    fig, ax = plt.subplots(figsize=(10, 4))
    series: dict[str, list[tuple[int, float]]] = {}
    for i, h in enumerate(history):
        for f in h.table.spec.factors:
            series.setdefault(f"{f.device_model}/{f.workload_class or '*'}", []).append(
                (i, f.value)
            )
    colours = distinct_colours(len(series))
    for (label, pts), colour, i in zip(
        sorted(series.items()), colours, range(len(series)), strict=True
    ):
        x, y = zip(*pts, strict=True)
        ax.plot(x, y, marker=_MARKERS[i % len(_MARKERS)], lw=1, label=label, color=colour)
    ax.set_yscale("log")
    ax.set_xticks(range(len(history)), [h.sha[:7] for h in history], rotation=45, fontsize=7)
    ax.set_ylabel("published factor")
    _legend_right(fig, ax, ncol=1 if len(series) <= 20 else 2)
    return fig


def _plot_drift(outcome: adapter.Outcome) -> Figure:
    keys = sorted({(a.device_model, a.workload_class) for a in outcome.alarms})[:6]
    fig, axes = plt.subplots(len(keys), 1, figsize=(11, 2.4 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        s = next((x for x in outcome.series if (x.device_model, x.workload_class) == key), None)
        if s is None:  # a sparse series: tested on its records, no hourly series to draw
            cov = next(
                (c for c in outcome.coverage if (c.device_model, c.workload_class) == key), None
            )
            how = f" ({cov.have} records, p={cov.p_value:.3f})" if cov and cov.p_value else ""
            _no_data(
                ax,
                f"{key[0]}/{key[1].value}: too sparse for hourly bins; tested on its records"
                f"{how}. The alarm is in the table below.",
            )
            continue
        ax.plot(s.end_hours - s.end_hours[0], np.expm1(s.values) * 100, lw=0.7)
        for a in outcome.alarms:
            if (a.device_model, a.workload_class) == key:
                ax.axvline(a.change_hour - s.end_hours[0], color="orange", ls="--")
                ax.axvline(a.alarm_hour - s.end_hours[0], color="red")
        ax.set_title(
            f"{key[0]}/{key[1].value}: hourly residual (%), change (dashed), alarm (red)",
            fontsize=9,
        )
    fig.tight_layout()
    return fig


def _plot_nodes(outcome: adapter.Outcome) -> Figure:
    """The slow-node screen per node: each node's speed against its model's typical node,
    the 15% line, flagged nodes in red (the reference's marked: it is guarded)."""
    models = sorted({n.device_model for n in outcome.nodes})
    flagged = {s.node for s in outcome.slow_nodes}
    fig, ax = plt.subplots(figsize=(11, 0.45 * max(len(models), 2) + 1.4))
    for i, model in enumerate(models):
        nodes = [n for n in outcome.nodes if n.device_model == model]
        effects = np.asarray([n.effect for n in nodes])
        centre = float(np.median(effects))
        rel = np.expm1(effects - centre) * 100
        slow = np.asarray([n.node in flagged for n in nodes], dtype=bool)
        jitter = (np.arange(len(nodes)) % 5 - 2) * 0.06
        ax.scatter(rel[~slow], i + jitter[~slow], s=14, color="#1f77b4", label="node")
        ax.scatter(rel[slow], i + jitter[slow], s=40, color="#d62728", marker="x", label="slow")
        for n, r, yv in zip(nodes, rel, i + jitter, strict=True):
            if n.node in flagged:
                ax.annotate(n.node, (r, yv), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.axvline(-15, color="#d62728", lw=0.8, ls="--", label="−15% (screen)")
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_yticks(
        range(len(models)),
        [f"{m} (reference)" if m == outcome.reference_model else m for m in models],
        fontsize=8,
    )
    ax.set_xlabel("node speed vs its model's median node (%)")
    if not models:
        _no_data(ax, "no node effects (no records)")
    _legend_right(fig, ax)
    return fig


def _plot_pool(
    pool: Pool,
    members: Sequence[str],
    delivered: Mapping[str, float],
    published: Mapping[str, float],
) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = np.arange(len(members))
    ax.bar(x - 0.2, [published.get(m, math.nan) for m in members], 0.4, label="CU in force")
    ax.bar(x + 0.2, [delivered.get(m, math.nan) for m in members], 0.4, label="delivered (learned)")
    ax.set_xticks(x, members, fontsize=8, rotation=20)
    ax.set_ylabel("reference-device equivalents")
    ax.set_title(f"pool {pool.name}: value per device over its workload mix", fontsize=9)
    _legend_right(fig, ax)
    return fig


# -------------------------------------------------------------------------------- helpers

_MARKERS = "o^sDv<>ph*"


def distinct_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` colours no two alike: tab10, then tab20's and tab20b's others, then evenly
    spaced hues (a history of 27 series must not reuse tab10's ten)."""
    from matplotlib import colormaps

    pool: list[tuple[float, float, float, float]] = []
    for name in ("tab10", "tab20", "tab20b", "tab20c"):
        cmap = colormaps[name]
        for i in range(cmap.N):
            c = tuple(float(v) for v in cmap(i))
            if not any(np.allclose(c, o, atol=0.02) for o in pool):
                pool.append(c)  # type: ignore[arg-type]
    if n > len(pool):
        hsv = colormaps["hsv"]
        pool += [tuple(float(v) for v in hsv(i / (n - len(pool)))) for i in range(n - len(pool))]  # type: ignore[misc]
    return pool[:n]


def _dedup_legend(ax_or_fig: Any) -> tuple[list[Any], list[str]]:
    handles, labels = [], []
    axes = ax_or_fig.axes if isinstance(ax_or_fig, Figure) else [ax_or_fig]
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    return handles, labels


def _legend_right(fig: Figure, ax: Any, ncol: int = 1) -> None:
    """The legend outside the axes, on the right: it can never cover data."""
    handles, labels = _dedup_legend(ax)
    if handles:
        ax.legend(
            handles, labels, fontsize=7, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0)
        )
    fig.tight_layout()


def _legend_below(fig: Figure, axes: Any) -> None:
    """One legend for all panels, below them: it can never cover data."""
    handles, labels = _dedup_legend(fig)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=len(labels))


def _no_data(ax: Any, why: str) -> None:
    """A panel without data says why, instead of showing empty axes."""
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=9, wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _img(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='{cls}'><tr>{head}</tr>{body}</table>"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _hour(h: int) -> str:
    return datetime.fromtimestamp(h * 3600, tz=UTC).strftime("%Y-%m-%d %H:00Z")


def pool_from_doc(
    pool: docs.CUPool,
    default_mix: Mapping[str, float],
    known_models: Sequence[str],
    observed: obs.ObservedState | None = None,
) -> Pool:
    """A report pool from a CUPool document and, when given, the observed devices.

    With observed devices the pool's models are those of the devices its selector really
    takes (vendors, models, node labels, attributes: :func:`selection.selects`, the
    planner's own rule); without them, the selector's named models (or every model).
    """
    if observed is not None:
        labels = {n.name: n.labels for n in observed.nodes}
        models = tuple(
            sorted(
                {
                    d.model
                    for d in observed.devices
                    if selection.selects(pool.spec.selector, d, labels.get(d.node, {}))
                }
            )
        )
        return Pool(pool.metadata.name, models, pool.spec.workload_mix or default_mix, True)
    models = tuple(pool.spec.selector.models) or tuple(known_models)
    return Pool(pool.metadata.name, models, pool.spec.workload_mix or default_mix, False)


def posterior_values(posteriors: Mapping[Key, combine.Posterior]) -> dict[Key, float]:
    return {k: p.value for k, p in posteriors.items()}


__all__ = ["Pool", "pool_from_doc", "posterior_values", "render", "write"]

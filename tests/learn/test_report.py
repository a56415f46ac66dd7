"""The HTML report is self-contained: inline PNGs and the expected tables; every plot has
data or says why not, colours do not repeat, legends never cover data (issue 22.6)."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from reconciler.learn import adapter, report, writeback
from reconciler.model import documents as docs


def _legend_clear_of_axes(fig: Figure) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    legends = [a.get_legend() for a in fig.axes if a.get_legend()] + list(fig.legends)
    assert legends, "no legend"
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), "legend covers data"


def test_report_embeds_plots_and_tables(tmp_path: Path, drift_records) -> None:  # type: ignore[no-untyped-def]
    recs, _, sc = drift_records
    published = adapter.spec_table()
    outcome = adapter.learn(recs, published, docs.FactorPolicy(), sc.end)
    history = [
        writeback.HistoryEntry("a" * 40, sc.start, "seed", published),
        writeback.HistoryEntry("b" * 40, sc.end, "learned", outcome.proposal.table),
    ]
    pools = [
        report.Pool(
            "inference-prod",
            ("H100-SXM5-80GB", "BR104", "A100-SXM4-80GB"),
            {"prefill": 0.3, "decode": 0.7},
        )
    ]
    path = report.write(tmp_path, report.render(outcome, published, history=history, pools=pools))
    text = path.read_text(encoding="utf-8")
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) >= 6  # factors, prior vs learned, history, drift, nodes, pool
    for img in images:
        assert base64.b64decode(img).startswith(b"\x89PNG")
    for cls in ("records", "factors", "history", "alarms", "slow-nodes", "pools", "coverage"):
        assert f"<table class='{cls}'>" in text
    assert "L40S" in text and "inference-prod" in text and "whole GPUs" in text
    assert "http" not in text.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert "smallest step seen (90% power)" in text

    # legends outside the data, one colour per history line
    for fig in (
        report._plot_factors(outcome),
        report._plot_prior_vs_learned(outcome),
        report._plot_history(history),
        report._plot_nodes(outcome),
    ):
        _legend_clear_of_axes(fig)
    hist = report._plot_history(history)
    colours = [tuple(line.get_color()) for line in hist.axes[0].get_lines()]
    assert len(colours) > 10 and len(set(colours)) == len(colours)

    # the per-node screen: every node drawn, the slow one named
    nodes = report._plot_nodes(outcome)
    drawn = sum(len(c.get_offsets()) for c in nodes.axes[0].collections)
    assert drawn == len(outcome.nodes) > 0
    names = {t.get_text() for t in nodes.axes[0].texts}
    assert {s.node for s in outcome.slow_nodes} <= names and outcome.slow_nodes

    # an alarm without an hourly series (a sparse series) says why, never empty axes
    sparse = dataclasses.replace(outcome, series=())
    fig = report._plot_drift(sparse)
    for ax in fig.axes:
        assert ax.get_lines() or any("too sparse" in t.get_text() for t in ax.texts)


def test_colours_are_distinct() -> None:
    cols: list[Any] = report.distinct_colours(40)
    assert len(cols) == 40
    arr = np.asarray(cols)
    diffs = np.abs(arr[:, None, :3] - arr[None, :, :3]).sum(axis=2) + np.eye(40) * 9
    assert diffs.min() > 0.02

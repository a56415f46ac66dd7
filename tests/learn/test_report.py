"""The HTML report is self-contained: inline PNGs and the expected tables."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from reconciler.learn import adapter, report, writeback
from reconciler.model import documents as docs


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
    assert len(images) >= 5  # factors, prior vs learned, history, drift, pool
    for img in images:
        assert base64.b64decode(img).startswith(b"\x89PNG")
    for cls in ("records", "factors", "history", "alarms", "slow-nodes", "pools"):
        assert f"<table class='{cls}'>" in text
    assert "L40S" in text and "inference-prod" in text and "whole GPUs" in text
    assert "http" not in text.replace("http-equiv", "")  # nothing fetched from elsewhere

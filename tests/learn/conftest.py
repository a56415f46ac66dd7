"""Shared, seeded synthetic data for the learner tests (session-scoped: generated once)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.learn import records, synthetic

START = synthetic.Scenario().start


@pytest.fixture(scope="session")
def small_records() -> tuple[records.Records, synthetic.Truth, synthetic.Scenario]:
    """Every canonical model, ≥300 records per (model, class), 8 nodes, with bad rows."""
    sc = synthetic.Scenario(records=30_000, bad_rows=400)
    frame, truth = synthetic.generate(sc, seed=11)
    return records.validate(frame, sc.end), truth, sc


@pytest.fixture(scope="session")
def drift_records() -> tuple[records.Records, synthetic.Truth, synthetic.Scenario]:
    """Four models, enough traffic per hour for hourly drift detection, two real steps."""
    sc = synthetic.Scenario(
        records=300_000,
        days=20,
        device_models=("A100-SXM4-80GB", "H100-SXM5-80GB", "L40S", "BR104"),
        mix_shift_at_day=10.0,
        steps=(
            synthetic.Step("L40S", synthetic.WC.DECODE, START + timedelta(days=7, hours=5), -0.03),
            synthetic.Step(
                "H100-SXM5-80GB", synthetic.WC.PREFILL, START + timedelta(days=14, hours=13), 0.12
            ),
        ),
    )
    frame, truth = synthetic.generate(sc, seed=5)
    return records.validate(frame, sc.end), truth, sc

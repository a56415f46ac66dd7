"""Acceptance (issue 5, "Proof"): accuracy, interval coverage, drift, over several seeds.

Minimum-evidence setting: every canonical model, 8 nodes each (16 for the reference), at
least 300 records per (model, class), Student-t noise, 5% gross outliers, node spread,
a slow node, hourly AR(1) noise and a workload-mix shift. BENCHMARKS.md has the larger runs.
"""

from __future__ import annotations

import numpy as np
import pytest

from reconciler.learn import adapter, records, specs, synthetic
from reconciler.model import documents as docs

SEEDS = range(100, 108)


@pytest.fixture(scope="module")
def runs() -> list[tuple[adapter.Outcome, synthetic.Truth]]:
    out = []
    for seed in SEEDS:
        sc = synthetic.Scenario(records=30_000, nodes_per_model=8)
        frame, truth = synthetic.generate(sc, seed)
        recs = records.validate(frame, sc.end)
        out.append((adapter.learn(recs, None, docs.FactorPolicy(), sc.end), truth))
    return out


def errors_and_coverage(
    runs: list[tuple[adapter.Outcome, synthetic.Truth]],
) -> tuple[np.ndarray, np.ndarray]:
    errs, covered = [], []
    for outcome, truth in runs:
        for key, post in outcome.posteriors.items():
            if key[0] == specs.REFERENCE_MODEL or key not in truth.factors:
                continue
            assert post.learned and post.estimate is not None
            # ≥ 300 records, unless a (false) drift alarm split the series: then the factor
            # is refitted on the records after the change (≤ 3% of models per window)
            assert post.estimate.nodes >= 7
            assert post.estimate.samples >= 300 or post.estimate.since_hour is not None
            true = truth.factors[key]
            errs.append(abs(post.value / true - 1.0))
            lo, hi = post.interval()
            covered.append(lo <= true <= hi)
    return np.asarray(errs), np.asarray(covered)


def test_relative_error_of_learned_factors(runs) -> None:  # type: ignore[no-untyped-def]
    errs, _ = errors_and_coverage(runs)
    assert len(errs) == len(SEEDS) * 8 * 3
    assert np.median(errs) <= 0.02
    assert np.quantile(errs, 0.95) <= 0.06


def test_interval_coverage(runs) -> None:  # type: ignore[no-untyped-def]
    _, covered = errors_and_coverage(runs)
    assert 0.90 <= covered.mean() <= 0.98


def test_the_slow_node_is_found_and_left_out(runs) -> None:  # type: ignore[no-untyped-def]
    found = [
        set(truth.slow_nodes) <= {s.node for s in outcome.slow_nodes} for outcome, truth in runs
    ]
    assert np.mean(found) >= 0.75
    for outcome, _ in runs:
        assert set(outcome.fit.excluded_nodes) == {s.node for s in outcome.slow_nodes}


def test_no_false_drift_alarms_at_minimum_traffic(runs) -> None:  # type: ignore[no-untyped-def]
    alarmed = [bool(outcome.alarms) for outcome, _ in runs]
    # Thin traffic: the detector stays quiet, not jumpy. 27 series per run, each tested at
    # ≤ 0.7%: a run alarms somewhere with probability ≈ 17%, so 1.4 of 8 runs are expected
    # and 4 or more happen 4% of the time (3 of 8 here: seeds 100, 101 and 105).
    assert sum(alarmed) <= 3
    for outcome, _ in runs:  # and quiet because it tested, not because it skipped
        assert outcome.coverage and all(c.tested for c in outcome.coverage)
    # false alarms per model per window: target 5%; 4 of 72 model-windows here (MCSE 2.7%)
    alarmed_models = sum(len({a.device_model for a in o.alarms}) for o, _ in runs)
    assert alarmed_models / (len(runs) * 9) <= 0.10


def test_factors_after_a_step_describe_the_device_as_it_runs_now(drift_records) -> None:  # type: ignore[no-untyped-def]
    recs, truth, sc = drift_records
    outcome = adapter.learn(recs, None, docs.FactorPolicy(), sc.end)
    for step in sc.steps:
        key = (step.device_model, step.workload_class)
        post = outcome.posteriors[key]
        assert post.estimate is not None and post.estimate.since_hour is not None
        assert abs(post.value / truth.factors[key] - 1.0) <= 0.03
        lo, hi = post.interval()
        assert lo <= truth.factors[key] <= hi

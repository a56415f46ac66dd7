"""Estimation: cells reproduce record-level OLS; outliers do not move a factor; confounded
devices are flagged, not guessed; a change point splits the estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from reconciler.learn import fit, records, specs, synthetic

WC = specs.WorkloadClass
REF = specs.REFERENCE_MODEL


def test_cells_give_the_record_level_ols_estimates(small_records) -> None:  # type: ignore[no-untyped-def]
    recs, _, _ = small_records
    df = recs.frame
    keep = np.ones(len(df), dtype=bool)
    res = fit.fit(df, keep=keep)
    # The same model on every record, through the formula interface.
    devcls = df["device_model"].astype(str) + "/" + df["workload_class"].astype(str)
    devcls = devcls.where(df["device_model"].astype(str) != REF, "reference")
    data = pd.DataFrame(
        {
            "y": df["log_tput"].to_numpy(),
            "skey": (
                df["served_model"].astype(str)
                + "/"
                + df["workload_class"].astype(str)
                + "/"
                + df["throughput_unit"].astype(str)
            ).to_numpy(),
            "cls": df["workload_class"].astype(str).to_numpy(),
            "lb": df["log_batch"].to_numpy(),
            "dc": devcls.to_numpy(),
        }
    )
    ols = smf.ols("y ~ 0 + C(skey) + C(cls):lb + C(dc, Treatment('reference'))", data).fit()
    for (model, cls), est in res.estimates.items():
        if model == REF:
            continue
        name = f"C(dc, Treatment('reference'))[T.{model}/{cls.value}]"
        assert est.log_factor == pytest.approx(ols.params[name], abs=1e-8)


def test_outliers_do_not_move_a_factor(small_records) -> None:  # type: ignore[no-untyped-def]
    recs, _, _ = small_records
    clean = fit.fit(recs.frame).estimates[("H100-SXM5-80GB", WC.DECODE)]
    df = recs.frame.copy()
    rng = np.random.default_rng(0)
    target = (df["device_model"] == "H100-SXM5-80GB") & (df["workload_class"] == "decode")
    idx = np.flatnonzero(target.to_numpy())
    hit = rng.choice(idx, size=len(idx) // 10, replace=False)  # 10%, all one-sided ×3
    df.loc[hit, "log_tput"] += math.log(3.0)
    dirty = fit.fit(df).estimates[("H100-SXM5-80GB", WC.DECODE)]
    assert abs(dirty.log_factor - clean.log_factor) < 0.01
    unscreened = fit.fit(df, keep=np.ones(len(df), dtype=bool))
    moved = unscreened.estimates[("H100-SXM5-80GB", WC.DECODE)]
    assert abs(moved.log_factor - clean.log_factor) > 0.05  # the screen is what saves it


def test_a_device_with_no_shared_workload_is_not_identified(small_records) -> None:  # type: ignore[no-untyped-def]
    recs, _, _ = small_records
    df = recs.frame
    k100 = (df["device_model"] == "K100").to_numpy()
    served = df["served_model"].astype(str).to_numpy().copy()
    served[k100] = "k100-only-model"  # K100 serves nothing any other device serves
    df = df.assign(served_model=pd.Categorical(served))
    res = fit.fit(df)
    for cls in WC:
        est = res.estimates[("K100", cls)]
        assert not est.identified and math.isinf(est.se)
    assert res.estimates[("L40S", WC.DECODE)].identified
    assert any("K100" in w for w in res.warnings)


def test_segment_measures_the_level_after_a_change() -> None:
    sc = synthetic.Scenario(
        records=60_000,
        device_models=("A100-SXM4-80GB", "L40S"),
        steps=(
            synthetic.Step(
                "L40S",
                WC.DECODE,
                synthetic.Scenario().start + pd.Timedelta(days=15).to_pytimedelta(),
                -0.10,
            ),
        ),
        slow_node_model=None,
    )
    frame, truth = synthetic.generate(sc, seed=2)
    recs = records.validate(frame, sc.end)
    step_hour = int(sc.steps[0].at.timestamp() // 3600)
    whole = fit.fit(recs.frame).estimates[("L40S", WC.DECODE)]
    split = fit.fit(recs.frame, segments={("L40S", WC.DECODE): step_hour}).estimates[
        ("L40S", WC.DECODE)
    ]
    now = truth.factors[("L40S", WC.DECODE)]
    assert abs(split.value / now - 1) < abs(whole.value / now - 1)
    assert abs(split.value / now - 1) < 0.03
    assert split.since_hour == step_hour
    assert split.samples < whole.samples


def test_interval_uses_few_cluster_degrees_of_freedom(small_records) -> None:  # type: ignore[no-untyped-def]
    recs, _, _ = small_records
    est = fit.fit(recs.frame).estimates[("L40S", WC.PREFILL)]
    assert est.nodes == 8 and est.df == 7
    lo, hi = est.log_interval(0.95)
    assert (hi - lo) / 2 == pytest.approx(2.3646 * est.se, rel=1e-3)

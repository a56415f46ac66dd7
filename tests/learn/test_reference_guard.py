"""The reference is protected (issue 22.3): its alarms hold the class instead of re-basing
it, its slow nodes widen the intervals instead of silently shifting every factor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reconciler.learn import adapter, drift, fit, records, specs, synthetic, writeback
from reconciler.model import documents as docs

REF = specs.REFERENCE_MODEL
WC = specs.WorkloadClass


def _refit(frame: Any) -> adapter.Refit:
    keep, _ = fit.screen_frame(frame)
    return lambda ex, seg: fit.fit(frame, REF, exclude_nodes=ex, segments=seg, keep=keep)


def _hour(sc: synthetic.Scenario, days: float) -> int:
    return int((sc.start + timedelta(days=days)).timestamp() // 3600)


def test_an_alarm_on_the_reference_holds_its_class_and_is_not_split(
    small_records: tuple[records.Records, synthetic.Truth, synthetic.Scenario],
) -> None:
    recs, _, sc = small_records
    refit = _refit(recs.frame)
    first = refit([], {})
    at = _hour(sc, 12)
    alarm = drift.Alarm(REF, WC.DECODE, drift.Direction.DOWN, at, at + 20, -0.04, 0.0)
    other = drift.Alarm("L40S", WC.PREFILL, drift.Direction.DOWN, at, at + 20, -0.03, 0.0)
    guarded = adapter.guarded_refit(first, refit, [], [alarm, other])
    effects = guarded.fit.device_effects
    assert (REF, "decode", 1) not in effects  # the reference keeps one level: no re-basing
    assert ("L40S", "prefill", 1) in effects  # another device's change is still split
    assert set(guarded.held_classes) == {WC.DECODE}
    decode = [e for k, e in guarded.fit.estimates.items() if k[1] is WC.DECODE and k[0] != REF]
    assert decode and all(e.reference_sd > 0 for e in decode)
    split = adapter.guarded_refit(first, refit, [], [other]).fit  # the unguarded readings
    resplit = refit([], {(REF, WC.DECODE): at, ("L40S", WC.PREFILL): at})
    for e in decode:  # the interval carries the distance to the split reading
        key = (e.device_model, e.workload_class)
        assert e.log_factor == pytest.approx(
            (split.estimates[key].log_factor + resplit.estimates[key].log_factor) / 2
        )

    out = adapter.finish(
        guarded.fit,
        adapter.spec_table(),
        docs.FactorPolicy(),
        sc.end,
        slow=(),
        alarms=(alarm, other),
        series=(),
        coverage=(),
        report=recs.report,
        records_revision="sha256:x",
        held_classes=guarded.held_classes,
    )
    for c in out.proposal.changes:
        if c.workload_class is WC.DECODE:
            assert c.decision.value == "held" and "drift alarm on the reference" in c.reason
    msg = writeback.commit_message(out, docs.FactorPolicy())
    assert (
        f"{REF}/decode down" in msg and "the reference: not split, every decode factor held" in msg
    )


def test_a_slow_reference_node_widens_intervals_by_the_shift_it_causes(
    small_records: tuple[records.Records, synthetic.Truth, synthetic.Scenario],
) -> None:
    recs, _, _ = small_records
    refit = _refit(recs.frame)
    first = refit([], {})
    node = sorted(
        str(n) for n in recs.frame.loc[recs.frame["device_model"] == REF, "node"].unique()
    )[0]
    slow = drift.SlowNode(node, REF, -0.16, -4.0, 500)
    guarded = adapter.guarded_refit(first, refit, [slow], [])
    without = refit([node], {})
    assert guarded.fit.excluded_nodes == (node,)
    assert not guarded.held_classes
    for key, est in guarded.fit.estimates.items():
        if key[0] == REF or not est.identified:
            continue
        kept, out = first.estimates[key], without.estimates[key]
        half = abs(kept.log_factor - out.log_factor) / 2  # two readings, equal weight
        assert est.log_factor == pytest.approx((kept.log_factor + out.log_factor) / 2)
        assert est.reference_sd == pytest.approx(half, rel=1e-9, abs=1e-12)
        assert est.se == pytest.approx(((kept.se**2 + out.se**2) / 2 + half**2) ** 0.5)

"""What-if scenarios change only the in-memory inputs, and the plan of those inputs says what
would happen: capacity, admission and preemption, and which objects would change."""

from __future__ import annotations

import cu_example as ex
import pytest

from reconciler import plan as planning
from reconciler.model import observed as obs
from reconciler.plan import whatif


def pools(result: planning.Plan) -> dict[str, int]:
    return {p.name: p.total_milli for p in result.report.pools}


def test_scenarios_parse_with_their_grammar_and_bad_ones_name_it() -> None:
    assert whatif.parse("lose node n1") == whatif.LoseNode("n1")
    assert whatif.parse("ADD 16 × L40S to pool batch") == whatif.AddDevices(16, "L40S", "batch")
    assert whatif.parse("add 2 x Z100 vendor hygon memory 32Gi to pool infer") == (
        whatif.AddDevices(2, "Z100", "infer", "hygon", "32Gi")
    )
    assert whatif.parse("factor BR104/decode -10%") == whatif.ScaleFactor("BR104", "decode", -10)
    assert whatif.parse("factor H100-SXM5-80GB +5.5 %") == whatif.ScaleFactor(
        "H100-SXM5-80GB", None, 5.5
    )
    for bad, why in [
        ("sell everything", "a scenario is one of"),
        ("add 0 x L40S to pool p", "COUNT must be"),
        ("factor X -100%", "above -100%"),
        ("add 2 x Z100 memory lots to pool p", "not a quantity"),
    ]:
        with pytest.raises(whatif.WhatIfError, match=why):
            whatif.parse(bad)


def test_losing_a_node_removes_its_devices_and_its_capacity() -> None:
    desired, observed = ex.desired(), ex.observed()
    applied = whatif.apply([whatif.parse("lose node n1")], desired, observed)
    assert not any(d.node == "n1" for d in applied.observed.devices)
    assert applied.notes == ("lose node n1: 2 devices removed",)
    before = planning.plan(desired, observed)
    after = planning.plan(applied.desired, applied.observed, before.objects)
    # train loses two H100 of 155 CU each: 590 → 280 CU.
    assert pools(before)["train"] == 590_000 and pools(after)["train"] == 280_000
    # The inputs given were not touched: a scenario returns new values.
    assert any(d.node == "n1" for d in observed.devices)
    with pytest.raises(whatif.WhatIfError, match="no node 'n9'"):
        whatif.apply([whatif.parse("lose node n9")], desired, observed)


def test_adding_devices_puts_them_where_the_pool_selects_and_counts_them() -> None:
    desired, observed = ex.desired(), ex.observed()
    applied = whatif.apply(
        [whatif.parse("add 10 x H100-SXM5-80GB to pool train")], desired, observed
    )
    new = [d for d in applied.observed.devices if d.node.startswith("what-if-")]
    assert len(new) == 10 and len({d.node for d in new}) == 2  # 8 per node
    # Vendor, driver and memory are copied from an observed H100.
    seen = next(d for d in observed.devices if d.model == "H100-SXM5-80GB")
    assert {(d.vendor, d.id.driver, d.memory_bytes) for d in new} == {
        (seen.vendor, seen.id.driver, seen.memory_bytes)
    }
    before = planning.plan(desired, observed)
    after = planning.plan(applied.desired, applied.observed, before.objects)
    assert pools(after)["train"] == pools(before)["train"] + 10 * 155_000


def test_a_device_the_pool_would_not_take_is_refused_not_silently_ignored() -> None:
    desired, observed = ex.desired(), ex.observed()
    with pytest.raises(whatif.WhatIfError, match="selector would not take"):
        whatif.apply([whatif.parse("add 2 x Z100 to pool train")], desired, observed)
    with pytest.raises(whatif.WhatIfError, match="no pool 'nope'"):
        whatif.apply([whatif.parse("add 2 x Z100 to pool nope")], desired, observed)
    with pytest.raises(whatif.WhatIfError, match="no VendorAdapter value map names"):
        whatif.apply([whatif.parse("add 2 x NoSuchCard to pool train")], desired, observed)


def test_a_factor_change_moves_capacity_and_admission() -> None:
    desired, observed = ex.desired(), ex.observed()
    applied = whatif.apply([whatif.parse("factor H100-SXM5-80GB/decode -50%")], desired, observed)
    assert applied.notes == ("factor H100-SXM5-80GB/decode -50%: decode 1.55 → 0.775",)
    before = planning.plan(desired, observed)
    after = planning.plan(applied.desired, applied.observed, before.objects)
    # Two H100 at 77.5 instead of 155 CU each.
    assert pools(after)["train"] == pools(before)["train"] - 2 * 77_500
    changed = {(d.claim, d.status) for d in after.report.decisions} - {
        (d.claim, d.status) for d in before.report.decisions
    }
    assert changed, "a 155 CU cut in a full pool must change some admission"
    # Scenarios apply in order: two factor changes on one model compose (0.4 × 0.9 × 0.8),
    # in one what-if table.
    twice = whatif.apply(
        [whatif.parse("factor BR104 -10%"), whatif.parse("factor BR104 -20%")], desired, observed
    )
    rows = [t for t in twice.desired.factor_tables if t.metadata.name == whatif.WHAT_IF_TABLE]
    assert len(rows) == 1 and [f.value for f in rows[0].spec.factors] == [pytest.approx(0.288)]


def test_the_plan_of_a_scenario_is_deterministic() -> None:
    desired, observed = ex.desired(), ex.observed()
    scenarios = [whatif.parse("lose node n3"), whatif.parse("add 3 x BR104 to pool train")]
    first = whatif.apply(scenarios, desired, observed)
    second = whatif.apply(scenarios, desired, observed)
    assert first == second
    assert isinstance(first.observed, obs.ObservedState)
    assert (
        planning.plan(first.desired, first.observed).objects
        == planning.plan(second.desired, second.observed).objects
    )


def test_a_price_change_changes_what_tenants_pay_and_needs_declared_costs() -> None:
    import dataclasses

    from reconciler.model import documents as docs
    from reconciler.plan import costs

    table = docs.DeviceCosts.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "DeviceCosts",
            "metadata": {"name": "costs"},
            "spec": {
                "devices": [
                    {"deviceModel": "H100-SXM5-80GB", "rented": {"pricePerHour": 3.0}},
                    {
                        "deviceModel": "A100-SXM4-80GB",
                        "owned": {"purchasePrice": 17520.0, "lifetimeYears": 2.0},
                    },
                ]
            },
        }
    )
    desired = dataclasses.replace(ex.desired(), device_costs=table)
    observed = ex.observed()
    assert whatif.parse("price A100-SXM4-80GB 2.5/h") == whatif.Price("A100-SXM4-80GB", None, 2.5)
    for text, note in [
        ("price H100-SXM5-80GB +50%", "3 → 4.5/h"),
        ("price A100-SXM4-80GB -50%", "1 → 0.5/h"),
        ("price A100-SXM4-80GB 2.5/h", "1 → 2.5/h"),
    ]:
        applied = whatif.apply([whatif.parse(text)], desired, observed)
        assert applied.notes == (f"{text}: {note}",)
    applied = whatif.apply([whatif.parse("price H100-SXM5-80GB +50%")], desired, observed)
    before = planning.plan(desired, observed)
    after = planning.plan(applied.desired, applied.observed, before.objects)
    changes = costs.compare(
        costs.compute(desired, observed, before.report),
        costs.compute(applied.desired, applied.observed, after.report),
    )
    # Two H100 in train go from 3 to 4.5 per hour: every tenant guaranteed or charged CU in
    # train pays more; lab (no guarantee, its claims pending behind the guarantees) does not.
    charged = {t.tenant for t in before.report.tenants if t.pool == "train" and t.after_milli > 0}
    guaranteed = {t.tenant for t in before.report.tenants if t.guaranteed_milli > 0}
    assert {c.tenant for c in changes} == charged | guaranteed
    assert all(a > b for c in changes for a, b in zip(c.after, c.before, strict=True) if b)
    with pytest.raises(whatif.WhatIfError, match="no DeviceCosts entry prices Z100"):
        whatif.apply([whatif.parse("price Z100 +1%")], desired, observed)

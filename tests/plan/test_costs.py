"""Showback: pool cost per CU-hour from the devices it takes, tenants' monthly costs, and the
bill changes a pull request would make."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import cu_example as ex
import pytest

from reconciler import plan as planning
from reconciler.model import documents as docs
from reconciler.plan import costs

H100, A100, BR104, Z100 = 3.0, 2.0, 1.0, 0.5


def device_costs(*extra: dict[str, Any], rows: list[dict[str, Any]] | None = None):
    return docs.DeviceCosts.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "DeviceCosts",
            "metadata": {"name": "costs"},
            "spec": {
                "currency": "EUR",
                "devices": rows
                if rows is not None
                else [
                    *extra,
                    {"deviceModel": "H100-SXM5-80GB", "rented": {"pricePerHour": H100}},
                    {"deviceModel": "A100-SXM4-80GB", "rented": {"pricePerHour": A100}},
                    {"deviceModel": "BR104", "rented": {"pricePerHour": BR104}},
                    {"deviceModel": "Z100", "rented": {"pricePerHour": Z100}},
                ],
            },
        }
    )


def report(desired=None, observed=None):
    desired = desired or dataclasses.replace(ex.desired(), device_costs=device_costs())
    observed = observed or ex.observed()
    result = planning.plan(desired, observed)
    out = costs.compute(desired, observed, result.report)
    assert out is not None
    return out


def test_pool_rate_and_tenant_costs_are_hand_checked() -> None:
    out = report()
    pools = {p.pool: p for p in out.pools}
    train = pools["train"]
    # train: 2 H100 + 2 A100 + 2 BR104 = 12 EUR/h over 590 sellable CU (no headroom).
    assert train.devices == 6 and train.unpriced == 0
    assert train.cost_per_hour == pytest.approx(2 * H100 + 2 * A100 + 2 * BR104)
    assert train.cost_per_cu_hour == pytest.approx(12 / 590)
    search = next(t for t in out.tenants if (t.tenant, t.pool) == ("search", "train"))
    assert search.guaranteed_cu == 300
    assert search.guaranteed_per_month == pytest.approx(300 * 12 / 590 * 730)
    assert search.in_use_per_month == pytest.approx(search.in_use_cu * 12 / 590 * 730)
    # The unhealthy Z100 still costs money: infer's rate carries both devices.
    infer = pools["infer"]
    assert infer.devices == 2 and infer.cost_per_hour == pytest.approx(2 * Z100)
    assert out.currency == "EUR"


def test_unpriced_devices_are_counted_not_priced_at_zero_silently() -> None:
    rows = [{"deviceModel": "H100-SXM5-80GB", "rented": {"pricePerHour": H100}}]
    desired = dataclasses.replace(ex.desired(), device_costs=device_costs(rows=rows))
    train = next(p for p in report(desired).pools if p.pool == "train")
    assert train.unpriced == 4 and train.cost_per_hour == pytest.approx(2 * H100)
    assert "(4 of 6 devices unpriced)" in costs.text(report(desired))


def test_the_first_matching_entry_prices_a_device_by_its_node_labels() -> None:
    site = {
        "deviceModel": "H100-SXM5-80GB",
        "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "n1"}},
        "rented": {"pricePerHour": 10.0},
    }
    desired = dataclasses.replace(ex.desired(), device_costs=device_costs(site))
    train = next(p for p in report(desired).pools if p.pool == "train")
    assert train.cost_per_hour == pytest.approx(2 * 10.0 + 2 * A100 + 2 * BR104)


def test_a_guarantee_change_is_a_change_in_what_the_tenant_pays() -> None:
    before = report()
    tenants = tuple(
        t.model_copy(
            update={
                "spec": t.spec.model_copy(
                    update={
                        "quotas": [
                            q.model_copy(update={"guaranteed": 400.0}) for q in t.spec.quotas
                        ]
                    }
                )
            }
        )
        if t.metadata.name == "search"
        else t
        for t in ex.TENANTS
    )
    desired = dataclasses.replace(ex.desired(tenants=tenants), device_costs=device_costs())
    after = report(desired)
    changes = costs.compare(before, after)
    assert [c.tenant for c in changes] == ["search"]
    assert changes[0].after[0] - changes[0].before[0] == pytest.approx(100 * 12 / 590 * 730)
    assert "~ search:" in costs.text(after, changes)
    assert costs.compare(before, before) == ()


def test_no_device_costs_no_cost_figures() -> None:
    result = planning.plan(ex.desired(), ex.observed())
    assert costs.compute(ex.desired(), ex.observed(), result.report) is None


def test_owned_cost_is_amortised_purchase_plus_power_and_one_kind_only() -> None:
    owned = {
        "deviceModel": "Z100",
        "owned": {
            "purchasePrice": 8760.0,
            "lifetimeYears": 2.0,
            "powerWatts": 500.0,
            "energyPricePerKwh": 0.2,
        },
    }
    assert math.isclose(device_costs(rows=[owned]).spec.devices[0].cost_per_hour, 0.6)
    with pytest.raises(ValueError, match="exactly one of 'owned' or 'rented'"):
        device_costs(rows=[{**owned, "rented": {"pricePerHour": 1.0}}])

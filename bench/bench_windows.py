"""Guarantee windows (docs/peaks-and-troughs.md): what validation's peak search and the
planner's window selection cost.

- the peak of one pool's scheduled guarantees, ``--quotas`` quotas with two windows each
  (weekdays 08:00-20:00, weekend nights 22:00-06:00): all in one zone (the local week's
  sweep) and spread over three zones (the reference year's sweep, in real time);
- :func:`reconciler.plan.schedule.in_force` on a desired state whose every tenant has a
  scheduled quota: the step the planner adds before capacity and admission.

CPU seconds (process time), median of ``--runs``; on a shared 2-core machine read those.

    .venv/bin/python bench/bench_windows.py --quotas 100 --runs 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable

from reconciler.model import documents as docs
from reconciler.model import state as st
from reconciler.model import timewindows
from reconciler.plan import schedule
from reconciler.validate import semantics

ZONES = ("Europe/Paris", "Asia/Shanghai", "America/New_York")


def quota(zone: str, shift: int = 0) -> docs.Quota:
    return docs.Quota.model_validate(
        {
            "pool": "p",
            "guaranteed": 10,
            "schedule": {
                "timeZone": zone,
                "windows": [
                    {
                        "name": "day",
                        "days": ["Mon", "Tue", "Wed", "Thu", "Fri"],
                        "start": f"{8 + shift // 60:02d}:{shift % 60:02d}",
                        "end": "20:00",
                        "guaranteed": 20,
                    },
                    {
                        "name": "night",
                        "days": ["Sat", "Sun"],
                        "start": "22:00",
                        "end": "06:00",
                        "guaranteed": 5,
                    },
                ],
            },
        }
    )


def cpu(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quotas", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    one = [quota(ZONES[0]) for _ in range(args.quotas)]
    mixed = [quota(ZONES[i % len(ZONES)]) for i in range(args.quotas)]
    for name, quotas in (("one zone", one), ("three zones", mixed)):
        took = cpu(lambda q=quotas: semantics._peak(q), args.runs)  # type: ignore[misc]
        print(f"peak, {args.quotas} quotas, {name}: {took:.4f} s CPU")
    # Distinct shapes (every quota starts at its own minute): the same work.
    distinct = [quota(ZONES[i % len(ZONES)], i % 480) for i in range(args.quotas)]
    took = cpu(lambda: semantics._peak(distinct), args.runs)
    print(f"peak, {args.quotas} quotas, three zones, distinct shapes: {took:.4f} s CPU")
    settings = docs.ClusterSettings.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "ClusterSettings",
            "metadata": {"name": "bench"},
            "spec": {
                "driverName": "cu.example.com",
                "reference": {"deviceModel": "A100"},
                "managedNamespaces": ["ns"],
            },
        }
    )
    tenants = tuple(
        docs.Tenant.model_validate(
            {
                "apiVersion": docs.API_VERSION,
                "kind": "Tenant",
                "metadata": {"name": f"t{i:04d}"},
                "spec": {
                    "namespaces": [f"ns{i}"],
                    "priority": i,
                    "quotas": [q.model_dump(by_alias=True)],
                },
            }
        )
        for i, q in enumerate(mixed)
    )
    desired = st.DesiredState(st.Revision("bench"), settings, st.DEFAULT_POLICY, tenants=tenants)
    at = dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)
    timewindows.in_force_named.cache_clear()
    took = cpu(lambda: schedule.in_force(desired, at), 1)
    print(f"plan's window step, {len(tenants)} scheduled tenants: {took:.4f} s CPU")


if __name__ == "__main__":
    main()

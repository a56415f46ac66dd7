"""Event cost at the cluster limit: 5,000 nodes, 40,000 devices, 800 tenants, 20,000 claims.

Issue #24's table, measured in CPU seconds (``time.process_time``: this machine is shared, so
wall time says more about the neighbours than about us). Each run is a fresh process: the
fleet is generated (not timed), the steady state is planned once (the controller's memory
after a reconcile), then, side by side in the same process:

- ``full_s``: observe + plan from scratch, no memo (the issue's "full plan", target ≤ 2 s);
- ``node_lost_s``: one node's slices and Node vanish → observe + plan + ChangeSet, with the
  controller's ``pipeline.Memo`` stages (target ≤ 0.3 s);
- ``claim_added_s``: one CUClaim more, in the cluster that event left → plan + ChangeSet
  with the memo (target ≤ 0.1 s; observe is not needed, nothing in the cluster changed).

The live side (``--live``) is what the controller plans against, and reading it is part
of the timed event (it was not before session 11). ``watch`` (the default, what the
controller does): the watch events since the last read, applied to a watch store
(:mod:`reconciler.observe.informer`: unchanged objects kept, small maps shared); the vendor
slices and Nodes come through stores too. ``relist`` (``cuctl run --no-watch-cache``): the
last plan applied to a simulated apiserver and listed back, new objects on every list, each
with a uid, a resourceVersion that moves only when its content does, our applied stamp and
our managedFields. ``plan``: the last plan's own objects, as ``plan --base`` does.

The memo (docs/architecture.md, "Incremental planning") reuses what an event leaves
unchanged: the vendor pools in observe, each device's pool and CU, the nodes' slices, the
pools' admission and each claim's entry in it, the claim bodies, the planned objects and the
in-sync pairs, the fence's rules per vendor pool, the CU device names per node, the vendors'
uuid attributes per pool and the pairing's order. The quotas, the report, the delete
guard, pairing and interning still walk every object (remembering per object what they
read).

Memory (``rss_*_mb``, from /proc/self/status): after the steady state, and after
``--events`` events in turn (a node lost, a claim added, another node lost and the previous
one back, the claim removed: the fleet keeps its size), each keeping only its newest plan
and live list as the controller does (target ≤ 500 MB, no growth), with the RSS after every
tenth of them (``rss_series_mb``: flat means no growth). The simulated apiserver is not the
controller: it keeps its objects as JSON text only when it is listed (``relist``), else
their digests and identities, so it adds little to the figure. ``--nodes`` scales the whole
fleet (tenants and claims in proportion) for a longer event series in less time. Prints one
JSON line per run, then medians.

    .venv/bin/python bench/bench_incremental.py --runs 3 --events 10
    .venv/bin/python bench/bench_incremental.py --memory-parts
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FLEET = {"nodes": 5000, "devices_per_node": 8, "tenants": 800, "claims": 20000}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Apiserver:
    """What the controller lists after an apply: every object stamped with its applied digest
    and our managedFields (as server-side apply records them), a uid, and a resourceVersion
    that changes exactly when the content does; every list returns new objects (a parse)."""

    def __init__(self, lists: bool = True) -> None:
        from reconciler.plan import managed

        self.managed = managed
        self.lists = lists
        """Whether it is ever listed. When not (a watch-fed controller), it keeps each
        object's digest and identity only, not its text: it is not part of the controller,
        and the RSS measured is the controller's."""
        self.stored: dict[tuple[str, str, str], tuple[str, str, str]] = {}
        """(applied digest, uid, JSON text): text, so a listed apiserver weighs little in
        the process's RSS (the controller holds one list, not the server's copy too); the
        text of the object's identity only when it is never listed."""
        self.version = 0

    def apply(self, objects: Any) -> list[tuple[str, str]]:
        """Store the plan; return its watch events, (type, JSON text), in order."""
        events: list[tuple[str, str]] = []
        seen = set()
        for obj in objects:
            meta = obj["metadata"]
            key = (obj["kind"], meta.get("namespace", ""), meta["name"])
            seen.add(key)
            old = self.stored.get(key)
            digest = self.managed.applied_digest(obj)
            if old is not None and old[0] == digest:
                continue
            body = json.loads(json.dumps(self.managed.stamped(obj)))
            self.version += 1
            uid = old[1] if old else f"uid-{self.version}"
            body["metadata"] |= {
                "uid": uid,
                "resourceVersion": str(self.version),
                "managedFields": [
                    {
                        "manager": "cu-reconciler",
                        "operation": "Apply",
                        "apiVersion": obj["apiVersion"],
                        "fieldsType": "FieldsV1",
                        "fieldsV1": self.managed.fieldset_of(obj),
                    }
                ],
            }
            text = json.dumps(body)
            events.append(("MODIFIED" if old else "ADDED", text))
            if not self.lists:
                ident = {k: body["metadata"].get(k) for k in ("name", "namespace", "uid")}
                text = json.dumps({"kind": body["kind"], "metadata": ident})
            self.stored[key] = (digest, uid, text)
        for key in set(self.stored) - seen:
            events.append(("DELETED", self.stored.pop(key)[2]))
        return events

    def list(self) -> tuple[dict[str, Any], ...]:
        assert self.lists, "an apiserver that is never listed keeps no texts"
        return tuple(json.loads("[" + ",".join(t for _, _, t in self.stored.values()) + "]"))


def one_run(events: int, nodes: int = 5000, live_mode: str = "relist") -> dict[str, Any]:
    sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
    import cu_example as ex
    import generate_fleet

    from reconciler import plan as planning
    from reconciler.diff import changeset
    from reconciler.model import observed as obs
    from reconciler.observe import informer

    scale = nodes / FLEET["nodes"]
    desired, raw = generate_fleet.generate(
        nodes=nodes,
        devices_per_node=FLEET["devices_per_node"],
        tenants=max(1, round(FLEET["tenants"] * scale)),
        claims=max(1, round(FLEET["claims"] * scale)),
    )
    driver = desired.settings.spec.driver_name
    cpu = time.process_time
    if live_mode == "watch":
        # The controller holds the vendor slices and the Nodes in its watch stores too,
        # slimmed and shared (observe/informer.py), not as the generator made them.
        vendor = informer.Store("ResourceSlice", "/apis/resource.k8s.io/v1/resourceslices")

        def versioned(objs: Any) -> Any:
            return (
                {**o, "metadata": {**o["metadata"], "uid": f"u-{i}", "resourceVersion": "1"}}
                for i, o in enumerate(objs)
            )

        vendor.replace(versioned(raw.slices))
        node_store = informer.Store("Node", "/api/v1/nodes")
        node_store.replace(versioned(raw.nodes))
        raw = dataclasses.replace(
            raw, slices=tuple(vendor.items()), nodes=tuple(node_store.items())
        )
        del vendor, node_store
    server = _Apiserver(lists=live_mode == "relist")
    store = informer.Store("all", "/apis/x/v1/all")
    """``watch``: every kind in one store (the controller keeps one per kind; one sort)."""
    pending: list[tuple[str, str]] = []
    applied: list[Any] = []

    def publish(last: Any) -> None:
        """The apiserver's side of an apply (not timed): store the plan, queue its events."""
        applied[:] = [last.objects]
        if live_mode != "plan":
            pending.extend(server.apply(last.objects))

    def read_live() -> Any:
        """The controller's side (timed, part of the event): a re-list (``relist``), the
        watch events since the last read into the store (``watch``), or the last plan's
        own objects (``plan``, as ``plan --base`` does)."""
        if live_mode == "plan":
            return applied[0]
        if live_mode == "relist":
            pending.clear()
            return server.list()
        for kind, text in pending:
            store.event(kind, json.loads(text))
        pending.clear()
        store.adopt()
        return tuple(store.items())

    def live_side(last: Any) -> Any:
        publish(last)
        return read_live()

    # Steady state: what the controller holds after one reconcile (and one more, so the
    # memo has seen the live side it will be planned against).
    memo = obs.Memo()
    plan_memo = planning.Memo()
    changes_memo = changeset.Memo()
    # As the controller does (controller/loop.py): our stored objects share the spec of the
    # object planned for their key.
    store.twin = plan_memo.planned
    observed = obs.build(raw, desired.adapters, driver, memo)
    last = planning.plan(desired, observed, (), memo=plan_memo)
    live = live_side(last)
    last = planning.plan(desired, observed, live, memo=plan_memo)
    changeset.compute(last.objects, live, memo=changes_memo)
    publish(last)
    del live
    gc.collect()
    rss_steady = _rss_mb()

    t0 = cpu()
    observed = obs.build(raw, desired.adapters, driver)
    planning.plan(desired, observed, ())
    full_s = cpu() - t0

    wanted = desired
    """The desired state as the events so far left it."""

    def lose_node(raw: obs.RawObjects, index: int) -> obs.RawObjects:
        node = f"node-{index:05d}"
        return dataclasses.replace(
            raw,
            nodes=tuple(n for n in raw.nodes if n["metadata"]["name"] != node),
            slices=tuple(s for s in raw.slices if s["spec"].get("nodeName") != node),
        )

    def replan(lost: obs.RawObjects | None = None) -> tuple[float, int]:
        """The event's reconcile (timed): read the live side, observe again when the
        cluster changed (``lost``), plan, diff."""
        nonlocal last, observed
        t = cpu()
        live = read_live()
        if lost is not None:
            observed = obs.build(lost, desired.adapters, driver, memo)
        nxt = planning.plan(wanted, observed, live, memo=plan_memo)
        changes = changeset.compute(nxt.objects, nxt.live, memo=changes_memo)
        took = cpu() - t
        last = nxt
        publish(last)
        return took, len(changes.changes)

    def node_lost(index: int) -> tuple[float, int]:
        """Node ``index`` is lost (the node lost by the event before, if any, is back)."""
        return replan(lose_node(raw, index))

    def claim_added(index: int) -> tuple[float, int]:
        """One claim is added to Git; the cluster is as the last event left it."""
        nonlocal wanted
        extra = ex.claim(
            f"zz-claim-{index:05d}",
            {"tenant": "team-001", "pool": "inference", "cu": 25, "count": 1},
        )
        wanted = dataclasses.replace(wanted, claims=(*wanted.claims, extra))
        return replan()

    def claim_removed(index: int) -> tuple[float, int]:
        """The claim the event before added is removed again (so the series' inputs keep
        their size: what grows is the controller, not the fleet)."""
        nonlocal wanted
        wanted = dataclasses.replace(wanted, claims=wanted.claims[:-1])
        return replan()

    node_s, node_changes = node_lost(7)
    claim_s, claim_changes = claim_added(0)
    claim_removed(0)
    series = []
    cycle = (node_lost, claim_added, node_lost, claim_removed)
    for i in range(events):
        cycle[i % len(cycle)](100 + i)
        if (i + 1) % max(1, events // 10) == 0:
            gc.collect()
            series.append(round(_rss_mb()))
    gc.collect()
    return {
        "live": live_mode,
        "devices": len(observed.devices),
        "objects": len(last.objects),
        "full_s": full_s,
        "node_lost_s": node_s,
        "node_lost_changes": node_changes,
        "claim_added_s": claim_s,
        "claim_added_changes": claim_changes,
        "rss_steady_mb": rss_steady,
        "rss_after_events_mb": _rss_mb(),
        "events": events + 2,
        "rss_series_mb": series,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def memory_parts(nodes: int = 5000) -> dict[str, float]:
    """RSS taken by each part the controller holds (MB, after a collection each)."""
    sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
    import generate_fleet

    from reconciler import plan as planning
    from reconciler.diff import changeset
    from reconciler.model import observed as obs
    from reconciler.observe import informer

    scale = nodes / FLEET["nodes"]
    out: dict[str, float] = {}
    before = _rss_mb()

    def step(name: str) -> None:
        nonlocal before
        gc.collect()
        now = _rss_mb()
        out[name] = round(now - before)
        before = now

    desired, raw = generate_fleet.generate(
        nodes=nodes,
        devices_per_node=FLEET["devices_per_node"],
        tenants=max(1, round(FLEET["tenants"] * scale)),
        claims=max(1, round(FLEET["claims"] * scale)),
    )
    step("fleet_mb")
    observed = obs.build(raw, desired.adapters, desired.settings.spec.driver_name)
    step("observed_mb")
    planned = planning.plan(desired, observed, ())
    step("plan_mb")
    server = _Apiserver()
    server.apply(planned.objects)
    step("simulated_apiserver_mb")
    live = server.list()
    step("live_list_mb")
    out["live_json_mb"] = round(sum(len(t) for _, _, t in server.stored.values()) / 1e6)
    fields = [o["metadata"].get("managedFields") for o in live]
    out["managed_fields_json_mb"] = round(len(json.dumps(fields)) / 1e6, 1)
    del live, fields
    step("live_list_dropped_mb")
    store = informer.Store("all", "/apis/x/v1/all")
    store.replace(json.loads(t) for _, _, t in server.stored.values())
    step("watch_store_mb")
    memo = planning.Memo()
    changes = changeset.Memo()
    live = tuple(store.items())
    again = planning.plan(desired, observed, live, memo=memo)
    changeset.compute(again.objects, live, memo=changes)
    del planned
    step("plan_with_memo_and_changeset_memo_mb")
    # The store again, and a store whose objects share their planned twin's spec (what the
    # controller's store holds once a plan exists), each measured by tracemalloc: an RSS
    # delta cannot show a part built into memory freed before it.
    import tracemalloc

    for name, twinned in (("watch_store", False), ("watch_store_sharing_planned_specs", True)):
        tracemalloc.start()
        again_store = informer.Store("all", "/apis/x/v1/all")
        if twinned:
            again_store.twin = memo.planned
        again_store.replace(json.loads(t) for _, _, t in server.stored.values())
        out[f"{name}_traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 1e6)
        tracemalloc.stop()
        del again_store
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=10, help="extra events for the RSS figure")
    parser.add_argument("--nodes", type=int, default=5000, help="fleet size (all else scales)")
    parser.add_argument(
        "--live",
        choices=("relist", "watch", "plan"),
        default="watch",
        help="the live side: a re-list after applying (the controller with --no-watch-cache), "
        "the watch events into the controller's store (its default), or the last plan",
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--memory-parts", action="store_true", help="print the RSS of each part and exit"
    )
    args = parser.parse_args()
    if args.memory_parts:
        print(json.dumps(memory_parts(args.nodes)))
        return
    if args.one:
        print(json.dumps(one_run(args.events, args.nodes, args.live)))
        return
    results = []
    for _ in range(args.runs):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--events",
                str(args.events),
                "--nodes",
                str(args.nodes),
                "--live",
                args.live,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results.append(json.loads(out))
        print(out.strip(), flush=True)
    keys = [
        k for k in results[0] if k.endswith(("_s", "_mb")) and not isinstance(results[0][k], list)
    ]
    medians = {k: round(statistics.median(r[k] for r in results), 3) for k in keys}
    print(json.dumps({"median": medians, "runs": len(results)}))


if __name__ == "__main__":
    main()

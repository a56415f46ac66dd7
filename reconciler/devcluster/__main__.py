"""``python -m reconciler.devcluster up|down|status``: a local control plane left running.

``up`` builds the binaries if needed, starts the cluster in a state directory, prints the
kubeconfig path and returns; the components keep running in their own sessions. ``down``
stops them (only the processes recorded in ``state.json`` and still running our binaries)
and checks that no port is left listening. ``status`` says what runs. Exit codes: 0 ok,
1 not running (status/down), 2 cannot start (missing Go, start failure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from reconciler.devcluster import controlplane, drivers, kubelets, nodes
from reconciler.errors import ToolchainError

#: Nodes and pools that ``up --seed`` creates: one node per vendor.
SEED: tuple[tuple[str, drivers.Vendor, str, int], ...] = (
    ("node-nvidia-0", drivers.Vendor.NVIDIA, "H100", 8),
    ("node-biren-0", drivers.Vendor.BIREN, "BR104", 8),
    ("node-iluvatar-0", drivers.Vendor.ILUVATAR, "BI-V150", 8),
    ("node-hygon-0", drivers.Vendor.HYGON, "K100", 8),
    ("node-ascend-0", drivers.Vendor.ASCEND, "910B3", 8),
)


def default_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cu-reconciler" / "devcluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.devcluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=default_dir(), help="state directory")
    parser.add_argument("--seed", action="store_true", help="up: add one fake node per vendor")
    parser.add_argument(
        "--driver-name",
        default=kubelets.CU_DRIVER,
        help="up: the CU kubelet plugin's driver name (ClusterSettings.spec.driverName)",
    )
    parser.add_argument(
        "--kubelets",
        type=int,
        default=0,
        metavar="N",
        help="up: also start N real kubelets (fake CRI runtime, CU and NVIDIA plugins, 4× H100)",
    )
    args = parser.parse_args(argv)
    workdir: Path = args.dir.resolve()
    current = controlplane.ControlPlane.from_state(workdir)
    alive = current is not None and all(current.running().values())

    if args.command == "status":
        if current is None:
            print(f"not running (no state in {workdir})")
            return 1
        for name, up in current.running().items():
            print(f"{name:24} {'running' if up else 'STOPPED'} pid {current.pids[name]}")
        print(f"server      {current.server}\nkubeconfig  {current.kubeconfig}")
        return 0 if alive else 1

    if args.command == "down":
        if current is None:
            print(f"not running (no state in {workdir})")
            return 1
        kubelets.stop_all(workdir, current.log_dir)
        current.stop()
        print(f"stopped; logs kept in {current.log_dir}")
        return 0

    if alive and current is not None:
        print(f"already running: {current.server}\nexport KUBECONFIG={current.kubeconfig}")
        return 0
    if current is not None:
        kubelets.stop_all(workdir, current.log_dir)
        current.stop()  # half-dead leftovers: clear them before reusing the directory
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        cp = controlplane.start(workdir)
    except ToolchainError as exc:
        print(f"cannot build the control plane: {exc}", file=sys.stderr)
        return 2
    except controlplane.StartError as exc:
        print(f"cannot start the control plane: {exc}", file=sys.stderr)
        return 2
    if args.seed:
        with cp.api_client() as api:
            for node, vendor, model, count in SEED:
                nodes.create_node(api, node, {"cu-reconciler.io/vendor": vendor.value})
                drivers.publish_node(api, node, vendor, model, count)
    if args.kubelets > 0:
        try:
            started = start_kubelets(cp, workdir, args.kubelets, args.driver_name)
        except (kubelets.PluginBuildError, controlplane.StartError) as exc:
            print(f"cannot start kubelets: {exc}", file=sys.stderr)
            return 2
        print(f"kubelet nodes: {', '.join(n.name for n in started)}")
    print(f"ready in {cp.startup_seconds:.1f}s: {cp.server} (logs in {cp.log_dir})")
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def start_kubelets(
    cp: controlplane.ControlPlane, workdir: Path, count: int, driver: str = kubelets.CU_DRIVER
) -> list[kubelets.KubeletNode]:
    """Start ``count`` kubelet nodes ``kubelet-<i>`` with NVIDIA H100s and both plugins."""
    started: list[kubelets.KubeletNode] = []
    nvidia = drivers.vendor_driver(drivers.Vendor.NVIDIA).driver
    with cp.api_client() as api:
        for i in range(count):
            node = kubelets.start_node(
                cp,
                api,
                f"kubelet-{i}",
                vendor_drivers=[nvidia],
                labels={"cu-reconciler.io/vendor": "nvidia"},
                cu_driver=driver,
            )
            started.append(node)
            kubelets.save_state(workdir, started)
            drivers.publish_node(api, node.name, drivers.Vendor.NVIDIA, "H100", 4)
    return started


if __name__ == "__main__":
    sys.exit(main())

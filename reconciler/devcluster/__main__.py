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

KUBELET_MODELS: tuple[tuple[drivers.Vendor, str], ...] = tuple((v, m) for _, v, m, _ in SEED)
"""What ``up --kubelets N`` nodes publish, in turn: the seed's models, every vendor."""


def default_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cu-reconciler" / "devcluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.devcluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=default_dir(), help="state directory")
    parser.add_argument("--seed", action="store_true", help="up: add one fake node per vendor")
    parser.add_argument(
        "--repo",
        type=Path,
        help="up: the repository the cluster will serve; its ClusterSettings.spec.driverName "
        "names the CU kubelet plugin (the one place the name is written)",
    )
    parser.add_argument(
        "--driver-name",
        default=None,
        help="up: the CU kubelet plugin's driver name when there is no --repo "
        f"(default {kubelets.CU_DRIVER})",
    )
    parser.add_argument(
        "--kubelets",
        type=int,
        default=0,
        metavar="N",
        help="up: also start N real kubelets (fake CRI runtime, our plugin and the vendor's), "
        "one vendor after another: " + ", ".join(f"{v}:{m}" for v, m in KUBELET_MODELS),
    )
    parser.add_argument(
        "--kubelet-models",
        default=None,
        metavar="VENDOR:MODEL,...",
        help="up: the models the kubelet nodes publish, in turn (4 devices each)",
    )
    args = parser.parse_args(argv)
    try:
        driver = _driver_name(args.repo, args.driver_name)
        models = _models(args.kubelet_models)
    except ValueError as exc:
        print(f"devcluster: {exc}", file=sys.stderr)
        return 2
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
            started = start_kubelets(cp, workdir, args.kubelets, driver, models)
        except (kubelets.PluginBuildError, controlplane.StartError) as exc:
            print(f"cannot start kubelets: {exc}", file=sys.stderr)
            return 2
        print(f"kubelet nodes: {', '.join(n.name for n in started)}")
    print(f"ready in {cp.startup_seconds:.1f}s: {cp.server} (logs in {cp.log_dir})")
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


def _driver_name(repo: Path | None, flag: str | None) -> str:
    """The CU driver name: the repository's ClusterSettings (validated as ``cuctl`` does);
    ``--driver-name`` only without a repository, and never contradicting it."""
    if repo is None:
        return flag or kubelets.CU_DRIVER
    from reconciler import errors, source, validate

    try:
        result = validate.validate_tree(source.read(str(repo), None))
    except errors.SourceError as exc:
        raise ValueError(f"--repo {repo}: {exc}") from exc
    if result.state is None:
        first = result.errors[0].render() if result.errors else "invalid"
        raise ValueError(f"--repo {repo}: the desired state is invalid: {first}")
    name = result.state.settings.spec.driver_name
    if flag is not None and flag != name:
        raise ValueError(
            f"--driver-name {flag} contradicts {repo}'s ClusterSettings.spec.driverName "
            f"{name}: drop the flag, the settings are the one place the name is written"
        )
    return name


def _models(text: str | None) -> tuple[tuple[drivers.Vendor, str], ...]:
    """``--kubelet-models``: ``vendor:model`` pairs the simulated drivers know."""
    if text is None:
        return KUBELET_MODELS
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        vendor_text, _, model = item.partition(":")
        try:
            vendor = drivers.Vendor(vendor_text)
        except ValueError:
            known = ", ".join(v.value for v in drivers.Vendor)
            raise ValueError(
                f"--kubelet-models {item!r}: unknown vendor (known: {known})"
            ) from None
        models = drivers.vendor_driver(vendor).models
        if model not in models:
            raise ValueError(
                f"--kubelet-models {item!r}: unknown {vendor} model (known: {', '.join(models)})"
            )
        out.append((vendor, model))
    if not out:
        raise ValueError("--kubelet-models: no vendor:model given")
    return tuple(out)


def start_kubelets(
    cp: controlplane.ControlPlane,
    workdir: Path,
    count: int,
    driver: str = kubelets.CU_DRIVER,
    models: tuple[tuple[drivers.Vendor, str], ...] = (),
) -> list[kubelets.KubeletNode]:
    """Start ``count`` kubelet nodes ``kubelet-<i>``, node i publishing 4 devices of
    ``models[i % len(models)]`` (default :data:`KUBELET_MODELS`: one vendor after another),
    each with our plugin (as ``driver``) and that vendor's stand-in plugin."""
    started: list[kubelets.KubeletNode] = []
    models = models or KUBELET_MODELS
    with cp.api_client() as api:
        for i in range(count):
            vendor, model = models[i % len(models)]
            node = kubelets.start_node(
                cp,
                api,
                f"kubelet-{i}",
                vendor_drivers=[drivers.vendor_driver(vendor).driver],
                labels={"cu-reconciler.io/vendor": vendor.value},
                cu_driver=driver,
            )
            started.append(node)
            kubelets.save_state(workdir, started)
            drivers.publish_node(api, node.name, vendor, model, 4)
    return started


if __name__ == "__main__":
    sys.exit(main())

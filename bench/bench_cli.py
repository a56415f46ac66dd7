"""Benchmark: ``cuctl`` start-up and whole commands as processes, next to ``kubectl``.

Every figure is a whole process as a user, an editor or a pre-commit hook pays it:
interpreter start, imports, the work, exit. Runs are interleaved (one of each command per
round) so a change in machine load hits every command alike; the table reports the median
wall time, the median CPU time of the process (user + system, less sensitive to a shared
machine) and the median peak RSS (``wait4``). ``kubectl version --client`` is the local
control plane's kubectl (``hack/build-k8s.sh``). The big repository is
``bench/generate_repo.py``'s 200 tenants / 50 pools / 5,000 claims.

    .venv/bin/python bench/bench_cli.py [--runs 7] [--baseline /path/to/old/cuctl]
    .venv/bin/python bench/bench_cli.py --install-size   # what the pre-commit hook installs

``--baseline`` runs another ``cuctl`` (e.g. the main checkout's, without PYTHONPATH) in the
same rounds, for a before/after ratio under identical load.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TIME = "/usr/bin/time"  # GNU time (Debian package "time")
EXAMPLE = ROOT / "examples" / "gitrepo"
SNAPSHOT = EXAMPLE / "observed" / "snapshot.yaml"


@dataclass
class Series:
    label: str
    argv: list[str]
    env: dict[str, str]
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    codes: set[int] = field(default_factory=set)

    def run_once(self) -> None:
        """One run. Peak RSS comes from GNU time: a child's ``ru_maxrss`` from ``wait4``
        starts at this (large) parent's RSS at fork, which would hide small processes."""
        with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [_TIME, "-f", "%M", "-o", rss.name, *self.argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=self.env,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            self.wall.append(time.perf_counter() - start)
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu.append(usage.ru_utime + usage.ru_stime)
            self.rss_mb.append(int(rss.read().split()[-1]) / 1024)
        self.codes.add(proc.returncode)

    def row(self) -> str:
        return (
            f"| `{self.label}` | {statistics.median(self.wall):.2f} s | "
            f"{statistics.median(self.cpu):.2f} s | {statistics.median(self.rss_mb):.0f} MB | "
            f"{','.join(map(str, sorted(self.codes)))} |"
        )


def _kubectl(given: str | None) -> Path | None:
    if given:
        return Path(given)
    from reconciler.devcluster import binaries

    found = binaries.cached()
    return found.kubectl if found is not None else None


def _big_repo(base: Path) -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    generator = importlib.import_module("generate_repo")
    root = base / "big"
    generator.write_synthetic(root, 200, 50, 5000)
    return root


def _commands(cuctl: list[str], big: Path) -> list[tuple[str, list[str]]]:
    return [
        ("cuctl --version", [*cuctl, "--version"]),
        ("cuctl --help", [*cuctl, "--help"]),
        ("cuctl validate examples/gitrepo", [*cuctl, "validate", str(EXAMPLE)]),
        (
            "cuctl plan examples/gitrepo --observed …",
            [*cuctl, "plan", str(EXAMPLE), "--observed", str(SNAPSHOT)],
        ),
        ("cuctl render examples/gitrepo", [*cuctl, "render", str(EXAMPLE)]),
        ("cuctl validate BIG", [*cuctl, "validate", str(big)]),
        (
            "cuctl plan BIG --observed BIG/observed/snapshot.yaml",
            [*cuctl, "plan", str(big), "--observed", str(big / "observed" / "snapshot.yaml")],
        ),
    ]


def measure(args: argparse.Namespace) -> None:
    # Bytecode caches on, as an installed package has them (pip compiles at install time):
    # with PYTHONDONTWRITEBYTECODE set (this machine sets it), an editable checkout would
    # recompile every module on every run, about 0.6 s of CPU that no user pays.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["NO_COLOR"] = "1"
    cuctl = [args.cuctl or str(Path(sys.executable).parent / "cuctl")]
    series: list[Series] = []
    kubectl = _kubectl(args.kubectl)
    if kubectl is not None:
        series.append(
            Series("kubectl version --client", [str(kubectl), "version", "--client"], env)
        )
    else:
        print("kubectl is not built (hack/build-k8s.sh); no kubectl row", file=sys.stderr)
    series.append(Series("python -c pass (same interpreter)", [sys.executable, "-c", "pass"], env))
    with tempfile.TemporaryDirectory(prefix="cu-bench-cli-") as tmp:
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        big = _big_repo(Path(tmp))
        commands = _commands(cuctl, big)
        for label, argv in commands[: 3 if args.quick else len(commands)]:
            series.append(Series(label, argv, env))
            if args.baseline:
                old_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
                series.append(Series(f"{label} (baseline)", [args.baseline, *argv[1:]], old_env))
        for s in series:  # warm the page cache and the .pyc files; not counted
            s.run_once()
            s.wall.clear()
            s.cpu.clear()
            s.rss_mb.clear()
        load = [os.getloadavg()[0]]
        for _ in range(args.runs):
            for s in series:
                s.run_once()
            load.append(os.getloadavg()[0])
    print(f"# {platform.node()} {platform.machine()} {_cpu()}, {os.cpu_count()} CPUs")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, runs={args.runs}, ", end="")
    print(f"load average {min(load):.1f}–{max(load):.1f}")
    print("| command | wall (median) | CPU (median) | peak RSS (median) | exit |")
    print("|---|---|---|---|---|")
    for s in series:
        print(s.row())


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def install_size() -> None:
    """Build the wheel, install it into a fresh venv as ``pip install .`` would, measure."""
    with tempfile.TemporaryDirectory(prefix="cu-bench-install-") as tmp:
        base = Path(tmp)
        src = base / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(
            ROOT / "reconciler", src / "reconciler", ignore=shutil.ignore_patterns("__pycache__")
        )
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(src)], check=True)
        wheel = next((base / "dist").glob("*.whl"))
        for extras in ("", "[all]"):
            venv = base / f"venv{extras or '-core'}"
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            start = time.perf_counter()
            subprocess.run(
                [*pip, "--python", str(venv / "bin" / "python"), "install", f"{wheel}{extras}"],
                check=True,
            )
            took = time.perf_counter() - start
            site = next(venv.glob("lib/python*/site-packages"))
            count = len(list(site.glob("*.dist-info")))
            print(
                f"| `pip install cu-reconciler{extras}` | {_du(site) / 1e6:.0f} MB site-packages "
                f"({_du(venv) / 1e6:.0f} MB venv, no pip) | {count} distributions | {took:.0f} s |"
            )


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cuctl", help="the cuctl to measure (default: next to this python)")
    parser.add_argument("--baseline", help="another cuctl, measured in the same rounds")
    parser.add_argument("--kubectl", help="kubectl to compare with (default: the built one)")
    parser.add_argument("--install-size", action="store_true", help="measure installs instead")
    parser.add_argument(
        "--quick", action="store_true", help="only --version, --help, validate examples"
    )
    args = parser.parse_args()
    if args.install_size:
        install_size()
    else:
        measure(args)


if __name__ == "__main__":
    main()

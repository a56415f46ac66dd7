"""``cuctl`` starts without loading what a command does not use, and installs lean.

Each command line runs in a fresh interpreter that records ``sys.modules`` at exit, so a
module-level import of a heavy library anywhere on a command's path fails here instead of
silently slowing every pre-commit hook and CI run. The last test builds a real virtualenv
with only the core dependencies and checks what a core install can and cannot do.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
import typer
import typer.main

import reconciler
from reconciler import cli
from reconciler.cli import _extras

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitrepo"
SNAPSHOT = EXAMPLE / "observed" / "snapshot.yaml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

#: Never loaded by --help, validate, offline plan or render.
HEAVY = (
    "kubernetes",
    "statsmodels",
    "scipy",
    "pandas",
    "pyarrow",
    "matplotlib",
    "numpy",
    "cryptography",
    "prometheus_client",
    "hypercorn",
    "jsonschema",
    "urllib3",
    "reconciler.devcluster",
    "reconciler.learn",
    "reconciler.controller",
    "reconciler.apply",
)
#: Not needed to print help or a version either.
NOT_FOR_HELP = (*HEAVY, "pydantic", "git", "ruamel", "reconciler.model", "reconciler.validate")
#: Typer converts parsed parameter values with pydantic, so only --help/--version avoid it.
NOT_FOR_PARSING = tuple(name for name in NOT_FOR_HELP if name != "pydantic")

_PROBE = """
import atexit, json, sys
_out = sys.argv[1]
def _dump():
    with open(_out, "w") as fh:
        json.dump(sorted(sys.modules), fh)
atexit.register(_dump)
sys.argv = ["cuctl", *sys.argv[2:]]
from reconciler.cli import main
main()
"""


def run_cuctl(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``cuctl ARGS`` in a fresh interpreter; return it and the modules it loaded."""
    dump = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(dump), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env or {})},
        timeout=120,
        check=False,
    )
    assert dump.exists(), proc.stderr
    return proc, set(json.loads(dump.read_text()))


def loaded(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name for name in forbidden if any(m == name or m.startswith(name + ".") for m in modules)
    )


@pytest.mark.parametrize(
    ("args", "code", "forbidden"),
    [
        (["--help"], 0, NOT_FOR_HELP),
        (["--version"], 0, NOT_FOR_HELP),
        ([], 2, NOT_FOR_HELP),
        (["completion", "bash"], 0, NOT_FOR_PARSING),
        (["validate", str(EXAMPLE)], 0, (*HEAVY, "git")),
        (["validate", str(EXAMPLE), "-o", "json"], 0, (*HEAVY, "git")),
        (["plan", str(EXAMPLE), "--observed", str(SNAPSHOT)], 1, HEAVY),
        (["plan", str(EXAMPLE), "--observed", str(SNAPSHOT), "-o", "markdown"], 1, HEAVY),
        (["render", str(EXAMPLE)], 0, HEAVY),
        (["render", str(EXAMPLE), "--observed", str(SNAPSHOT)], 0, HEAVY),
        (["plan", "--help"], 0, HEAVY),
        (["validate", "--help"], 0, HEAVY),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_command_loads_no_heavy_module(
    tmp_path: Path, args: list[str], code: int, forbidden: tuple[str, ...]
) -> None:
    proc, modules = run_cuctl(tmp_path, *args)
    assert proc.returncode == code, proc.stderr
    assert loaded(modules, forbidden) == [], f"cuctl {' '.join(args)} imported them"


def test_validate_at_a_revision_reads_git_and_still_nothing_heavy(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "example"], check=True)
    proc, modules = run_cuctl(tmp_path, "validate", str(repo), "--rev", "HEAD")
    assert proc.returncode == 0, proc.stderr
    assert "git" in modules  # the revision is read through gitpython
    assert loaded(modules, HEAVY) == []


def test_help_lists_every_visible_command_and_names_the_version_option(tmp_path: Path) -> None:
    proc, _ = run_cuctl(tmp_path, "--help")
    for name, entry in cli._COMMANDS.items():
        listed = re.search(rf"^[│ ]+{name}  ", proc.stdout, re.MULTILINE) is not None
        assert listed is not entry.hidden, name
    assert "--version" in proc.stdout and "--install-completion" in proc.stdout


def test_version_has_one_source(tmp_path: Path) -> None:
    """pyproject reads the version from ``reconciler.__version__``; cuctl prints that."""
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert "version" not in PYPROJECT["project"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "reconciler.__version__"
    proc, _ = run_cuctl(tmp_path, "--version")
    assert proc.stdout.strip() == f"cuctl {reconciler.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", reconciler.__version__)


def test_shell_completion_answers_from_the_registry_without_imports(tmp_path: Path) -> None:
    """What bash runs on <TAB>: the completion protocol, in a fresh process."""
    proc, modules = run_cuctl(
        tmp_path,
        env={"_CUCTL_COMPLETE": "complete_bash", "COMP_WORDS": "cuctl v", "COMP_CWORD": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["validate"]
    assert loaded(modules, NOT_FOR_PARSING) == []
    proc, _ = run_cuctl(
        tmp_path,
        env={"_CUCTL_COMPLETE": "complete_bash", "COMP_WORDS": "cuctl ", "COMP_CWORD": "1"},
    )
    visible = [name for name, entry in cli._COMMANDS.items() if not entry.hidden]
    assert sorted(proc.stdout.split()) == sorted(visible)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_command_prints_a_script_for_cuctl(tmp_path: Path, shell: str) -> None:
    proc, _ = run_cuctl(tmp_path, "completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert "_CUCTL_COMPLETE" in proc.stdout and "cuctl" in proc.stdout


def test_bash_sources_the_completion_script(tmp_path: Path) -> None:
    """The printed script is valid bash and registers a completion function for cuctl."""
    proc, _ = run_cuctl(tmp_path, "completion", "bash")
    script = tmp_path / "cuctl.bash"
    script.write_text(proc.stdout)
    check = subprocess.run(
        ["bash", "-c", f"source {script} && complete -p cuctl"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert "cuctl" in check.stdout


def test_unknown_command_suggests_from_the_whole_registry(tmp_path: Path) -> None:
    proc, modules = run_cuctl(tmp_path, "valdate")
    assert proc.returncode == 2
    assert "No such command 'valdate'" in proc.stderr and "'validate'" in proc.stderr
    assert loaded(modules, NOT_FOR_PARSING) == []


def _real_commands() -> dict[str, tuple[str, str, bool]]:
    """Every command the modules register: name → (module, help, hidden), imports them all."""
    for module in cli._COMMAND_MODULES:
        __import__(f"reconciler.cli.{module}")
    found: dict[str, tuple[str, str, bool]] = {}
    for info in cli.app.registered_commands:
        assert info.callback is not None
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        doc = inspect.getdoc(info.callback) or ""
        module = info.callback.__module__.rsplit(".", 1)[-1]
        found[name] = (module, doc, info.hidden)
    for group in cli.app.registered_groups:
        assert isinstance(group.name, str) and group.typer_instance is not None
        help_text = group.typer_instance.info.help
        callback = group.typer_instance.registered_commands[0].callback
        assert callback is not None
        module = callback.__module__
        found[group.name] = (module.rsplit(".", 1)[-1], str(help_text), False)
    return found


def test_the_help_registry_matches_the_commands() -> None:
    """The static registry is what --help shows without importing: it must not drift."""
    real = _real_commands()
    missing = sorted(set(real) - set(cli._COMMANDS))
    assert not missing, (
        f"add {missing} to _COMMANDS in reconciler/cli/__init__.py (name: Entry(module, help))"
    )
    assert sorted(set(cli._COMMANDS) - set(real)) == []
    for name, entry in cli._COMMANDS.items():
        module, doc, hidden = real[name]
        first_paragraph = " ".join(doc.split("\n\n")[0].split())
        assert (entry.module, entry.help, entry.hidden) == (module, first_paragraph, hidden), name
        assert entry.module in cli._COMMAND_MODULES


def test_the_extras_table_matches_pyproject() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    core = " ".join(PYPROJECT["project"]["dependencies"]).lower()

    def names(extra: str) -> set[str]:
        out: set[str] = set()
        for req in extras[extra]:
            name = re.split(r"[<>=!\[; ]", req, maxsplit=1)[0].lower().replace("-", "_")
            if name == "cu_reconciler":
                inner = re.search(r"\[(.*)\]", req)
                assert inner is not None
                for sub in inner.group(1).split(","):
                    out |= names(sub.strip())
            else:
                out.add(name)
        return out

    for module, extra in _extras.EXTRA_OF.items():
        assert module in names(extra), f"{module} is not installed by [{extra}]"
        assert module.replace("_", "-") not in core, f"{module} is heavy: not a core dependency"
    assert names("all") >= {m for m in _extras.EXTRA_OF}
    assert names("dev") >= names("all") | {"pytest", "mypy", "ruff", "jsonschema"}
    for entry in cli._COMMANDS.values():
        assert entry.extra is None or entry.extra in extras


def test_bootstrap_and_hook_install_what_they_need() -> None:
    """The dev venv gets every extra; the pre-commit hook installs the bare package (core)."""
    bootstrap = (ROOT / "hack" / "bootstrap.sh").read_text()
    assert "-e '.[dev]'" in bootstrap
    hook = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "entry: cuctl validate" in hook and "additional_dependencies" not in hook


# -- a real core-only install ------------------------------------------------------------


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the project's wheel and its core dependencies only.

    The wheel is built from a copy of the sources (setuptools writes build/ next to them);
    pip resolves the core dependencies as the pre-commit hook's ``pip install .`` does.
    """
    base = tmp_path_factory.mktemp("core-venv")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "reconciler", src / "reconciler", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(base / "dist"), str(src)], check=True, timeout=600
    )
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300
    )
    wheel = next((base / "dist").glob("cu_reconciler-*.whl"))
    subprocess.run(
        [*pip, "--python", str(venv / "bin" / "python"), "install", str(wheel)],
        check=True,
        timeout=900,
    )
    return venv


def core(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / "cuctl"), *args],
        capture_output=True,
        text=True,
        cwd=venv,
        env={**env, "NO_COLOR": "1"},
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_core_install_holds_no_extra(core_venv: Path) -> None:
    listed = subprocess.run(
        [
            str(core_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; "
            "print('\\n'.join(d.metadata['Name'].lower() for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "cu-reconciler" in listed
    for module in _extras.EXTRA_OF:
        assert module.replace("_", "-") not in listed
    assert "jsonschema" not in listed


@pytest.mark.slow
def test_core_install_validates_plans_and_renders(core_venv: Path) -> None:
    assert core(core_venv, "--version").stdout.strip() == f"cuctl {reconciler.__version__}"
    proc = core(core_venv, "validate", str(EXAMPLE))
    assert proc.returncode == 0, proc.stderr
    proc = core(core_venv, "plan", str(EXAMPLE), "--observed", str(SNAPSHOT), "-o", "json")
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)
    proc = core(core_venv, "render", str(EXAMPLE))
    assert proc.returncode == 0, proc.stderr
    assert "kind: ResourceClaimTemplate" in proc.stdout or "kind: DeviceClass" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["plan", str(EXAMPLE), "--kubeconfig", "kubeconfig"], "kube"),
        (["render", str(EXAMPLE), "--kubeconfig", "kubeconfig"], "kube"),
        (["apply", str(EXAMPLE), "--kubeconfig", "kubeconfig"], "kube"),
        (["factors", "show", "--repo", str(EXAMPLE)], "learn"),
        (["factors", "--help"], "learn"),
    ],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else v,
)
def test_core_install_names_the_missing_extra(core_venv: Path, args: list[str], extra: str) -> None:
    proc = core(core_venv, *args)
    assert proc.returncode == 2, proc.stderr
    assert f"pip install 'cu-reconciler[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"cuctl {args[0]}: needs the '{extra}' extra")


@pytest.mark.slow
def test_core_install_demo_says_it_needs_a_checkout(core_venv: Path) -> None:
    proc = core(core_venv, "demo")
    assert proc.returncode == 2
    assert "source checkout" in proc.stderr and "hack/bootstrap.sh" in proc.stderr
    assert "hack/build-k8s.sh" in proc.stderr and "Traceback" not in proc.stderr


def test_a_module_without_registry_lines_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another helper's module named only in _COMMAND_MODULES: listed and runnable, not lazy."""
    from typer.testing import CliRunner

    monkeypatch.setattr(cli.app, "registered_commands", list(cli.app.registered_commands))
    monkeypatch.setattr(cli, "_COMMAND_MODULES", (*cli._COMMAND_MODULES, "_probe"))
    probe = types.ModuleType("reconciler.cli._probe")

    def probe_command() -> None:
        """Answer the probe."""
        typer.echo("probed")

    probe_command.__module__ = probe.__name__
    cli.app.command("probe")(probe_command)
    monkeypatch.setitem(sys.modules, probe.__name__, probe)
    runner = CliRunner()
    listing = runner.invoke(cli.app, ["--help"])
    assert listing.exit_code == 0 and re.search(
        r"^\s+probe\s+Answer the probe", listing.stdout, re.M
    )
    ran = runner.invoke(cli.app, ["probe"])
    assert (ran.exit_code, ran.stdout) == (0, "probed\n")
    assert runner.invoke(cli.app, ["validate", "--help"]).exit_code == 0

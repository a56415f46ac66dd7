"""Memory is bounded by the commit, not by the attacker (issue 20, item 2).

Each hostile revision of the issue is built with ``git fast-import`` (small on disk), then
``cuctl validate --rev`` and ``cuctl plan --rev`` run in a child process under the
controller's shipped memory limit (deploy/deployment.yaml: 512Mi) as an address-space limit
(``RLIMIT_AS``): a revision that made either exceed it would die with MemoryError instead of
printing the one diagnostic asserted here. The child's peak RSS is checked too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gitplumbing
import pytest

LIMIT = 512 * 2**20
"""The controller's memory limit in deploy/deployment.yaml."""

_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from reconciler import cli
from reconciler.cli import plan, validate  # noqa: F401  (register the commands)
code = 0
try:
    returned = cli.app(sys.argv[2:], standalone_mode=False)
    code = returned if isinstance(returned, int) else 0
except SystemExit as exc:
    code = exc.code
except MemoryError:
    code = "MemoryError"
except Exception as exc:  # typer's Exit in standalone_mode=False
    code = getattr(exc, "exit_code", repr(exc))
# VmHWM: this process's own peak RSS (ru_maxrss would carry the parent's over fork+exec)
hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
peak = int(hwm.split()[1]) * 1024
print("\n@@" + json.dumps({"code": code, "peak": peak}), flush=True)
"""


def _address_space_needed() -> int:
    """The address space the interpreter and the CLI's imports reserve before any input
    (shared libraries, thread arenas): added to the limit, so RLIMIT_AS bounds what the
    input can make the process allocate by the controller's 512Mi."""
    script = (
        "import resource\nfrom reconciler import cli\nfrom reconciler.cli import plan, validate\n"
        "import reconciler.validate, reconciler.plan, reconciler.observe\n"
        "print(open('/proc/self/status').read())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout
    vm = next(line for line in out.splitlines() if line.startswith("VmSize:"))
    rss = next(line for line in out.splitlines() if line.startswith("VmRSS:"))
    return (int(vm.split()[1]) - int(rss.split()[1])) * 1024


def _run(*args: str) -> tuple[object, int, str]:
    limit = LIMIT + _OVERHEAD[0]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(limit), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    marker = proc.stdout.rfind("\n@@")
    assert marker >= 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[marker + 3 :])
    return result["code"], int(result["peak"]), proc.stdout[:marker] + proc.stderr


_OVERHEAD: list[int] = []


@pytest.fixture(scope="module", autouse=True)
def _measure_overhead() -> None:
    _OVERHEAD.append(_address_space_needed())


CASES = {
    # case (gitplumbing.HOSTILE): the code validate and plan must report first ("" = valid)
    "16-paths-to-one-60MB-blob": "CU102",
    "16-paths-to-one-20MB-blob": "CU117",
    "24MB-snapshot-as-one-flow-list": "CU117",
    "100k-tiny-files": "CU111",
    "20k-files-of-flow-lists": "CU117",
    "alias-bomb-in-many-documents": "CU105",
    "deep-nesting-outside-the-layout": "",
    "both-budgets-at-once": "CU117",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_and_plan_stay_under_the_controller_limit(tmp_path: Path, case: str) -> None:
    root = gitplumbing.hostile_revision(tmp_path / "repo", case)
    for command in ("validate", "plan"):
        code, peak, output = _run(command, str(root), "--rev", "HEAD")
        assert code != "MemoryError", f"{command}: over {LIMIT} bytes"
        assert peak < LIMIT, f"{command}: peak RSS {peak / 2**20:.0f} MiB"
        if CASES[case]:
            assert code in (1, 2), (command, code, output[-2000:])
            assert CASES[case] in output, output[-2000:]
            lines = [line for line in output.splitlines() if ": CU" in line]
            assert lines and CASES[case] in lines[0], "the cause is the first error"
        else:  # valid: validate passes, plan prints its plan (exit 1: there are changes)
            assert code in ((0,) if command == "validate" else (0, 1)), (command, output[-2000:])
            assert "Traceback" not in output and ": CU" not in output, output[-2000:]

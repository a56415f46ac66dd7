"""hack/build-k8s.sh fails with one clear sentence when Go or the module proxy is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.devcluster import binaries
from reconciler.errors import ToolchainError

SCRIPT = binaries.build_script()


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)


def _path_without_go() -> str:
    go = shutil.which("go")
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(d for d in dirs if not go or Path(d) != Path(go).parent)


def test_missing_go_is_one_clear_message(tmp_path: Path) -> None:
    env = {"PATH": _path_without_go(), "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    if shutil.which("go", path=env["PATH"]):
        pytest.skip("go is also installed outside its own directory on PATH")
    proc = _run(env)
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "the Go toolchain is not on PATH" in proc.stderr
    assert "Kubernetes v1.37" in proc.stderr


def test_missing_go_raises_toolchain_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_without_go())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if shutil.which("go"):
        pytest.skip("go is also installed outside its own directory on PATH")
    with pytest.raises(ToolchainError, match="exit 3"):
        binaries.ensure_built(quiet=True)


@pytest.mark.skipif(shutil.which("go") is None, reason="needs go to reach the download step")
def test_unreachable_modules_are_one_clear_message(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "GOMODCACHE": str(tmp_path / "mod"),  # empty: every module must be downloaded
        "GOPROXY": "off",
    }
    proc = _run(env)
    assert proc.returncode == 4
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error) == 1, proc.stderr
    assert "cannot download the Go modules" in error[0]
    assert "GOPROXY=off" in error[0]

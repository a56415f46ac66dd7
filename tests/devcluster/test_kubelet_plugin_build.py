"""hack/build-plugin.sh builds once and is cached by content; the plugin's Go tests pass.

The Go unit tests (kubeletplugin/internal/...: CU facts from an allocation, MPS knobs, CDI
resolution and conflicts) run through ``go test`` here so the suite runs them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from reconciler.devcluster import kubelets

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "build-plugin.sh"
GO_ENV = {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GOWORK": "off"}


def test_build_is_cached_and_print_agrees() -> None:
    bins = kubelets.build_plugin()
    assert os.access(bins.plugin, os.X_OK) and os.access(bins.fake_cri, os.X_OK)
    warm = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=True)
    printed = subprocess.run(
        ["bash", str(SCRIPT), "--print"], capture_output=True, text=True, check=True
    )
    assert warm.stdout == printed.stdout == f"PLUGIN_BIN_DIR={bins.plugin.parent}\n"
    assert warm.stderr == "", "a warm run builds nothing"
    bad = subprocess.run(["bash", str(SCRIPT), "--nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_plugin_go_unit_tests_pass() -> None:
    proc = subprocess.run(
        ["go", "test", "./..."],
        cwd=ROOT / "kubeletplugin",
        capture_output=True,
        text=True,
        env={**os.environ, **GO_ENV},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok  \tcu-reconciler.invalid/kubeletplugin/internal/driver" in proc.stdout

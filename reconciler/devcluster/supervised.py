"""Helper processes run beside the local control plane (Argo CD's, Flux's controllers).

Why one place: each GitOps tool the tests run for real is a handful of binaries started as
children with their logs in one folder, waited on with those logs in the failure message, and
stopped in reverse order. The tool modules (:mod:`argocd`, :mod:`flux`) only say which
binaries with which flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from reconciler.devcluster import controlplane, rawapi


@dataclass(slots=True)
class Supervised:
    """Processes started together under ``workdir``, each logging to ``logs/<name>.log``."""

    workdir: Path
    processes: dict[str, controlplane._Process] = field(default_factory=dict, kw_only=True)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"----- {path} -----\n" + "\n".join(text))
        return "\n".join(parts)

    def wait_for(self, probe: Any, timeout: float, what: str) -> Any:
        """Poll ``probe`` each second until truthy; on timeout fail with every process's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(
            f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tail(30)}"
        )

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], *, binary: Path | None = None
    ) -> None:
        """Start ``argv[0]`` as ``name`` in its own session, output to its log. ``binary`` is
        the file that runs when ``argv[0]`` is a multi-call name for it (Argo CD's)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes[name] = controlplane._spawn(
            name,
            binary or Path(argv[0]),
            argv,
            self.log_dir / f"{name}.log",
            env=env,
            cwd=self.workdir,
        )

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            controlplane._terminate(self.processes[name], 10.0)
        self.processes.clear()


def crd_established(api: ApiClient, name: str) -> bool:
    crd = rawapi.request(
        api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    )
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

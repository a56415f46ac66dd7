"""``cuctl export`` on the real apiserver: engine mode's metrics (issue 23.5).

The CUEngineStatus that ``cuctl render --status`` made of the example repository is applied
to the real apiserver (its CRD schema from deploy/engine validates it); ``cuctl export`` runs
as a process with the exporter's own ServiceAccount and RBAC (deploy/engine/rbac.yaml).

Proves: the object is served as the controller's metric names with the ``cluster`` label
(per pool and tenant figures equal the object's, the render's revision as the applied one);
a new revision moves the series (the old one is gone); the exporter's identity can read that
object and write nothing; a deleted object clears the figures; SIGTERM exits 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine_install
import git
import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from ruamel.yaml import YAML
from typer.testing import CliRunner

from reconciler import cli, devcluster
from reconciler.controller import engine_status
from reconciler.devcluster import identity, rawapi
from reconciler.observe import cluster
from reconciler.plan import gitops

pytestmark = pytest.mark.integration

for _name in ("plan", "history"):
    __import__(f"reconciler.cli.{_name}")

PATH = engine_status.path("cu-system")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _until(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _status_object(repo: git.Repo) -> dict[str, Any]:
    sha = repo.head.commit.hexsha
    result = CliRunner().invoke(
        cli.app, ["render", str(repo.working_dir), "--status", "--source-revision", sha]
    )
    assert result.exit_code == 0, result.output
    [status] = [
        o for o in YAML(typ="safe").load_all(result.stdout) if o and o["kind"] == "CUEngineStatus"
    ]
    return dict(status)


def test_export_serves_the_engine_status_as_the_controllers_metrics(
    control_plane: devcluster.ControlPlane, example_repo: git.Repo, tmp_path: Path
) -> None:
    with control_plane.api_client() as api:
        identity.ensure_namespace(api, "cu-system")
        account = engine_install.install(api)
        assert account == ("cu-system", "cu-engine-exporter")
        status = _status_object(example_repo)
        assert status["report"]["revision"] == example_repo.head.commit.hexsha
        rawapi.apply(api, PATH, status, field_manager="argocd-controller")
        # `cuctl history --object` traces it to its commit and author (issue 23.4).
        traced = CliRunner().invoke(
            cli.app,
            [
                "history",
                str(example_repo.working_dir),
                "--object",
                f"CUEngineStatus/cu-system/{gitops.STATUS_NAME}",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "-o",
                "json",
            ],
        )
        assert traced.exit_code == 0, traced.output
        found = json.loads(traced.stdout)
        assert (found["revision"], found["author"]) == (status["report"]["revision"], "test")
        report = status["report"]
        kubeconfig = identity.service_account_kubeconfig(api, control_plane.kubeconfig, *account)

        # The exporter's identity reads that one object and writes nothing.
        reader_api = cluster.connect(str(kubeconfig))
        try:
            assert (
                rawapi.request(reader_api, "GET", PATH)["report"]["revision"] == report["revision"]
            )
            for method, body in (("DELETE", None), ("PATCH", {"metadata": {"labels": {"x": "y"}}})):
                with pytest.raises(ApiException) as refused:
                    rawapi.request(reader_api, method, PATH, body=body)
                assert refused.value.status == 403, method
        finally:
            reader_api.close()

        port = _free_port()
        log = tmp_path / "export.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reconciler.cli",
                    "export",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--cluster",
                    "dc-east",
                    "--interval",
                    "0.5s",
                    "--metrics-port",
                    str(port),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            cluster_label = ("cluster", "dc-east")

            def revision_series(samples: dict[Any, float]) -> set[str]:
                return {
                    dict(labels)["revision"]
                    for (name, labels), v in samples.items()
                    if name == "cu_revision_info" and v == 1
                }

            samples = _until(
                lambda: (s := _samples(port)) and revision_series(s) == {report["revision"]} and s,
                60,
                "the applied revision on /metrics",
            )
            for (name, labels), _ in samples.items():
                assert cluster_label in labels, (name, labels)
            for p in report["pools"]:
                key = tuple(sorted({cluster_label, ("pool", p["name"])}))
                assert samples[("cu_pool_capacity_cu", key)] == p["capacityCU"]
                assert samples[("cu_pool_admitted_cu", key)] == p["admittedCU"]
                assert samples[("cu_pool_guaranteed_cu", key)] == p["guaranteedCU"]
                assert samples[("cu_pending_claims", key)] == p["pendingClaims"]
            for t in report["tenants"]:
                key = tuple(sorted({cluster_label, ("pool", t["pool"]), ("tenant", t["name"])}))
                assert samples[("cu_tenant_admitted_cu", key)] == t["admittedCU"]
            assert samples[("cu_apiserver_up", (cluster_label,))] == 1
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                assert resp.status == 200

            # A new revision (the engine synced the next commit): the series moves.
            moved = {**status, "report": {**report, "revision": "e" * 40}}
            rawapi.apply(api, PATH, moved, field_manager="argocd-controller")
            _until(
                lambda: revision_series(_samples(port)) == {"e" * 40}, 30, "the revision to move"
            )

            # The object is deleted (the engine's Application went): nothing describes the
            # cluster any more, so the figures go.
            rawapi.delete(api, PATH)
            _until(
                lambda: (
                    not any(
                        name in ("cu_pool_admitted_cu", "cu_revision_info")
                        for name, _ in _samples(port)
                    )
                ),
                30,
                "the figures to be cleared",
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        text = log.read_text()
        assert "Traceback" not in text, text
        assert report["revision"] in text, text


def test_history_object_says_where_it_stopped_with_exit_3(
    control_plane: devcluster.ControlPlane, example_repo: git.Repo
) -> None:
    """Issue 23.4 through the CLI and the real apiserver: a live object an engine applied
    (content hash, no revision) is traced past newer commits that render it unchanged; with
    too small a --max-commits the walk says where it stopped and exits 3, never a wrong
    commit with exit 0."""
    first = example_repo.head.commit.hexsha
    result = CliRunner().invoke(cli.app, ["render", str(example_repo.working_dir)])
    assert result.exit_code == 0, result.output
    quota = next(
        o for o in YAML(typ="safe").load_all(result.stdout) if o and o["kind"] == "ResourceQuota"
    )
    meta = quota["metadata"]
    for i in range(3):  # newer commits that do not change the quota
        Path(example_repo.working_dir, "README.md").write_text(f"note {i}\n")
        example_repo.git.add(A=True)
        example_repo.index.commit(f"docs {i}")
    with control_plane.api_client() as api:
        identity.ensure_namespace(api, meta["namespace"])
        rawapi.apply(
            api,
            f"/api/v1/namespaces/{meta['namespace']}/resourcequotas/{meta['name']}",
            quota,
            field_manager="kustomize-controller",
        )
    spec = f"ResourceQuota/{meta['namespace']}/{meta['name']}"

    def trace(*extra: str) -> Any:
        return CliRunner().invoke(
            cli.app,
            [
                "history",
                str(example_repo.working_dir),
                "--object",
                spec,
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "-o",
                "json",
                *extra,
            ],
        )

    found = trace()
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["revision"] == first
    stopped = trace("--max-commits", "2")
    assert stopped.exit_code == 3, stopped.output
    assert not stopped.stdout
    assert "raise --max-commits" in stopped.output and "Traceback" not in stopped.output

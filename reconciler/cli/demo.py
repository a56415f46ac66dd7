"""``cuctl demo``: the whole product, end to end, on the embedded local control plane.

It tells the story a platform team lives: a Git repository describes CU pools, tenants and
claims; vendor DRA drivers publish devices on a heterogeneous fleet; ``cuctl`` validates,
previews and converges; kube-scheduler allocates a CU claim together with its exact vendor
device; a node is lost and the plan says who loses capacity; a pull request is previewed
offline. Every user-facing step runs the real ``cuctl`` command, printed before it runs, so
the demo doubles as a tutorial. It stops the control plane and leaves nothing running.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from ruamel.yaml import YAML

from reconciler.cli import _app
from reconciler.errors import ToolchainError

if TYPE_CHECKING:
    import git

# The local control plane, the Kubernetes client and the learner are imported inside the
# functions that use them: this module is imported before any check can run, and the first
# thing `cuctl demo` must say on an installed package is that it needs a source checkout.

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gitrepo"
PEAKS = ROOT / "examples" / "peaks-and-troughs" / "tenants"
"""Windowed copies of two of the example's tenants (docs/peaks-and-troughs.md)."""
#: What the demo reads from a source checkout, and why.
CHECKOUT_FILES = {
    Path("hack/build-k8s.sh"): "builds the local control plane from Kubernetes' Go modules",
    Path("examples/gitrepo"): "the desired-state repository the demo publishes",
    Path("examples/peaks-and-troughs"): "the windowed guarantees the demo commits",
    Path("deploy/rbac.yaml"): "the reconciler's least-privilege RBAC",
}


def checkout_problem(root: Path = ROOT) -> str | None:
    """Why the demo cannot run from ``root`` (an installed package), or None in a checkout."""
    missing = [f"{rel} ({why})" for rel, why in CHECKOUT_FILES.items() if not (root / rel).exists()]
    if not missing:
        return None
    return (
        f"runs from a cu-reconciler source checkout, and this cuctl is installed in {root}, "
        f"which lacks {'; '.join(missing)}. In a clone of the repository run "
        "`hack/bootstrap.sh && .venv/bin/cuctl demo` (needs git and Go 1.26+ to build "
        "the control plane)"
    )


def _say(text: str) -> None:
    typer.secho(f"\n== {text}", fg=typer.colors.CYAN, bold=True, err=True)


def _show(text: str, limit: int) -> None:
    lines = text.splitlines()
    for line in lines[:limit]:
        sys.stderr.write(line + "\n")
    if len(lines) > limit:
        sys.stderr.write(f"   … {len(lines) - limit} more lines\n")


def _cuctl(args: Sequence[str], *, cwd: Path, expect: Sequence[int] = (0,), limit: int = 40) -> str:
    """Run ``cuctl`` as a user would, echo the command and its output, check its exit code."""
    shown = " ".join(shlex.quote(a) for a in args)
    typer.secho(f"$ cuctl {shown}", fg=typer.colors.GREEN, err=True)
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    _show(proc.stdout, limit)
    _show(proc.stderr, limit)
    if proc.returncode not in expect:
        raise RuntimeError(f"cuctl {shown} exited {proc.returncode}, expected {list(expect)}")
    return proc.stdout


def _make_repo(root: Path) -> git.Repo:
    import git

    shutil.copytree(EXAMPLE, root)
    repo = git.Repo.init(root, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "platform-team")
        cfg.set_value("user", "email", "platform@example.invalid")
    repo.git.add(A=True)
    repo.index.commit("Describe the GPU fleet as CU pools, tenants and claims")
    return repo


def _namespaces(api: Any, repo_root: Path) -> list[str]:
    from reconciler.devcluster import identity

    settings = YAML(typ="safe").load((repo_root / "cluster.yaml").read_text())
    names: list[str] = sorted(settings["spec"]["managedNamespaces"])
    for name in names:
        identity.ensure_namespace(api, name)
    return names


def _owned_claims(api: Any) -> list[Mapping[str, Any]]:
    from reconciler.devcluster import rawapi

    body = rawapi.request(
        api,
        "GET",
        "/apis/resource.k8s.io/v1/resourceclaims",
        query={"labelSelector": "app.kubernetes.io/managed-by=cu-reconciler"},
    )
    return sorted(
        body.get("items", []),
        key=lambda c: (c["metadata"]["namespace"], c["metadata"]["name"]),
    )


def _schedule_one(api: Any) -> None:
    """Run a Pod on the first unused generated claim and show what the scheduler allocated."""
    from reconciler.devcluster import workloads

    def pairs_a_vendor_device(claim: Mapping[str, Any]) -> bool:
        requests = claim["spec"]["devices"]["requests"]
        return any(r["name"].startswith("gpu-") for r in requests)

    claims = [c for c in _owned_claims(api) if not c.get("status", {}).get("reservedFor")]
    whole = [c for c in claims if pairs_a_vendor_device(c)]
    if not (whole or claims):
        typer.echo("no unused generated claim to schedule", err=True)
        return
    claim = (whole or claims)[0]
    ns, name = claim["metadata"]["namespace"], claim["metadata"]["name"]
    pod = workloads.pod(f"{name}-demo", claims={"cu": name})
    workloads.create(api, ns, pod)
    bound = workloads.wait_scheduled(api, ns, pod["metadata"]["name"])["spec"]["nodeName"]
    allocated = workloads.get(api, ns, "ResourceClaim", name)["status"]["allocation"]
    typer.echo(f"Pod {ns}/{pod['metadata']['name']} scheduled onto {bound}", err=True)
    for result in allocated["devices"]["results"]:
        consumed = result.get("consumedCapacity")
        extra = f" consumed {json.dumps(consumed)}" if consumed else ""
        typer.echo(
            f"  request {result['request']}: {result['driver']} {result['pool']}/"
            f"{result['device']}{extra}",
            err=True,
        )


def _lose_node(api: Any, snapshot: Path) -> str:
    """Withdraw every vendor slice of the busiest node: what a node loss looks like to DRA."""
    from reconciler.devcluster import drivers, nodes

    items = YAML(typ="safe").load(snapshot.read_text())["items"]
    per_node: dict[str, int] = {}
    for obj in items:
        if obj["kind"] == "ResourceSlice" and obj["spec"].get("nodeName"):
            node = obj["spec"]["nodeName"]
            per_node[node] = per_node.get(node, 0) + len(obj["spec"].get("devices", []))
    victim = sorted(per_node, key=lambda n: (-per_node[n], n))[0]
    deleted = drivers.withdraw_node(api, victim)
    nodes.set_ready(api, victim, False)
    typer.echo(f"node {victim} lost: {deleted} vendor ResourceSlices withdrawn", err=True)
    return victim


def _open_pull_request(repo: git.Repo) -> None:
    """A branch that raises one tenant's guarantee: what a reviewer sees before merging."""
    root = Path(repo.working_dir)
    tenant_file = sorted((root / "tenants").glob("*.yaml"))[0]
    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(tenant_file.read_text())
    quota = doc["spec"]["quotas"][0]
    quota["guaranteed"] = float(quota["guaranteed"]) + 100
    if quota.get("limit") is not None and quota["limit"] < quota["guaranteed"]:
        quota["limit"] = quota["guaranteed"]
    repo.git.checkout("-b", "raise-guarantee")
    with tenant_file.open("w") as fh:
        yaml.dump(doc, fh)
    repo.git.add(A=True)
    repo.index.commit(f"{doc['metadata']['name']}: +100 CU guaranteed in {quota['pool']}")


def _peaks_step(repo: git.Repo, repo_root: Path) -> None:
    """Peaks and troughs: a reviewed commit makes search's guarantee follow the day and gives
    research the night (examples/peaks-and-troughs), previewed at two instants: the same commit,
    different guarantees in force, and the next edge (docs/peaks-and-troughs.md)."""
    repo.git.checkout("-b", "peaks-and-troughs")
    for name in ("search-ranking", "research-batch"):
        shutil.copyfile(PEAKS / f"{name}.yaml", repo_root / "tenants" / f"{name}.yaml")
    repo.git.add(A=True)
    repo.index.commit("search-ranking by day, research-batch by night in inference-prod")
    for at in ("2026-12-07T10:00:00+08:00", "2026-12-07T03:00:00+08:00"):
        _cuctl(
            ["plan", ".", "--rev", "peaks-and-troughs", "--base", "main", "--at", at, "--no-diffs"],
            cwd=repo_root,
            expect=(1,),
            limit=100,
        )
    repo.git.checkout("main")


def _slo_step(repo_root: Path, base: Path) -> None:
    """Decode has a p99 target of 60 ms (policy.yaml): learn what each device delivers while
    meeting it, publish the atSLO factors on a branch, and preview what the pools then sell
    and what a million tokens cost."""
    from reconciler.learn import synthetic  # pandas: only when used

    _say("10b. Throughput at the SLO: factors learned at decode's p99 target (60 ms)")
    records = base / "slo-records.csv"
    synthetic.generate_slo(seed=7).to_csv(records, index=False)
    typer.echo(
        f"decode records with latency (BR104 has a knee, L40S is flat): {records}; true "
        f"atSLO factors at 60 ms: {synthetic.slo_truth(60.0)}",
        err=True,
    )
    out = _cuctl(
        [
            "factors",
            "fit",
            "--records",
            str(records),
            "--write",
            "--branch",
            "factors/slo",
            "--now",
            "2026-12-01T00:00:00Z",
        ],
        cwd=repo_root,
        expect=(1,),
        limit=0,
    )
    _show(out[out.index("Throughput at the SLO") :], 6)
    plan = _cuctl(
        ["plan", ".", "--rev", "factors/slo", "--base", "main", "--no-diffs"],
        cwd=repo_root,
        expect=(0, 1),
        limit=0,
    )
    wanted = ("factors: atSLO", "Cost per million tokens", "/M tokens")
    _show("\n".join(line for line in plan.splitlines() if any(w in line for w in wanted)), 8)


def _controller_step(repo: git.Repo, api: Any, kubeconfig: str, base: Path) -> None:
    """Controller mode: the cluster converges on its own after a reviewed commit, and Git
    answers who changed it."""
    from reconciler.devcluster import rawapi, workloads

    root = Path(repo.working_dir)
    _say("12. Controller mode: cuctl run watches Git; a commit raises a tenant's priority")
    repo.git.checkout("main")
    crd = YAML(typ="safe").load((ROOT / "deploy" / "crd.yaml").read_text())
    rawapi.apply(
        api,
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
        crd,
        field_manager="platform-team",
    )
    sync_path = "/apis/cu-reconciler.io/v1alpha1/cusyncs/default"

    def ready_at(sha: str) -> bool:
        try:
            status = rawapi.request(api, "GET", sync_path).get("status") or {}
        except Exception:
            return False
        ready = [c for c in status.get("conditions") or () if c.get("type") == "Ready"]
        return (
            status.get("lastAppliedRevision") == sha
            and bool(ready)
            and (ready[0].get("status") == "True")
        )

    args = ["run", "--repo", str(root), "--interval", "2s", "--resync", "10s"]
    args += ["--kubeconfig", kubeconfig, "--cache-dir", str(base / "controller-cache")]
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(str(sock.getsockname()[1]))
    args += ["--metrics-port", ports[0], "--webhook-port", ports[1]]
    typer.secho(
        f"$ cuctl {' '.join(shlex.quote(a) for a in args)} &", fg=typer.colors.GREEN, err=True
    )
    log = base / "controller.log"
    with log.open("wb") as out:
        controller = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CU_WEBHOOK_SECRET": os.urandom(16).hex()},
        )
    try:
        workloads.wait_for(
            lambda: ready_at(repo.head.commit.hexsha) or None,
            timeout=180,
            what="the controller to report Ready at HEAD",
        )
        tenant = root / "tenants" / "research-batch.yaml"
        tenant.write_text(tenant.read_text().replace("priority: 300", "priority: 700"))
        repo.git.add(A=True)
        import git

        dana = git.Actor("Dana Research", "dana@example.invalid")
        sha = repo.index.commit(
            "research-batch: priority 300 -> 700 for the eval deadline", author=dana
        ).hexsha
        _say("13. The preview a reviewer saw, then the cluster converging on its own")
        _cuctl(
            ["plan", ".", "--rev", "HEAD", "--base", "HEAD~1", "-o", "markdown"],
            cwd=root,
            expect=(0, 1),
            limit=20,
        )
        t0 = time.monotonic()
        workloads.wait_for(lambda: ready_at(sha) or None, timeout=180, what="convergence")
        typer.echo(f"converged at {sha[:12]} in {time.monotonic() - t0:.1f}s", err=True)
        kubectl = ROOT / "hack" / "build-k8s.sh"
        dirs = subprocess.run(
            [str(kubectl), "--print"], capture_output=True, text=True, check=False
        )
        kube_dir = next(
            (x.split("=", 1)[1] for x in dirs.stdout.splitlines() if x.startswith("KUBE_BIN_DIR=")),
            "",
        )
        typer.secho(
            f"$ kubectl get cusync --kubeconfig {kubeconfig}", fg=typer.colors.GREEN, err=True
        )
        got = subprocess.run(
            [
                str(Path(kube_dir) / "kubectl"),
                "get",
                "cusync",
                "--kubeconfig",
                str(base / "cluster" / "kubeconfig"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        _show(got.stdout + got.stderr, 10)
        _say("14. Who changed it? Git answers")
        _cuctl(["history", ".", "--tenant", "research-batch"], cwd=root, limit=20)
    finally:
        controller.terminate()
        controller.wait(timeout=60)


@_app.app.command("demo")
def demo_command(
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Keep the cluster state and repository here (default: a temp dir)."
    ),
) -> None:
    """Run the end-to-end demo on a local control plane built from Kubernetes' Go modules."""
    problem = checkout_problem()
    if problem is not None:
        typer.echo(f"cuctl demo: {problem}", err=True)
        raise typer.Exit(_app.EXIT_ERROR)
    from reconciler.cli import demo_kubelets
    from reconciler.devcluster import controlplane, identity
    from reconciler.devcluster import snapshot as devsnapshot
    from reconciler.learn import synthetic

    base = workdir or Path(tempfile.mkdtemp(prefix="cu-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    _say("1. Start a local control plane (etcd, kube-apiserver, kube-scheduler, controllers)")
    try:
        cp = controlplane.start(base / "cluster")
    except ToolchainError as exc:
        typer.echo(f"cuctl demo: {exc}", err=True)
        raise typer.Exit(_app.EXIT_ERROR) from exc
    try:
        kubeconfig = str(cp.kubeconfig)
        typer.echo(f"ready in {cp.startup_seconds:.1f}s; kubeconfig: {kubeconfig}", err=True)
        repo_root = base / "platform-repo"
        repo = _make_repo(repo_root)
        snapshot = repo_root / "observed" / "snapshot.yaml"
        with cp.api_client() as api:
            _say("2. Vendor DRA drivers publish a heterogeneous fleet")
            fleet = devsnapshot.load(api, snapshot)
            names = _namespaces(api, repo_root)
            account = identity.install_rbac(api)
            kubeconfig = str(identity.service_account_kubeconfig(api, cp.kubeconfig, *account))
            typer.echo(
                f"{len(fleet.nodes)} nodes, {len(fleet.slices)} vendor ResourceSlices; "
                f"tenant namespaces: {', '.join(names)}; cuctl runs as the reconciler's "
                f"ServiceAccount (deploy/rbac.yaml): {kubeconfig}",
                err=True,
            )

            _say("3. Validate the desired state in Git")
            _cuctl(["validate", ".", "--rev", "HEAD"], cwd=repo_root)

            _say("4. Preview what the reconciler would change (exit 1 = changes)")
            _cuctl(
                ["plan", ".", "--kubeconfig", kubeconfig, "-o", "markdown"],
                cwd=repo_root,
                expect=(1,),
            )

            _say("5. Converge: dry-run everything, then server-side apply")
            _cuctl(["apply", ".", "--rev", "HEAD", "--kubeconfig", kubeconfig], cwd=repo_root)

            _say("6. A second plan is in sync (exit 0): a no-op reconcile writes nothing")
            _cuctl(["plan", ".", "--kubeconfig", kubeconfig], cwd=repo_root)

            _say("7. kube-scheduler allocates a generated claim: CU and its exact vendor device")
            _schedule_one(api)

            _say("7b. Pods run on real kubelet nodes: the CU plugin hands them their CU")
            demo_kubelets.run(cp, api, repo_root, kubeconfig, _cuctl)

            _say(
                "8. A node is lost: its CU leaves the pool, admission is redone, its slices pruned"
            )
            _lose_node(api, snapshot)
            _cuctl(
                ["plan", ".", "--kubeconfig", kubeconfig, "-o", "markdown"],
                cwd=repo_root,
                expect=(0, 1),
            )
            _cuctl(["apply", ".", "--rev", "HEAD", "--kubeconfig", kubeconfig], cwd=repo_root)

        _say("9. A pull request, previewed offline against the committed snapshot")
        _open_pull_request(repo)
        _cuctl(
            ["plan", ".", "--rev", "raise-guarantee", "--base", "main", "-o", "markdown"],
            cwd=repo_root,
            expect=(0, 1),
        )
        repo.git.checkout("main")
        _say("9b. Capacity questions: what if two H100 nodes fail? What should we buy or rent?")
        _cuctl(
            [
                "plan",
                ".",
                "--what-if",
                "lose node h100-01",
                "--what-if",
                "lose node h100-02",
                "--no-diffs",
            ],
            cwd=repo_root,
            expect=(0, 1),
            limit=12,
        )
        _cuctl(
            ["recommend", ".", "--catalogue", "capacity/catalogue.yaml"], cwd=repo_root, limit=10
        )
        _say("9c. Peaks and troughs: guarantees by time window, previewed by day and by night")
        _peaks_step(repo, repo_root)
        _say("10. Learn conversion factors from inference records; publish them as a PR")
        records = base / "records.csv"
        from reconciler.learn import synthetic  # pandas/statsmodels: only when used

        frame, _ = synthetic.generate(synthetic.Scenario(records=30_000, bad_rows=100), seed=7)
        frame.to_csv(records, index=False)
        typer.echo(
            f"{len(frame)} synthetic inference records (known true factors): {records}", err=True
        )
        _cuctl(
            [
                "factors",
                "fit",
                "--records",
                str(records),
                "--write",
                "--branch",
                "factors/learned",
                "--now",
                "2026-11-27T00:00:00Z",
            ],
            cwd=repo_root,
            expect=(1,),
            limit=14,
        )
        _cuctl(
            ["plan", ".", "--rev", "factors/learned", "--base", "main", "-o", "markdown"],
            cwd=repo_root,
            expect=(0, 1),
            limit=16,
        )
        _slo_step(repo_root, base)
        _say("11. The audit trail is git log")
        typer.echo(repo.git.log("--oneline", "--all"), err=True)
        typer.echo(repo.git.log("-1", "--format=%B", "factors/learned").split("\n\n")[0], err=True)
        with cp.api_client() as api:
            _controller_step(repo, api, kubeconfig, base)
    finally:
        cp.stop()
        typer.echo(f"\ncontrol plane stopped; logs kept in {cp.log_dir}", err=True)
    typer.secho(f"demo finished in {time.monotonic() - t0:.0f}s", fg=typer.colors.CYAN, err=True)

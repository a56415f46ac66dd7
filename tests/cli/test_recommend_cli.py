"""``cuctl recommend`` end to end on the example repository: exit codes, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gitrepo"
CATALOGUE = EXAMPLE / "capacity" / "catalogue.yaml"
DEMAND = EXAMPLE / "capacity" / "demand.yaml"


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    __import__("reconciler.cli.recommend")
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_example_guarantees_are_covered_cheaper_than_any_single_model(
    runner: CliRunner,
) -> None:
    code, out, err = invoke(
        runner, "recommend", str(EXAMPLE), "--catalogue", str(CATALOGUE), "-o", "json"
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["covered"] is True
    assert answer["saving"] > 0
    total = sum(p["costPerHour"] for p in answer["picks"])
    assert total == pytest.approx(answer["costPerHour"], abs=1e-4)
    assert sum(t["costPerHour"] for t in answer["tenants"]) == pytest.approx(total, abs=1e-3)
    # inference-prod takes nvidia/biren/huawei with 64Gi: the 48Gi L40S and Z100 never serve it.
    for tenant in answer["tenants"]:
        for demand in tenant["demand"]:
            if demand["pool"] == "inference-prod":
                assert all(
                    s["offer"] not in ("l40s-cloud-a", "z100-owned-sh") for s in demand["servedBy"]
                )
    # Owned spares are within their availability.
    counts = {p["offer"]: p["count"] for p in answer["picks"]}
    assert counts.get("h100-owned-sh", 0) <= 16 and counts.get("z100-owned-sh", 0) <= 40


def test_a_demand_file_and_the_text_report(runner: CliRunner) -> None:
    code, out, err = invoke(
        runner, "recommend", str(EXAMPLE), "--catalogue", str(CATALOGUE), "--demand", str(DEMAND)
    )
    assert code == 0, err
    assert out.startswith("Recommended mix (covers every demand):")
    assert "search-ranking:" in out and "inference-prod/decode" in out and "% saved" in out


def test_demand_the_catalogue_cannot_cover_exits_1_and_names_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    small = tmp_path / "catalogue.yaml"
    small.write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: DeviceCatalogue\nmetadata: {name: s}\n"
        "spec:\n  offers:\n    - {name: few, deviceModel: H100-SXM5-80GB, vendor: nvidia, "
        "site: dc, memory: 80Gi, available: 2, rented: {pricePerHour: 4}}\n"
    )
    code, out, _ = invoke(runner, "recommend", str(EXAMPLE), "--catalogue", str(small))
    assert code == 1
    assert "CANNOT cover every demand" in out and "SHORT: inference-prod/pool mix" in out


def test_a_bad_catalogue_is_exit_2_with_file_line_and_column(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "catalogue.yaml"
    bad.write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: DeviceCatalogue\nmetadata: {name: s}\n"
        "spec:\n  offers:\n    - name: x\n      deviceModel: Z100\n      vendor: hygon\n"
        "      site: dc\n      rented: {pricePerHour: -1}\n"
    )
    code, _, err = invoke(runner, "recommend", str(EXAMPLE), "--catalogue", str(bad))
    assert code == 2
    assert f"{bad}:10:" in err and "pricePerHour" in err
    code, _, err = invoke(runner, "recommend", str(EXAMPLE), "--catalogue", str(tmp_path / "no"))
    assert code == 2 and "give a readable file" in err


def test_a_demand_for_an_undeclared_tenant_is_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    demand = tmp_path / "demand.yaml"
    demand.write_text(
        "apiVersion: cu-reconciler.io/v1alpha1\nkind: Demand\nmetadata: {name: d}\n"
        "spec:\n  items:\n    - {tenant: ghost, workloadClass: decode, cu: 5}\n"
    )
    code, _, err = invoke(
        runner, "recommend", str(EXAMPLE), "--catalogue", str(CATALOGUE), "--demand", str(demand)
    )
    assert code == 2 and "tenant 'ghost' is not declared" in err


def test_validate_checks_a_catalogue_in_the_repository_and_never_plans_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    import shutil

    __import__("reconciler.cli.validate")
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    code, out, _ = invoke(runner, "validate", str(root))
    assert code == 0, out
    bad = root / "capacity" / "catalogue.yaml"
    bad.write_text(bad.read_text().replace("pricePerHour: 4.10", "pricePerHour: -4.10"))
    code, out, _ = invoke(runner, "validate", str(root))
    assert code == 1 and "capacity/catalogue.yaml:" in out and "pricePerHour" in out

"""Throughput at the SLO: the curve inversion, known truth, the fit → table → plan path."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import git
import jsonschema
import numpy as np
import pydantic
import pytest
from typer.testing import CliRunner

from reconciler.cli import _app
from reconciler.learn import slo, stream, synthetic, writeback
from reconciler.model import documents as docs
from reconciler.model import factors as model_factors

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
REF = "A100-SXM4-80GB"
runner = CliRunner()


# ------------------------------------------------------------------------------ inversion


@pytest.mark.parametrize(
    ("coef", "target", "expected"),
    [
        pytest.param((10.0, 1.0, 0.0), 30.0, (20.0, False), id="linear"),
        pytest.param((10.0, 0.0, 0.1), 50.0, (20.0, False), id="quadratic-knee"),
        pytest.param((10.0, 1.0, 0.0), 500.0, (64.0, True), id="beyond-the-records-capped"),
        pytest.param((80.0, 1.0, 0.0), 60.0, None, id="misses-at-the-smallest-batch"),
    ],
)
def test_max_batch_inverts_the_latency_curve(
    coef: tuple[float, float, float], target: float, expected: tuple[float, bool] | None
) -> None:
    got = slo.max_batch(np.asarray(coef), target, 1.0, 64.0)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got[0] == pytest.approx(expected[0]) and got[1] is expected[1]


def test_the_truth_ranks_the_knee_device_below_at_a_tight_target_and_above_at_a_loose_one() -> None:
    """The generator's curves: BR104 delivers more than L40S under load (batch 32) but has a
    high latency floor and a knee; L40S is flat. The ranking at the SLO depends on the SLO."""
    br, l40 = synthetic.SLO_CURVES["BR104"], synthetic.SLO_CURVES["L40S"]
    assert 32 / br.step(32) > 32 / l40.step(32)  # BR104 is the faster one under load
    tight = synthetic.slo_truth(synthetic.TIGHT_P99_MS)
    loose = synthetic.slo_truth(synthetic.LOOSE_P99_MS)
    assert tight["BR104"] < tight["L40S"] and loose["BR104"] > loose["L40S"]


# ------------------------------------------------------------------------------ learning


@pytest.fixture(scope="module")
def slo_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slo") / "slo.csv"
    synthetic.generate_slo(seed=3).to_csv(path, index=False)
    return path


def _estimates(paths: list[Path], target: float) -> dict[str, slo.Estimate]:
    aggs = stream.aggregate(stream.fragments(paths), NOW, [])
    outcome = stream.learn(aggs, None, docs.FactorPolicy(), NOW)
    slow = [s.node for s in outcome.slow_nodes]
    return {e.device_model: e for e in slo.estimate(aggs.cells, REF, {"decode": target}, slow)}


def test_learned_at_slo_factors_find_the_truth_and_the_ranking_flip(slo_records: Path) -> None:
    """Fixed seed, the real streaming path (screen, dedup, slow-node exclusion): the learned
    factors are near the truth, their 95% intervals cover it, and the ranking flips."""
    learned = {}
    for target in (synthetic.TIGHT_P99_MS, synthetic.LOOSE_P99_MS):
        truth = synthetic.slo_truth(target)
        got = _estimates([slo_records], target)
        for model in ("BR104", "L40S"):
            e = got[model]
            assert e.value is not None and e.samples >= 2500 and e.nodes >= 7
            assert e.value == pytest.approx(truth[model], rel=0.10), (model, target)
            interval = e.interval(0.95)
            assert interval is not None and interval[0] <= truth[model] <= interval[1]
        assert got[REF].throughput is not None  # the unit's throughput at the target
        learned[target] = {m: e.value for m, e in got.items()}
    tight, loose = learned[synthetic.TIGHT_P99_MS], learned[synthetic.LOOSE_P99_MS]
    assert tight["BR104"] < tight["L40S"] and loose["BR104"] > loose["L40S"]


def test_repeated_records_move_nothing_and_the_result_is_deterministic(
    slo_records: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "again.csv"
    copy.write_bytes(slo_records.read_bytes())
    once = _estimates([slo_records], 60.0)
    twice = _estimates([slo_records, copy], 60.0)  # every record given twice: deduplicated
    assert once == twice


def test_records_without_latency_hold_the_class_and_say_why(
    slo_records: Path, tmp_path: Path
) -> None:
    """A producer that writes 0 for an unmeasured p99 passes the record checks (p99 ≥ p50 ≥ 0)
    but must not make every batch look within the target."""
    import pandas as pd

    frame = pd.read_csv(slo_records)
    frame.loc[frame["device_model"] == "BR104", ["latency_p50_ms", "latency_p99_ms"]] = 0.0
    path = tmp_path / "no-latency.csv"
    frame.to_csv(path, index=False)
    got = _estimates([path], 60.0)
    assert got["BR104"].value is None and "carry no latency" in got["BR104"].problem
    assert got["L40S"].value is not None


# ------------------------------------------------------------------------------ documents


def _factor(**extra: Any) -> dict[str, Any]:
    return {"deviceModel": "BR104", "workloadClass": "decode", "value": 0.9, **extra}


@pytest.mark.parametrize(
    ("row", "version", "error"),
    [
        pytest.param(_factor(basis="atSLO"), 2, "latencyTarget", id="atslo-without-target"),
        pytest.param(
            _factor(basis="atSLO", latencyTarget={"p99Ms": 60}), 1, "schemaVersion", id="v1"
        ),
        pytest.param(_factor(latencyTarget={"p99Ms": 60}), 2, "only apply", id="raw-with-target"),
        pytest.param(
            _factor(basis="atSLO", latencyTarget={"p99Ms": "60"}), 2, "p99Ms", id="string-target"
        ),
    ],
)
def test_bad_atslo_rows_are_rejected(row: dict[str, Any], version: int, error: str) -> None:
    doc = {
        "apiVersion": docs.API_VERSION,
        "kind": "FactorTable",
        "metadata": {"name": "t"},
        "spec": {"schemaVersion": version, "referenceModel": REF, "factors": [row]},
    }
    with pytest.raises(pydantic.ValidationError, match=error):
        docs.FactorTable.model_validate(doc)


def test_the_latency_target_is_checked_by_the_json_schema_too() -> None:
    schema = json.loads((ROOT / "schemas" / "policy.json").read_text())
    good = {
        "apiVersion": docs.API_VERSION,
        "kind": "Policy",
        "metadata": {"name": "p"},
        "spec": {"workloadClasses": {"decode": {"latencyTarget": {"p99Ms": 60}}}},
    }
    jsonschema.validate(good, schema)
    assert docs.Policy.model_validate(good).latency_targets() == {"decode": 60}
    for bad in ({"p99Ms": 0}, {"p99Ms": "60"}, {"p99": 60}):
        doc = json.loads(json.dumps(good))
        doc["spec"]["workloadClasses"]["decode"]["latencyTarget"] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
        with pytest.raises(pydantic.ValidationError):
            docs.Policy.model_validate(doc)


def test_a_table_from_before_atslo_factors_reads_unchanged() -> None:
    old = writeback.read_table(ROOT / "examples" / "gitrepo" / "factors" / "default.yaml")
    assert old.spec.schema_version == 1
    assert {f.basis for f in old.spec.factors} == {docs.FactorBasis.RAW}
    index = model_factors.index_factors([old], REF)
    assert not index.at_slo
    # No atSLO factor: a pool with a target falls back to raw, by name.
    sold = index.with_basis({"decode": 60.0}, None)
    assert sold.index.values == {**index.values, (REF, "decode"): 1.0}
    assert ("BR104", "decode") in sold.fallback and "raw for" in sold.describe()


@pytest.mark.parametrize(
    ("targets", "basis", "sold", "described"),
    [
        pytest.param({"decode": 60.0}, None, 0.88, "atSLO (decode p99 ≤ 60 ms)", id="default"),
        pytest.param({"decode": 60.0}, docs.FactorBasis.RAW, 0.44, "raw", id="pool-says-raw"),
        pytest.param(
            {"decode": 45.0}, None, 0.44, "raw for BR104 (decode: no atSLO", id="other-target"
        ),
        pytest.param(
            {}, docs.FactorBasis.AT_SLO, 0.44, "raw (factorBasis atSLO, but no", id="no-target"
        ),
    ],
)
def test_a_pool_sells_the_basis_it_chose(
    targets: dict[str, float], basis: docs.FactorBasis | None, sold: float, described: str
) -> None:
    index = model_factors.FactorIndex(
        {("BR104", "decode"): 0.44}, REF, {("BR104", "decode"): (0.88, 60.0)}
    )
    chosen = index.with_basis(targets, basis)
    assert chosen.index.lookup("BR104", "decode") == sold
    assert chosen.index.lookup(REF, "decode") == 1.0
    assert described in chosen.describe()


# ------------------------------------------------------------------------------ end to end


def _plan(repo: Path) -> dict[str, Any]:
    res = runner.invoke(_app.app, ["plan", str(repo), "-o", "json"])
    assert res.exit_code in (0, 1), res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def test_fit_writes_atslo_rows_the_plan_sells_and_prices_per_token(
    example_repo: git.Repo, slo_records: Path
) -> None:
    """A real Git repository: `factors fit --write` commits atSLO rows next to the raw ones;
    the plan sells them (a pool with factorBasis raw does not) and prices a million tokens."""
    repo = Path(example_repo.working_dir)
    args = ["factors", "fit", "--records", str(slo_records), "--repo", str(repo)]
    res = runner.invoke(_app.app, [*args, "--now", NOW.isoformat(), "--write", "--branch", "b"])
    assert res.exit_code == _app.EXIT_FINDINGS, res.output
    assert "changed (+3 at the SLO)" in res.stdout.splitlines()[0]
    assert "Throughput at the SLO" in res.stdout and "BR104/decode at p99 ≤ 60 ms" in res.stdout
    example_repo.git.checkout("b")
    table = writeback.read_table(repo / "factors" / "learned.yaml")
    assert table.spec.schema_version == 2
    rows = {(f.device_model, f.workload_class, f.basis): f for f in table.spec.factors}
    at_slo = rows[("BR104", "decode", docs.FactorBasis.AT_SLO)]
    raw = rows[("BR104", "decode", docs.FactorBasis.RAW)]
    unit = rows[(REF, "decode", docs.FactorBasis.AT_SLO)]
    assert at_slo.latency_target == docs.LatencyTarget(p99_ms=60)
    assert at_slo.interval is not None and at_slo.records_revision == raw.records_revision
    truth = synthetic.slo_truth(60.0)["BR104"]
    assert at_slo.interval[0] <= truth <= at_slo.interval[1]
    assert unit.value == 1.0 and unit.throughput is not None and unit.served_model == "llama3-8b"

    # The same records again: nothing moves (exit 0), on either basis.
    example_repo.git.add(A=True)
    again = runner.invoke(_app.app, [*args, "--now", NOW.isoformat()])
    assert again.exit_code == _app.EXIT_OK, again.output

    plan = _plan(repo)
    batch = next(p for p in plan["pools"] if p["pool"] == "batch")
    assert batch["factorBasis"].startswith("atSLO (decode p99 ≤ 60 ms")
    assert "raw for BR104 (prefill" in batch["factorBasis"]
    spec_prefill = next(
        f.value
        for f in writeback.read_table(repo / "factors" / "default.yaml").spec.factors
        if (f.device_model, f.workload_class) == ("BR104", "prefill")
    )
    sold = {a["model"]: a["factor"] for a in batch["arithmetic"]}["BR104"]
    assert sold == pytest.approx(
        math.exp(0.5 * math.log(spec_prefill) + 0.5 * math.log(at_slo.value))
    )
    # What-if scales the factor the pool sells: the atSLO one.
    res = runner.invoke(
        _app.app, ["plan", str(repo), "--what-if", "factor BR104/decode -10%", "-o", "json"]
    )
    assert res.exit_code in (0, 1), res.output
    what_if = json.loads(res.stdout)
    scaled = next(p for p in what_if["pools"] if p["pool"] == "batch")["arithmetic"]
    assert {a["model"]: a["factor"] for a in scaled}["BR104"] == pytest.approx(
        sold * math.sqrt(0.9), rel=1e-4
    )
    show = runner.invoke(_app.app, ["factors", "show", "--repo", str(repo)])
    assert "BR104/decode at p99 ≤ 60 ms: " + f"{at_slo.value:.4g}" in show.stdout

    tokens = plan["costs"]["perMillionTokens"]
    assert tokens["unit"].startswith("USD per million tokens")
    row = next(r for r in tokens["rows"] if (r["tenant"], r["pool"]) == ("research-batch", "batch"))
    rate = next(p for p in plan["costs"]["pools"] if p["pool"] == "batch")["costPerCUHour"]
    per_cu_hour = unit.throughput * 3600 / 100
    assert row["tokensPerCUHour"] == pytest.approx(per_cu_hour, abs=0.1)
    assert row["costPerMillionTokens"] == pytest.approx(rate / per_cu_hour * 1e6, rel=1e-4)

    # A pool that sells raw factors: the raw value, and no per-token figure.
    pool_file = repo / "pools" / "batch.yaml"
    pool_file.write_text(pool_file.read_text().replace("spec:\n", "spec:\n  factorBasis: raw\n", 1))
    plan = _plan(repo)
    batch = next(p for p in plan["pools"] if p["pool"] == "batch")
    assert batch["factorBasis"] == "raw"
    sold = {a["model"]: a["factor"] for a in batch["arithmetic"]}["BR104"]
    assert sold == pytest.approx(math.exp(0.5 * math.log(spec_prefill) + 0.5 * math.log(raw.value)))
    assert not [r for r in plan["costs"]["perMillionTokens"]["rows"] if r["pool"] == "batch"]


def _estimate(model: str, value: float) -> slo.Estimate:
    return slo.Estimate(
        model, "decode", 60.0, value, 0.01, 7, 3000, 8, "llama3-8b", 500.0, "tokens/s"
    )


def _published(value: float, target: float) -> docs.Factor:
    return docs.Factor(
        device_model="BR104",
        workload_class="decode",
        value=value,
        source=docs.FactorSource.LEARNED,
        basis=docs.FactorBasis.AT_SLO,
        latency_target=docs.LatencyTarget(p99_ms=target),
        records_revision="sha256:old",
    )


@pytest.mark.parametrize(
    ("published", "held", "expected"),
    [
        pytest.param([], None, 0.9, id="new"),
        pytest.param([_published(0.7, 60.0)], None, 0.77, id="clamped-by-maxRelativeChange"),
        pytest.param([_published(0.7, 45.0)], None, 0.9, id="another-target-is-replaced"),
        pytest.param([_published(0.9, 60.0)], None, None, id="inside-the-interval-unchanged"),
        pytest.param([], {"decode": "drift alarm on the reference"}, None, id="reference-held"),
    ],
)
def test_the_update_rule_applies_to_atslo_rows(
    published: list[docs.Factor], held: dict[str, str] | None, expected: float | None
) -> None:
    changes = slo.decide(
        [_estimate(REF, 1.0), _estimate("BR104", 0.9)],
        published,
        docs.FactorPolicy(),
        REF,
        "sha256:new",
        held,
    )
    br = next(c for c in changes if c.estimate.device_model == "BR104")
    assert (br.row.value if br.row is not None else None) == expected, br.render()
    # No reference row is published yet: the unit's row is written unless its class is held.
    unit = next(c for c in changes if c.estimate.device_model == REF)
    assert (unit.row is not None) == (held is None)

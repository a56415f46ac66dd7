"""The update rule: held without evidence, unchanged inside the interval, clamped moves."""

from __future__ import annotations

import math

import pytest

from reconciler.learn import combine, drift, fit, priors, specs, update
from reconciler.model import documents as docs

WC = specs.WorkloadClass
POLICY = docs.FactorPolicy(
    min_samples=300, min_nodes=4, confidence=0.95, max_relative_change=0.10, max_interval_width=0.15
)


def post(
    value: float, se: float = 0.02, samples: int = 1000, nodes: int = 8, identified: bool = True
) -> combine.Posterior:
    prior = priors.Prior(
        "L40S",
        WC.DECODE,
        0.424,
        math.log(0.38),
        0.25,
        specs.Reliability.VERIFIED,
        True,
        "datasheet",
    )
    est = fit.Estimate(
        "L40S", WC.DECODE, math.log(value), se, nodes - 1, samples, nodes, identified
    )
    p = combine.combine_one(prior, est, 0.95)
    assert p is not None
    return p


def factor(value: float) -> docs.Factor:
    return docs.Factor(device_model="L40S", workload_class="decode", value=value)


@pytest.mark.parametrize(
    ("posterior", "old", "decision", "new"),
    [
        pytest.param(post(0.42, samples=100), 0.46, update.Decision.HELD, 0.46, id="few-samples"),
        pytest.param(post(0.42, nodes=3), 0.46, update.Decision.HELD, 0.46, id="few-nodes"),
        pytest.param(post(0.42, se=0.2), 0.46, update.Decision.HELD, 0.46, id="wide-interval"),
        pytest.param(
            post(0.42, identified=False), 0.46, update.Decision.HELD, 0.46, id="not-identified"
        ),
        pytest.param(post(0.42), 0.425, update.Decision.UNCHANGED, 0.425, id="inside-interval"),
        pytest.param(post(0.42), 0.44, update.Decision.UPDATED, None, id="small-move"),
        pytest.param(post(0.30), 0.44, update.Decision.CLAMPED, 0.44 * 0.9, id="clamped-down"),
        pytest.param(post(0.60), 0.44, update.Decision.CLAMPED, 0.44 * 1.1, id="clamped-up"),
        pytest.param(post(0.42), None, update.Decision.NEW, None, id="first-publication"),
        pytest.param(post(0.42, samples=10), None, update.Decision.NEW, 0.38, id="new-from-prior"),
    ],
)
def test_decision_table(
    posterior: combine.Posterior,
    old: float | None,
    decision: update.Decision,
    new: float | None,
) -> None:
    ch = update.decide(posterior, factor(old) if old is not None else None, POLICY)
    assert ch.decision is decision
    expected = posterior.value if new is None else new
    assert ch.new == pytest.approx(expected, rel=1e-3)


def test_propose_rewrites_only_changed_rows_and_keeps_others() -> None:
    table = docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": "default"},
            "spec": {
                "referenceModel": "A100-SXM4-80GB",
                "factors": [
                    {"deviceModel": "Ascend-910B3", "value": 0.9, "reference": "kept as is"},
                    {"deviceModel": "L40S", "workloadClass": "decode", "value": 0.44},
                    {"deviceModel": "L40S", "workloadClass": "prefill", "value": 1.05},
                ],
            },
        }
    )
    posts = {("L40S", WC.DECODE): post(0.30)}
    alarm = drift.Alarm("L40S", WC.DECODE, drift.Direction.DOWN, 10, 20, -0.03, 0.1)
    prop = update.propose(table, posts, POLICY, alarms=[alarm], records_revision="sha256:ab")
    rows = {(f.device_model, f.workload_class): f for f in prop.table.spec.factors}
    assert rows[("Ascend-910B3", None)].reference == "kept as is"
    assert rows[("L40S", "prefill")].value == 1.05
    changed = rows[("L40S", "decode")]
    assert changed.value == pytest.approx(0.396)
    assert changed.source is docs.FactorSource.LEARNED
    assert changed.records_revision == "sha256:ab"
    assert changed.interval is None  # a clamped value lies outside the learned interval
    assert prop.changes[0].alarms == (alarm,)


def test_class_less_entry_is_the_fallback() -> None:
    table = docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": "t"},
            "spec": {
                "referenceModel": "A100-SXM4-80GB",
                "factors": [{"deviceModel": "L40S", "value": 0.5}],
            },
        }
    )
    got = update.published(table, ("L40S", WC.DECODE))
    assert got is not None and got.value == 0.5


def _table(name: str, rows: list[dict[str, object]]) -> docs.FactorTable:
    return docs.FactorTable.model_validate(
        {
            "apiVersion": docs.API_VERSION,
            "kind": "FactorTable",
            "metadata": {"name": name},
            "spec": {"referenceModel": "A100-SXM4-80GB", "factors": rows},
        }
    )


SPEC = _table(
    "default",
    [
        {"deviceModel": "L40S", "workloadClass": "decode", "value": 0.44, "reference": "sheet"},
        {"deviceModel": "L40S", "workloadClass": "prefill", "value": 1.05, "reference": "sheet"},
    ],
)
LEARNED_ROW = {
    "deviceModel": "BR104",
    "workloadClass": "decode",
    "value": 0.38,
    "source": "learned",
    "samples": 900,
}


@pytest.mark.parametrize(
    ("existing", "rows_after"),
    [
        pytest.param(None, [("L40S", "decode")], id="created-on-first-write"),
        pytest.param(
            _table("learned", [LEARNED_ROW]),
            [("BR104", "decode"), ("L40S", "decode")],
            id="existing-rows-kept-new-appended",
        ),
        pytest.param(
            _table("learned", [{**LEARNED_ROW, "deviceModel": "L40S", "value": 0.43}]),
            [("L40S", "decode")],
            id="learned-row-replaced-in-place",
        ),
    ],
)
def test_target_holds_learned_rows_only(
    existing: docs.FactorTable | None, rows_after: list[tuple[str, str]]
) -> None:
    """The spec table is the published view; only learned moves reach the bot's table."""
    prop = update.propose(
        SPEC,
        {("L40S", WC.DECODE): post(0.30)},
        POLICY,
        target=update.Target("learned", existing),
    )
    assert prop.target is not None and prop.target.metadata.name == "learned"
    assert [(f.device_model, f.workload_class) for f in prop.target.spec.factors] == rows_after
    assert all(f.source is docs.FactorSource.LEARNED for f in prop.target.spec.factors)
    moved = {(f.device_model, f.workload_class): f.value for f in prop.target.spec.factors}
    assert moved[("L40S", "decode")] == pytest.approx(0.396)  # clamped from 0.44, the spec value
    assert prop.changed[0].old == 0.44


def test_spec_prior_is_not_written_to_the_target() -> None:
    """Nothing published and too little evidence: the prior belongs in a curated spec table."""
    prop = update.propose(
        None, {("L40S", WC.DECODE): post(0.42, samples=10)}, POLICY, target=update.Target("l")
    )
    assert prop.target is not None and prop.target.spec.factors == []
    assert prop.changed == ()
    (held,) = prop.changes
    assert held.decision is update.Decision.HELD and held.old is None
    assert "not written" in held.render() and "→" not in held.render()


def test_a_curated_target_is_refused() -> None:
    with pytest.raises(ValueError, match="curated by people"):
        update.propose(SPEC, {}, POLICY, target=update.Target("default", SPEC))

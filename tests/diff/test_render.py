"""Renderers: text colour, markdown budget, json shape."""

from __future__ import annotations

import dataclasses
import difflib
import json

import cu_example as ex
import pytest

from reconciler import plan as planning
from reconciler.diff import changeset, pair, render, yamltext
from reconciler.model import observed as obs


def _preview() -> render.Preview:
    result = planning.plan(ex.desired(), ex.observed())
    return render.Preview(changeset.compute(result.objects, result.live), result.report)


def test_text_has_colour_only_when_asked() -> None:
    preview = _preview()
    assert "\033[" not in render.text(preview, color=False)
    assert "\033[32m+" in render.text(preview, color=True)


def test_json_carries_changes_pools_and_claims() -> None:
    doc = json.loads(render.json_text(_preview()))
    change = doc["changes"][0]
    assert set(change) == {"action", "apiVersion", "kind", "namespace", "name", "diff"}
    assert {p["pool"]: p["totalCU"] for p in doc["pools"]} == {"infer": "18.973", "train": "590"}
    assert {c["claim"]: c["status"] for c in doc["claims"]}["lab-b"] == "Pending"
    assert doc["summary"]["create"] == len(doc["changes"])


@pytest.mark.parametrize("limit", [pytest.param(n, id=f"limit-{n}") for n in (4000, 20000, 65000)])
def test_markdown_stays_under_budget_by_summarising(limit: int) -> None:
    text = render.markdown(_preview(), limit=limit)
    assert len(text) <= limit
    assert "#### CU capacity per pool" in text
    if limit < 20000:
        # Past the budget: counts per kind and a pointer to the full plan.
        assert render.FULL_PLAN_HINT in text
        assert "- `create` 4 × ResourceSlice" in text


def test_yaml_round_trips_through_a_yaml_parser() -> None:
    from ruamel.yaml import YAML

    objects = planning.plan(ex.desired(), ex.observed()).objects
    assert list(YAML(typ="safe").load_all(yamltext.dump_all(objects))) == list(objects)


# ------------------------------------------------------------- before → after, per tenant

_ADS = ex.tenant(
    "ads",
    {
        "namespaces": ["ads"],
        "priority": 50,
        "mayBorrow": True,
        "quotas": [
            {"pool": "train", "guaranteed": 250, "limit": 300},
            {"pool": "infer", "guaranteed": 10},
        ],
    },
)
_LAB_NO_BORROWING = ex.tenant("lab", {"namespaces": ["lab"], "priority": 10})
_ADS_INFER_3 = ex.claim(
    "ads-infer",
    {"tenant": "ads", "pool": "infer", "cu": 5, "form": "ResourceClaimTemplate", "replicas": 3},
)


def _pull_request() -> render.Preview:
    """A base revision (the example) and a change: ads' train guarantee 200 → 250 with a
    limit of 300, ads-infer 1 × 7 CU → 3 replicas × 5 CU, lab no longer borrows (it could,
    in the base: allowInUse lets a guarantee take lab's CU back)."""
    policy = ex.policy({"preemption": {"allowInUse": True}})
    base = planning.plan(ex.desired(policy_doc=policy), ex.observed())
    desired = ex.desired(
        revision="f" * 40,
        tenants=(ex.TENANTS[0], _ADS, _LAB_NO_BORROWING),
        claims=tuple(_ADS_INFER_3 if c.metadata.name == "ads-infer" else c for c in ex.CLAIMS),
        policy_doc=policy,
    )
    result = planning.plan(desired, ex.observed(), base.objects)
    changes = changeset.compute(result.objects, base.objects)
    return render.Preview(changes, result.report, result.refusal, base.revision)


def test_markdown_tenant_and_claim_tables_show_before_and_after() -> None:
    text = render.markdown(_pull_request())
    tenants = text[text.index("#### CU per tenant") : text.index("#### Claims")]
    assert tenants.splitlines() == [
        "#### CU per tenant",
        "",
        "| Tenant | Pool | Priority | Guaranteed | Limit | Claimed CU |",
        "|---|---|---|---|---|---|",
        # Charged, not requested: whole devices (155 + 100) in the Whole pool train.
        "| search | train | 100 | 300 | 400 | 255 |",
        # 3 replicas × 1 × 5 CU = 15 CU (the base: 1 × 7 CU rounded up to minStep 5 = 10).
        "| ads | infer | 50 | 10 | ∞ | 10 → **15** |",
        "| ads | train | 50 | 200 → **250** | ∞ → **300** | 180 |",
        "| lab | train | 10 | — | — | 155 → **0** |",
        "",
    ]
    claims = text[text.index("#### Claims") : text.index("<details>")]
    assert claims.splitlines() == [
        "#### Claims",
        "",
        "5 admitted, 1 pending, 1 preempted.",
        "",
        "| Claim | Tenant | Pool | Replicas | CU | Status | Reason |",
        "|---|---|---|---|---|---|---|",
        "| search/search-a | search | train | 1 | 155 | Admitted | WithinGuarantee |",
        "| search/search-b | search | train | 1 | 100 | Admitted | WithinGuarantee |",
        "| ads/ads-a | ads | train | 1 | 100 | Admitted | WithinGuarantee |",
        "| ads/ads-b | ads | train | 1 | 80 | Admitted | WithinGuarantee |",
        # 3 × 5 = 15 CU is over ads' guarantee of 10: the template (all replicas or none)
        # is admitted in the borrowing pass.
        "| ads/ads-infer | ads | infer | 3 | 15 | Admitted | BorrowedIdle |",
        "| lab/lab-a | lab | train | 1 | 100 | Admitted → **Preempted** | NoQuota: `tenant lab "
        "has no guarantee in train and may not borrow` |",
        "| lab/lab-b | lab | train | 1 | 50 | Pending | NoQuota: `tenant lab has no guarantee "
        "in train and may not borrow` |",
        "",
    ]


def test_text_lists_tenants_before_and_after_and_changed_claims() -> None:
    text = render.text(_pull_request())
    assert text[text.index("Tenants") : text.index("Plan:")].splitlines() == [
        "Tenants (CU charged; ~ marks a change):",
        "    search in train (priority 100): guaranteed 300, limit 400, claimed 255",
        "  ~ ads in infer (priority 50): guaranteed 10, limit ∞, claimed 10 → 15",
        "  ~ ads in train (priority 50): guaranteed 200 → 250, limit ∞ → 300, claimed 180",
        "  ~ lab in train (priority 10): guaranteed —, limit —, claimed 155 → 0",
        "Claims changed, not admitted, or with a note:",
        "  Admitted → Preempted lab/lab-a (lab, train): NoQuota (tenant lab has no guarantee "
        "in train and may not borrow)",
        "  Pending lab/lab-b (lab, train): NoQuota (tenant lab has no guarantee in train and "
        "may not borrow)",
    ]
    # The summary comes before any object diff.
    assert text.index("Capacity (CU)") < text.index("Plan:") < text.index("=== update")


def test_json_tenants_and_claims_carry_before_and_after() -> None:
    doc = json.loads(render.json_text(_pull_request()))
    rows = {(t["tenant"], t["pool"]): t for t in doc["tenants"]}
    assert rows[("ads", "train")] == {
        "tenant": "ads",
        "pool": "train",
        "priority": 50,
        "before": {"quota": True, "guaranteedCU": "200", "limitCU": None, "claimedCU": "180"},
        "after": {"quota": True, "guaranteedCU": "250", "limitCU": "300", "claimedCU": "180"},
        "changed": ["guaranteed", "limit"],
    }
    assert rows[("lab", "train")]["before"] == {
        "quota": False,
        "guaranteedCU": None,
        "limitCU": None,
        "claimedCU": "155",
    }
    claims = {c["claim"]: c for c in doc["claims"]}
    assert [
        (claims[n]["statusBefore"], claims[n]["status"], claims[n]["replicas"])
        for n in ("ads-infer", "lab-a", "lab-b")
    ] == [("Admitted", "Admitted", 3), ("Admitted", "Preempted", 1), (None, "Pending", 1)]


def _stamped_share(name: str, template: str, cu: str) -> dict[str, object]:
    """A claim kube-controller-manager stamped from our template for a Pod, allocated."""
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {
            "name": name,
            "namespace": "ads",
            "labels": {
                "cu-reconciler.io/template": template,
                "cu-reconciler.io/tenant": "ads",
                "cu-reconciler.io/pool": "infer",
            },
        },
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {
                            "request": "cu-0",
                            "driver": ex.DRIVER,
                            "pool": "n4",
                            "device": "hygon-dcu-0",
                            "consumedCapacity": {"cu": cu},
                        }
                    ]
                }
            },
            "reservedFor": [{"resource": "pods", "name": f"{name}-pod", "uid": "u"}],
        },
    }


def test_live_before_is_what_the_live_claims_hold() -> None:
    # Applied: the example (ads-infer, 1 × 7 CU). Git now says 3 replicas × 5 CU; one Pod
    # runs on a claim stamped from the template, holding 5 CU. "Before" is what the applied
    # template was charged (its charged annotation: 7 CU rounded up to minStep 5 = 10),
    # "after" the 15 admitted: one accounting on both sides.
    applied = planning.plan(ex.desired(), ex.observed())
    desired = ex.desired(
        claims=tuple(_ADS_INFER_3 if c.metadata.name == "ads-infer" else c for c in ex.CLAIMS)
    )
    observed = ex.observed(
        owned=applied.objects, claims=[_stamped_share("pod-0-cu", "ads-infer", "5")]
    )
    result = planning.plan(desired, observed)
    preview = render.Preview(changeset.compute(result.objects, result.live), result.report)
    text = render.markdown(preview)
    rows = [line for line in text.splitlines() if line.startswith("| ads | ")]
    assert rows == [
        "| ads | infer | 50 | 10 | ∞ | 10 → **15** |",
        "| ads | train | 50 | 200 | ∞ | 180 |",
    ]
    (infer,) = [d for d in result.report.decisions if d.claim == "ads-infer"]
    assert (infer.replicas, infer.running, infer.charged_milli) == (3, 1, 15_000)


def test_a_large_fleet_preview_fits_a_comment_and_points_to_the_full_plan() -> None:
    """200 nodes, 1,600 devices: the markdown stays under 60,000 characters, summary first,
    the diffs past the budget collapse to counts per kind, with a pointer to the full plan."""
    raw = ex.raw()
    nodes = tuple(ex.node(f"big-{i:03d}") for i in range(200))
    slices = tuple(ex.vendor_slice(f"big-{i:03d}", "nvidia", "A100", 8) for i in range(200))
    observed = obs.build(
        obs.RawObjects(nodes=raw.nodes + nodes, slices=raw.slices + slices),
        ex.adapters(),
        ex.DRIVER,
    )
    result = planning.plan(ex.desired(), observed)
    preview = render.Preview(changeset.compute(result.objects, result.live), result.report)
    text = render.markdown(preview)
    assert len(text) <= render.MARKDOWN_LIMIT < 65_536
    assert text.index("#### CU capacity per pool") < text.index("#### Changes")
    assert render.FULL_PLAN_HINT in text
    assert "× ResourceSlice" in text
    # Without diffs: only the summary and the counts.
    short = render.markdown(preview, diffs=False)
    assert "```diff" not in short and "× DeviceTaintRule" in short


@pytest.mark.parametrize(
    "before, after",
    [
        (None, {"kind": "ConfigMap", "data": {"a": "1", "b": [1, {"c": None}], "e": {}}}),
        ({"kind": "ConfigMap", "data": {"x": "line\u2028sep", "y": "cr\rhere"}}, None),
        (None, {"k": "single"}),
        ({}, None),
        (None, {}),
    ],
)
def test_created_and_deleted_objects_diff_exactly_as_difflib(
    before: dict[str, object] | None, after: dict[str, object] | None
) -> None:
    """The direct rendering of a one-sided diff is byte-identical to difflib's."""
    entry = changeset.ChangeSetEntry(
        key=pair.ObjectKey("", "ConfigMap", "ns", "name"),
        subject="ConfigMap ns/name\nforged",
        action=changeset.Action.CREATE if before is None else changeset.Action.DELETE,
        before=before,
        after=after,
    )
    old = yamltext.dump(before, sort_keys=True) if before is not None else ""
    new = yamltext.dump(after, sort_keys=True) if after is not None else ""
    expected = [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"live/{entry.subject}" if before is not None else "/dev/null",
            tofile=f"target/{entry.subject}" if after is not None else "/dev/null",
            n=3,
        )
    ]
    assert render.unified(entry) == expected
    assert expected  # every case shows at least its header and one line


def test_a_driver_name_mismatch_exits_1_even_in_sync() -> None:
    first = planning.plan(ex.desired(), ex.observed())
    again = planning.plan(ex.desired(), ex.observed(owned=first.objects))
    changes = changeset.compute(again.objects, again.live)
    assert render.Preview(changes, again.report).exit_code == 0
    finding = obs.Finding(obs.FindingCode.DRIVER_MISMATCH, "n1", "plugin serves another name")
    report = dataclasses.replace(again.report, findings=(*again.report.findings, finding))
    assert render.Preview(changes, report).exit_code == 1


def test_overcommitted_guarantees_show_by_how_much() -> None:
    """Issue 21 item 8: guarantees at 180 % of a pool were only a validate warning."""
    big = ex.tenant(
        "lab",
        {"namespaces": ["lab"], "priority": 10, "quotas": [{"pool": "train", "guaranteed": 400}]},
    )
    result = planning.plan(ex.desired(tenants=(*ex.TENANTS[:2], big)), ex.observed())
    changes = changeset.compute(result.objects, result.live)
    preview = render.Preview(changes, result.report)
    # train: 590 CU, 900 CU guaranteed (search 300, ads 200, lab 400).
    line = (
        "guarantees in train add up to 900 CU, 152% of its 590 CU after headroom: "
        "overcommitted by 310 CU"
    )
    assert f"  ! {line}" in render.text(preview).splitlines()
    assert f"> - {line}" in render.markdown(preview).splitlines()
    pools = {p["pool"]: p for p in json.loads(render.json_text(preview))["pools"]}
    assert (pools["train"]["guaranteedCU"], pools["train"]["overcommitCU"]) == ("900", "310")
    assert pools["infer"]["overcommitCU"] == "0"


def test_unmanaged_devices_are_one_line_per_cause_at_the_top() -> None:
    """Issue 21 item 8: an unknown model printed one line per device (40 nodes pushed the
    summary to line 351) and an unknown node was a note under the claims list."""
    first = planning.plan(ex.desired(), ex.observed())
    unknown = tuple(
        obs.Finding(
            obs.FindingCode.UNKNOWN_MODEL,
            f"gpu.nvidia.com/node-{i:02}/gpu-0",
            "model 'X9' is not in VendorAdapter/nvidia's mapping",
        )
        for i in range(40)
    )
    ghost = obs.Finding(obs.FindingCode.UNKNOWN_NODE, "gpu.nvidia.com/n9", "node n9 does not exist")
    report = dataclasses.replace(first.report, findings=(*unknown, ghost))
    lines = render.text(render.Preview(changeset.compute(first.objects, ()), report)).splitlines()
    top = lines.index("Devices not managed (no adapter, unknown model or node):")
    assert lines[top + 1 : top + 3] == [
        "  ! UnknownModel: gpu.nvidia.com: 40 devices: model 'X9' is not in "
        "VendorAdapter/nvidia's mapping (gpu.nvidia.com/node-00/gpu-0, "
        "gpu.nvidia.com/node-01/gpu-0, gpu.nvidia.com/node-02/gpu-0, "
        "gpu.nvidia.com/node-03/gpu-0, gpu.nvidia.com/node-04/gpu-0 and 35 more)",
        "  ! UnknownNode: gpu.nvidia.com/n9: node n9 does not exist",
    ]
    assert not [line for line in lines if line.startswith("  note:")]


_HOSTILE = [
    pytest.param("@octocat please look", id="mention"),
    pytest.param("[click](https://evil.example)", id="link"),
    pytest.param("![x](https://evil.example/p.png)", id="image"),
    pytest.param("<img src=x onerror=alert(1)>", id="html"),
    pytest.param("a | b | c", id="table-pipes"),
    pytest.param("``x` `y``", id="backtick-runs"),
    pytest.param("`edge`", id="backtick-edges"),
    pytest.param("line\n| forged | row |\r\n@x", id="line-breaks"),
    pytest.param("<!-- cu-reconciler:plan-preview -->", id="marker"),
    pytest.param("https://evil.example www.evil.example", id="bare-urls"),
]


def _cell_html(cell: str) -> str:
    from markdown_it import MarkdownIt

    table = f"| A | B |\n|---|---|\n| {cell} | end |\n"
    return MarkdownIt("commonmark").enable("table").render(table)


@pytest.mark.parametrize("text", _HOSTILE)
def test_md_literal_renders_untrusted_text_as_literal_code(text: str) -> None:
    import html

    rendered = _cell_html(render.md_literal(text))
    assert rendered.count("<td>") == 2, rendered
    assert "<a " not in rendered and "<img" not in rendered and "<!--" not in rendered
    code = rendered[rendered.index("<code>") + 6 : rendered.index("</code>")]
    assert html.unescape(code).strip() == render.escape(text), rendered
    assert rendered.index("<code>") < rendered.index("end") and "end</td>" in rendered


@pytest.mark.parametrize("text", _HOSTILE)
def test_html_literal_is_inert_inside_a_summary(text: str) -> None:
    from markdown_it import MarkdownIt

    out = render.html_literal(text)
    rendered = MarkdownIt("commonmark").render(f"<details><summary>{out}</summary>\n\nx\n")
    assert "<img" not in rendered and "<a " not in rendered and "<!--" not in rendered
    assert rendered.count("<code>") == 1 and "\n" not in out

"""FieldsV1 arithmetic: the owned view, foreign fields, the applied digest."""

from __future__ import annotations

from typing import Any

from reconciler.apply import apply as applying
from reconciler.apply import fake
from reconciler.diff import changeset as cs
from reconciler.model import ownership
from reconciler.plan import managed

LIVE: dict[str, Any] = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "ResourceClaim",
    "metadata": {
        "name": "c",
        "namespace": "n",
        "labels": {"ours": "1", "theirs": "2"},
        "finalizers": ["resource.kubernetes.io/delete-protection", "example.com/keep"],
        "managedFields": [
            {
                "manager": "cu-reconciler",
                "operation": "Apply",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:ours": {}}},
                    "f:spec": {"f:devices": {"f:requests": {}}},
                },
            },
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "fieldsV1": {
                    "f:metadata": {
                        "f:finalizers": {
                            ".": {},
                            'v:"resource.kubernetes.io/delete-protection"': {},
                        }
                    }
                },
            },
            {"manager": "kube-scheduler", "operation": "Update", "subresource": "status"},
            {
                "manager": "someone",
                "operation": "Update",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:theirs": {}}}},
            },
        ],
    },
    "spec": {
        "devices": {
            "requests": [{"name": "r", "exactly": {"deviceClassName": "x", "count": 1}}],
            "config": [{"opaque": {}}],
        }
    },
}
TARGET = {
    "apiVersion": "resource.k8s.io/v1",
    "kind": "ResourceClaim",
    "metadata": {"name": "c", "namespace": "n", "labels": {"ours": "1"}},
    "spec": {"devices": {"requests": [{"name": "r", "exactly": {"deviceClassName": "x"}}]}},
}


def test_the_owned_view_keeps_what_we_applied_without_defaults_inside_atomic_lists() -> None:
    view = managed.owned_view(LIVE, TARGET)
    assert view["spec"] == TARGET["spec"], "count: 1 was defaulted inside an atomic list"
    assert view["metadata"]["labels"] == {"ours": "1"}
    assert "finalizers" not in view["metadata"]


def test_foreign_fields_skip_status_and_the_allow_list() -> None:
    assert managed.foreign(LIVE) == {"someone (Update)": (("f:metadata", "f:labels", "f:theirs"),)}
    assert managed.render_path(("f:metadata", "f:labels", "f:theirs")) == "metadata.labels.theirs"


def test_the_digest_ignores_the_revision_and_sees_every_other_change() -> None:
    a = {**TARGET, "metadata": {**TARGET["metadata"], "annotations": {"x": "1"}}}
    b = {
        **a,
        "metadata": {
            **a["metadata"],
            "annotations": {"x": "1", ownership.REVISION_ANNOTATION: "other"},
        },
    }
    assert managed.applied_digest(a) == managed.applied_digest(b)
    assert managed.applied_digest(a) != managed.applied_digest(TARGET)
    stamped = managed.stamped(a)
    assert managed.stamp_of(stamped) == managed.applied_digest(a)


def test_parallel_waves_give_the_same_result_as_serial_ones() -> None:
    objs = [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {
                "name": f"c{i}",
                "labels": dict(ownership.MANAGED_BY),
                "annotations": {ownership.SOURCE_ANNOTATION: "s"},
            },
            "spec": {},
        }
        for i in range(40)
    ]
    results = []
    for concurrency in (1, 8):
        writer = fake.MemoryWriter(reject={"DeviceClass/c7"})
        result = applying.apply_all(
            writer,
            cs.compute(objs, []),
            objs,
            [],
            applying.ApplyOptions(concurrency=concurrency),
            source="s",
        )
        results.append([(e.subject, e.outcome) for e in result.entries])
        assert writer.writes == 39
    assert results[0] == results[1]

"""``skipNodeOperations`` is detected on the real apiserver, not assumed.

With the 1.37 alpha gate DRAOptionalNodeOperations off (the default), a server-side dry-run
create drops the field and the probe says False; on a control plane started with the gate,
the field survives, the probe says True, and the planner's slices keep it through a real
server-side apply. The probe stores nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from reconciler import devcluster
from reconciler.devcluster import rawapi
from reconciler.observe import capabilities, cluster

pytestmark = pytest.mark.integration

DRIVER = "cu.cu-reconciler.io"


def _probe_absent(api: ApiClient) -> None:
    with pytest.raises(ApiException) as exc:
        rawapi.request(api, "GET", f"{capabilities.SLICES_PATH}/{capabilities.PROBE_NAME}")
    assert exc.value.status == 404, "the dry-run probe must store nothing"


def test_gate_off_by_default_means_no_skip(api: ApiClient) -> None:
    assert capabilities.skip_node_operations(api, DRIVER) is False
    assert cluster.Cluster(api).read().skip_node_operations is False
    _probe_absent(api)


def test_gate_on_is_detected_and_the_field_survives_apply(tmp_path: Path) -> None:
    bins = devcluster.ensure_built(quiet=True)
    with (
        devcluster.running(
            tmp_path / "gated", binaries=bins, feature_gates={"DRAOptionalNodeOperations": True}
        ) as cp,
        cp.api_client() as api,
    ):
        assert capabilities.skip_node_operations(api, DRIVER) is True
        assert cluster.Cluster(api).read().skip_node_operations is True
        _probe_absent(api)
        body = capabilities.probe_slice(DRIVER)
        body["metadata"]["name"] = "kept"
        stored = rawapi.apply(
            api, f"{capabilities.SLICES_PATH}/kept", body, field_manager="cu-reconciler-test"
        )
        assert stored["spec"]["skipNodeOperations"] == ["*"]

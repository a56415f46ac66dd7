"""The kubelet plugin's DaemonSet names no driver: it reads ClusterSettings' from a ConfigMap."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from reconciler.model import driverconfig

DAEMONSET = Path(__file__).resolve().parents[2] / "deploy" / "kubeletplugin" / "daemonset.yaml"


def test_the_daemonset_takes_the_driver_name_from_the_reconcilers_configmap() -> None:
    ds = YAML(typ="safe").load(DAEMONSET.read_text())
    [container] = ds["spec"]["template"]["spec"]["containers"]
    [env] = [e for e in container["env"] if e["name"] == "CU_DRIVER_NAME"]
    ref = env["valueFrom"]["configMapKeyRef"]
    assert (ref["name"], ref["key"], ref["optional"]) == (
        driverconfig.NAME,
        driverconfig.KEY,
        False,
    )
    assert "--driver-name=$(CU_DRIVER_NAME)" in container["args"]
    assert "--plugin-dir=/var/lib/kubelet/plugins/$(CU_DRIVER_NAME)" in container["args"]
    # No second copy of a name anywhere in the manifest (comments aside).
    assert "cu.cu-reconciler.io" not in str(ds)


def test_the_configmap_carries_the_name_and_reads_back() -> None:
    cm = driverconfig.config_map("cu.edge.example.com", "cu-system")
    assert driverconfig.driver_of(cm) == "cu.edge.example.com"
    assert driverconfig.driver_of(None) is None
    assert driverconfig.driver_of({"data": {}}) is None

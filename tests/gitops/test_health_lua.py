"""The Argo CD health checks in deploy/argocd/resource_customizations, executed with Lua 5.1.

Argo CD runs ``health.lua`` in gopher-lua (Lua 5.1) with the live object as the global ``obj``;
lupa's Lua 5.1 runtime gives the same language. Every case of every ``health_test.yaml``
(upstream's layout) must produce exactly the status and message it names, and the
kustomization that merges the checks into ``argocd-cm`` must point at these very files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lupa import lua51
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
CHECKS = sorted(p.parent for p in (ROOT / "resource_customizations").glob("*/*/health.lua"))


def _lua_value(lua: lua51.LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _lua_value(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_lua_value(lua, v) for v in value])
    return value


SANDBOX_REMOVED = ("string", "io", "debug", "math", "coroutine")
"""Libraries Argo CD does not open for health checks (util/lua/lua.go: package, base, table
and a safe os only); removed here so a script that needs them fails here too."""


def health(check: Path, obj: dict[str, Any]) -> dict[str, str]:
    """Run one health.lua the way Argo CD does: ``obj`` global, the script returns a table."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.execute(
        "local s = ''; getmetatable(s).__index = nil; "
        + " ".join(f"{name} = nil;" for name in SANDBOX_REMOVED)
    )
    lua.globals().obj = _lua_value(lua, obj)
    script = (check / "health.lua").read_text()
    result = lua.execute(script)
    return {k: str(v) for k, v in dict(result).items()}


def _cases() -> list[Any]:
    out = []
    for check in CHECKS:
        spec = YAML(typ="safe").load((check / "health_test.yaml").read_text())
        for case in spec["tests"]:
            out.append(pytest.param(check, case, id=f"{check.name}-{Path(case['inputPath']).stem}"))
    return out


def test_the_sandbox_has_no_string_library() -> None:
    """string.sub failed in the real Argo CD ("attempt to index a non-table object(nil)")."""
    lua = lua51.LuaRuntime()
    lua.execute("local s = ''; getmetatable(s).__index = nil; string = nil")
    with pytest.raises(lua51.LuaError):
        lua.execute("return string.sub('abc', 1, 2)")
    with pytest.raises(lua51.LuaError):
        lua.execute("return ('abc'):sub(1, 2)")


def test_every_check_exists() -> None:
    assert [c.name for c in CHECKS] == ["CUEngineStatus", "CUSync", "ResourceClaim"]


@pytest.mark.parametrize(("check", "case"), _cases())
def test_health_check_reports_the_expected_status(check: Path, case: dict[str, Any]) -> None:
    obj = YAML(typ="safe").load((check / case["inputPath"]).read_text())
    assert health(check, obj) == case["healthStatus"]


def test_every_testdata_file_is_used() -> None:
    for check in CHECKS:
        spec = YAML(typ="safe").load((check / "health_test.yaml").read_text())
        used = {Path(c["inputPath"]).name for c in spec["tests"]}
        assert used == {p.name for p in (check / "testdata").glob("*.yaml")}
        statuses = {c["healthStatus"]["status"] for c in spec["tests"]}
        assert {"Healthy", "Progressing", "Degraded"} <= statuses


def test_argocd_cm_merge_names_every_check_under_argocds_key() -> None:
    component = ROOT / "resource_customizations"
    kustomization = YAML(typ="safe").load((component / "kustomization.yaml").read_text())
    files = dict(f.split("=", 1) for f in kustomization["configMapGenerator"][0]["files"])
    expected = {
        f"resource.customizations.health.{c.parent.name}_{c.name}": c / "health.lua" for c in CHECKS
    }
    assert {k: (component / v).resolve() for k, v in files.items()} == {
        k: v.resolve() for k, v in expected.items()
    }


def test_the_cusync_check_covers_every_kstatus_outcome() -> None:
    """Issue 23.3: suspended is Suspended (not Progressing), a CUSync nobody reconciled is
    Progressing, failures repeated until Stalled are Degraded."""
    check = next(c for c in CHECKS if c.name == "CUSync")
    spec = YAML(typ="safe").load((check / "health_test.yaml").read_text())
    by_file = {Path(c["inputPath"]).stem: c["healthStatus"]["status"] for c in spec["tests"]}
    assert by_file["suspended_whileStalled"] == "Suspended"
    assert by_file["progressing_neverReconciled"] == "Progressing"
    assert by_file["progressing_retrying"] == "Progressing"
    assert by_file["degraded_failuresRepeated"] == "Degraded"
    assert by_file["degraded_promiseNotDeliverable"] == "Degraded"


def test_the_engine_status_check_degrades_only_on_what_waiting_cannot_fix() -> None:
    """Issue 23.5: shortfalls and claims only a repository change admits are Degraded; claims
    pending for capacity are Healthy (they wait); no report yet is Progressing."""
    check = next(c for c in CHECKS if c.name == "CUEngineStatus")
    spec = YAML(typ="safe").load((check / "health_test.yaml").read_text())
    by_file = {Path(c["inputPath"]).stem: c["healthStatus"]["status"] for c in spec["tests"]}
    assert by_file == {
        "healthy_allAdmitted": "Healthy",
        "healthy_pendingForCapacity": "Healthy",
        "degraded_shortfall": "Degraded",
        "degraded_needsChange": "Degraded",
        "progressing_noReport": "Progressing",
    }

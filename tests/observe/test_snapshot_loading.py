"""Loading a snapshot file: the C parser, the same data as ruamel's safe loader, and bounds.

A snapshot passed to ``cuctl plan --observed`` may come from anywhere (a CI artefact, a
pull request), so hostile shapes must end in an ObserveError naming the place, never in a
huge allocation or a crashed interpreter. Crash-prone inputs run in a subprocess, so a
regression shows up as a failed assertion on the exit code instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler import errors
from reconciler.observe import snapshot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SNAPSHOT = ROOT / "examples" / "gitrepo" / "observed" / "snapshot.yaml"


def _pure_safe_load(text: str) -> list[object]:
    """What the loader used to be: ruamel's pure-Python safe loader, List items flattened."""
    items: list[object] = []
    for doc in YAML(typ="safe", pure=True).load_all(text):
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List"):
            items.extend(doc.get("items") or [])
        elif doc is not None:
            items.append(doc)
    return items


def test_same_objects_as_the_safe_loader_on_the_example_snapshot() -> None:
    text = EXAMPLE_SNAPSHOT.read_text()
    parsed = snapshot.parse(text, "snapshot.yaml")
    assert list(parsed) == _pure_safe_load(text)
    assert {o["kind"] for o in parsed} >= {"Node", "ResourceSlice"}


def test_core_schema_scalars_and_a_document_stream() -> None:
    text = (
        "---\n"
        "kind: Node\nmetadata: {name: n1, labels: {a: 'true', b: true, c: 0x10, d: 1.5e3}}\n"
        "spec: {e: null, f: ~, g: '007', h: 007}\nwhen: 2026-11-27T00:00:00Z\n"
        "---\n"
        "---\n"
        "kind: List\nitems:\n- {kind: ResourceSlice, metadata: {name: s1}}\n"
    )
    node, slice_ = snapshot.parse(text, "s.yaml")
    assert node["metadata"]["labels"] == {"a": "true", "b": True, "c": 16, "d": 1500.0}
    assert node["spec"] == {"e": None, "f": None, "g": "007", "h": 7}
    assert node["when"] == "2026-11-27T00:00:00Z"  # as the API serves it, not a datetime
    assert slice_["metadata"]["name"] == "s1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            "kind: List\nitems:\n- &n {kind: Node, metadata: {name: a}}\n- *n\n",
            r"s\.yaml:3:3: YAML aliases are not allowed",
            id="alias",
        ),
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
            "YAML aliases are not allowed",
            id="billion-laughs",
        ),
        pytest.param("a: &a [*a]\n", "YAML aliases are not allowed", id="recursive-alias"),
        pytest.param(
            "kind: Node\nmetadata: {name: a}\nkind: Pod\n",
            r"s\.yaml:3:1: duplicate key 'kind'",
            id="duplicate-key",
        ),
        pytest.param(
            "kind: Node\nspec: !!python/object:os.system {}\n", "is not allowed", id="python-tag"
        ),
        pytest.param("kind: Node\n<<: {a: 1}\n", "is not allowed", id="merge-key"),
        pytest.param("kind: Node\n? [a, b]\n: c\n", "must be a plain scalar", id="complex-key"),
        pytest.param(
            "kind: Node\nspec:" + " {a:" * 70 + " 1" + "}" * 70 + "\n", "deeper", id="depth"
        ),
        pytest.param("kind: Node\nspec: [\n", "not valid YAML", id="syntax"),
    ],
)
def test_hostile_shapes_are_refused_with_the_place(content: str, message: str) -> None:
    with pytest.raises(errors.ObserveError, match=message):
        snapshot.parse(content, "s.yaml")


def test_a_snapshot_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:  # sparse: no disk space used, nothing to read
        fh.truncate(snapshot.MAX_BYTES + 1)
    with pytest.raises(errors.ObserveError, match="over 67108864 bytes"):
        snapshot.Snapshot(path).read()


_NESTING = {
    "flow": "'[' * 100_000",
    "block": "'- ' * 100_000 + 'x'",
    "block-in-mapping": "'kind: Node\\nspec:\\n' + '- ' * 100_000 + 'x'",
}


@pytest.mark.parametrize("shape", sorted(_NESTING))
def test_nesting_that_crashes_the_c_parser_is_refused_before_parsing(shape: str) -> None:
    """100,000 levels kill the interpreter inside the C parser (segfault) if they reach it."""
    program = (
        "from reconciler import errors\n"
        "from reconciler.observe import snapshot\n"
        "from reconciler.validate import syntax\n"
        f"text = {_NESTING[shape]}\n"
        "try:\n"
        "    snapshot.parse(text, 's.yaml')\n"
        "except errors.ObserveError as exc:\n"
        "    print('observe:', exc)\n"
        "docs, problems = syntax.load('s.yaml', text.encode(), syntax.SNAPSHOT_LIMITS)\n"
        "print('validate:', problems[0].render())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    observe_line, validate_line = proc.stdout.splitlines()
    assert observe_line.startswith("observe: s.yaml:") and "nested too deeply" in observe_line
    assert "CU109" in validate_line and "nested more than 1000 levels" in validate_line

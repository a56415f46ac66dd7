"""The committed JSON Schemas are generated from the models, current, and agree with them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from reconciler.model import documents as docs
from reconciler.model import schemas
from reconciler.source import worktree
from reconciler.validate import syntax

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"


def test_committed_schemas_are_not_stale() -> None:
    expected = schemas.rendered()
    committed = {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    stale = sorted(n for n in expected if committed.get(n) != expected[n])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"stale {stale}, unexpected {extra}: run `.venv/bin/cuctl schemas schemas`"
    )


@pytest.mark.parametrize("kind", sorted(docs.DOCUMENT_KINDS))
def test_schema_is_valid_draft_2020_12_with_identity(kind: str) -> None:
    schema = schemas.json_schemas()[kind]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(schemas.file_name(kind))
    assert schema["title"] == kind and schema["description"]


def test_example_documents_validate_against_the_committed_schemas() -> None:
    tree = worktree.read_worktree(str(ROOT / "examples" / "gitrepo"))
    checked = 0
    for path, content in tree.select(["**/*.yaml"], ["observed/**"]).items():
        documents, problems = syntax.load(path, content)
        assert not problems
        for document in documents:
            kind = document.data["kind"]
            schema = json.loads((SCHEMAS / schemas.file_name(kind)).read_text())
            jsonschema.Draft202012Validator(schema).validate(document.data)
            checked += 1
    assert checked >= 20


def test_every_example_file_has_a_resolving_modeline() -> None:
    example = ROOT / "examples" / "gitrepo"
    for path in example.rglob("*.yaml"):
        if "observed" in path.parts:
            continue
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path
        target = (path.parent / first.partition("$schema=")[2]).resolve()
        assert target.is_file(), f"{path}: {target} does not exist"

"""Side inputs that are not desired state (``cuctl recommend``'s catalogue and demand files).

Loaded with the same safe YAML and located errors as desired-state documents
(:mod:`~reconciler.validate.syntax`, :mod:`~reconciler.validate.schema`), so a bad price is
reported as ``catalogue.yaml:14:20: CU2xx: ...`` rather than a traceback. Pure: bytes in.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic

from reconciler.model import codes
from reconciler.model import diagnostics as diag
from reconciler.model import documents as docs
from reconciler.validate import schema, syntax

M = TypeVar("M", bound=pydantic.BaseModel)


def load_one(
    file: str, content: bytes, model: type[M], kind: str
) -> tuple[M | None, list[diag.Diagnostic]]:
    """The one ``kind`` document of ``file`` as ``model``, or located diagnostics."""
    loaded, problems = syntax.load(file, content)
    if problems:
        return None, problems
    if len(loaded) != 1 or not isinstance(loaded[0].data, dict):
        return None, [
            diag.Diagnostic(
                file,
                1,
                1,
                codes.Code.MISSING_TYPE,
                f"expected exactly one {kind} document (apiVersion: {docs.API_VERSION}, "
                f"kind: {kind}); found {len(loaded)} document(s)",
            )
        ]
    document = loaded[0]
    found = document.data.get("kind")
    if found != kind:
        pos = document.locate(("kind",))
        return None, [
            diag.Diagnostic(
                file,
                pos.line,
                pos.column,
                codes.Code.UNKNOWN_KIND,
                f"kind {found!r}: this file must hold a {kind}",
            )
        ]
    try:
        return model.model_validate(document.data, by_alias=True, by_name=False), []
    except pydantic.ValidationError as exc:
        return None, [
            schema._from_error(document, model, err) for err in exc.errors(include_url=False)
        ]

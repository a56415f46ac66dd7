"""Validation of desired state: a source tree in, a typed DesiredState or diagnostics out.

Role: the front door's judge. Runs as a pre-commit hook, as a pull-request check
(``cuctl validate``) and as the reconciler's first step.
Inputs: a :class:`reconciler.source.tree.SourceTree` (bytes at a revision) and optionally an
:class:`reconciler.model.observed.ObservedState` for the device-aware checks.
Outputs: :class:`~reconciler.validate.validation.Validation`: the
:class:`reconciler.model.state.DesiredState` when there is no error, and every
:class:`reconciler.model.diagnostics.Diagnostic` sorted by file, line and column, each with a
stable code (docs/errors.md).
Never: I/O (no files, Git, network, clock, environment), raising on bad input (bad input is
a diagnostic), constructing arbitrary objects from YAML tags, or returning a partial state.

Stages, one module each: :mod:`~reconciler.validate.syntax` (safe YAML with positions),
:mod:`~reconciler.validate.schema` (the pydantic models, errors located),
:mod:`~reconciler.validate.semantics` (documents against each other and the devices),
:mod:`~reconciler.validate.snapshot` (the committed observed snapshot), glued by
:mod:`~reconciler.validate.validation`.
"""

from __future__ import annotations

from reconciler.validate import validation
from reconciler.validate.validation import Validation, validate_tree

__all__ = ["Validation", "validate_tree", "validation"]

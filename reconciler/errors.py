"""The exception hierarchy of cu-reconciler, in one place.

::

    CUError                       base of everything we raise on purpose
    ├── InputError                the user's files are wrong; carries Diagnostics; never retried
    │   └── LoadError             a file could not be read safely (size, encoding, tags, aliases...)
    ├── SourceError               Git or the file system could not be read (not a repo, unknown rev)
    ├── ObserveError              the cluster or a snapshot could not be read
    ├── PlanError                 valid inputs that cannot be planned (a bug or an impossible state)
    ├── ApplyError                a write to the cluster failed; carries the object key
    │   └── WriterStopped         this writer may not write any more (Lease lost, SIGTERM)
    └── ToolchainError            a build tool (go) or module is missing for the local control plane

Errors keep their context as attributes (file, line, object key) so callers can render
them; lower-layer exceptions are translated once, at the boundary, with ``raise ... from``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.model.diagnostics import Diagnostic


class CUError(Exception):
    """Base class: anything cu-reconciler raises on purpose."""


class InputError(CUError):
    """Invalid user input. The reconcile stops, writes nothing, and keeps the last good state."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        first = self.diagnostics[0].render() if self.diagnostics else "invalid input"
        more = f" (and {len(self.diagnostics) - 1} more)" if len(self.diagnostics) > 1 else ""
        super().__init__(first + more)


class LoadError(InputError):
    """A file could not be parsed safely."""


class SourceError(CUError):
    """The source (a Git repository, a revision, a path) cannot be read at all."""


class ObserveError(CUError):
    """The observed state (cluster or snapshot) cannot be read."""


class PlanError(CUError):
    """Planning failed although the inputs validated."""


class ApplyError(CUError):
    """A write to the cluster failed."""

    def __init__(self, message: str, *, subject: str = "") -> None:
        self.subject = subject
        super().__init__(f"{subject}: {message}" if subject else message)


class WriterStopped(ApplyError):
    """This process may not write any more: another holder has the Lease, its renewal is too
    old, or it was asked to stop (SIGTERM, SIGINT). Raised between write waves; what was
    written before stays, nothing more is sent."""


class ToolchainError(CUError):
    """A tool needed to build the local control plane is missing or a module is unreachable."""


class SignatureError(SourceError):
    """A revision is not signed by a key the repository trusts (ClusterSettings.spec.signing)."""

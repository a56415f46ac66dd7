"""``cuctl``: the command-line front end.

Each sub-command lives in its own module and registers itself on :data:`app`; this
module only assembles them. Commands print results on stdout and logs on stderr, and
exit like ``kubectl diff``: 0 = fine / in sync, 1 = findings / changes, 2 = cannot run.
"""

from __future__ import annotations

import importlib

from reconciler.cli._app import app

# One line per command module; each registers itself on ``app`` when imported.
_COMMAND_MODULES: tuple[str, ...] = (
    "validate",
    "plan",
    "apply",
    "demo",
    "factors",
    "snapshot",
    "history",
    "run",
)


def main() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"reconciler.cli.{name}")
    app()


__all__ = ["app", "main"]

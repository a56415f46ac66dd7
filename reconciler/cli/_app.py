"""The root Typer application that command modules attach to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cuctl",
    help="cu-reconciler: Compute Units for heterogeneous GPU fleets, declared in Git, "
    "published through Kubernetes DRA.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

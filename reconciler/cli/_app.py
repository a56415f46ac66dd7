"""The root Typer application that command modules attach to.

The root group is :class:`reconciler.cli._lazy.LazyGroup`: a command module is imported
only when its command runs. The root callback holds ``--version``; Typer adds
``--install-completion`` / ``--show-completion`` (``cuctl completion SHELL`` prints the
same script).
"""

from __future__ import annotations

import typer

import reconciler
from reconciler.cli import _lazy

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = _lazy.EXIT_ERROR

app = typer.Typer(
    name="cuctl",
    cls=_lazy.LazyGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help and usage errors, like kubectl's: rendering them with rich costs an import
    # of rich, markdown-it and pygments, doubling the start-up of `cuctl --help`.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cuctl {reconciler.__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """cu-reconciler: Compute Units for heterogeneous GPU fleets, declared in Git, published
    through Kubernetes DRA."""

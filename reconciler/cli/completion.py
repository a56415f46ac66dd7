"""``cuctl completion SHELL``: print the shell completion script, like ``kubectl completion``.

Typer generates the script; it calls ``cuctl`` back with ``_CUCTL_COMPLETE`` set, and the
lazy root group answers command names from its registry without importing any command.
``cuctl --install-completion`` writes the same script into the shell's start-up file.

    source <(cuctl completion bash)                       # this shell
    cuctl completion zsh > "${fpath[1]}/_cuctl"           # every new zsh
    cuctl completion fish > ~/.config/fish/completions/cuctl.fish
"""

from __future__ import annotations

from enum import StrEnum

import typer
import typer.completion

from reconciler.cli import _app

# Typer's own script generator, the one ``--show-completion`` uses (typer.completion
# imports it from a private module).
_script = typer.completion.get_completion_script  # type: ignore[attr-defined]


class Shell(StrEnum):
    """The shells Typer writes completion scripts for."""

    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"
    POWERSHELL = "powershell"
    PWSH = "pwsh"


@_app.app.command("completion")
def completion_command(
    shell: Shell = typer.Argument(..., help="bash, zsh, fish, powershell or pwsh."),
) -> None:
    """Print the shell completion script for bash, zsh, fish or PowerShell."""
    typer.echo(_script(prog_name="cuctl", complete_var="_CUCTL_COMPLETE", shell=shell.value))

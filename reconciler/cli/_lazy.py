"""The root command group that imports a command's module only when that command runs.

Why: ``cuctl`` runs in editors, pre-commit hooks and CI on every pull request. Importing
every command up front loaded the learner (statsmodels, scipy, pandas, pyarrow,
matplotlib), the local control plane and the Kubernetes client for ``cuctl --help``.

How: :class:`LazyGroup` lists commands from the static registry in
:mod:`reconciler.cli` (name → module and one-line help), so ``--help`` and shell
completion print names and help without importing any command module. Resolving a
command for a run imports its module, which registers itself on the Typer ``app`` as
before; the group then builds that click command with Typer's own converters. A module
named in ``_COMMAND_MODULES`` without registry lines still works: it is imported
whenever the full list is needed (correct, only not lazy).

A command that reaches a library of an extra that is not installed (at import or while
running) exits 2 with the exact ``pip install`` line (:mod:`reconciler.cli._extras`).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator, Mapping
from difflib import get_close_matches
from typing import Any, NamedTuple

import typer
import typer.core
import typer.main

from reconciler.cli import _extras

EXIT_ERROR = 2


class Entry(NamedTuple):
    """One command as ``--help`` lists it, without importing it."""

    module: str
    """Module under ``reconciler.cli`` that registers the command on ``app``."""
    help: str
    """The first paragraph of the command's docstring (checked by a test)."""
    hidden: bool = False
    extra: str | None = None
    """The extra that installs everything the command needs, if the core does not."""


def _registry() -> tuple[Mapping[str, Entry], tuple[str, ...]]:
    cli = sys.modules["reconciler.cli"]
    return cli._COMMANDS, cli._COMMAND_MODULES


class LazyGroup(typer.core.TyperGroup):
    """A TyperGroup whose sub-commands are imported on first use (see the module docstring)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = 0

    # -- listing: names and help from the registry, no imports ------------------------

    @contextlib.contextmanager
    def _stubs(self) -> Iterator[None]:
        self._listing += 1
        try:
            yield
        finally:
            self._listing -= 1

    def list_commands(self, ctx: Any) -> list[str]:
        registry, modules = _registry()
        names = list(registry)
        covered = {entry.module for entry in registry.values()}
        if any(module not in covered for module in modules):
            self._load_unregistered()
        names += [name for name in self.commands if name not in registry]
        return names

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self._stubs():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        with self._stubs():
            return super().shell_complete(ctx, incomplete)

    def _stub(self, name: str, entry: Entry) -> typer.core.TyperCommand:
        return typer.core.TyperCommand(
            name=name, help=entry.help, short_help=entry.help, hidden=entry.hidden
        )

    # -- resolving: import the module, build the click command --------------------------

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        registry, _ = _registry()
        entry = registry.get(cmd_name)
        if self._listing and entry is not None and cmd_name not in self.commands:
            return self._stub(cmd_name, entry)
        if cmd_name not in self.commands:
            if entry is not None:
                self._import(cmd_name, entry.module, entry.extra)
            else:
                self._load_unregistered()
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else ""
        registry, _ = _registry()
        known = name in registry or name in self.commands or name.startswith("-")
        if name and not known and name not in self.list_commands(ctx):
            # TyperGroup would suggest only from the commands built so far.
            matches = get_close_matches(name, self.list_commands(ctx))
            hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            registry, _ = _registry()
            entry = registry.get(ctx.invoked_subcommand or "")
            hint = _extras.install_hint(exc, entry.extra if entry else None)
            if hint is None:
                raise
            command = " ".join(filter(None, ("cuctl", ctx.invoked_subcommand)))
            typer.echo(f"{command}: {hint}", err=True)
            raise typer.Exit(EXIT_ERROR) from exc

    def _import(self, cmd_name: str, module: str, extra: str | None = None) -> None:
        try:
            importlib.import_module(f"reconciler.cli.{module}")
        except ModuleNotFoundError as exc:
            hint = _extras.install_hint(exc, extra)
            if hint is None:
                raise
            typer.echo(f"cuctl {cmd_name}: {hint}", err=True)
            raise typer.Exit(EXIT_ERROR) from exc
        self._sync()

    def _load_unregistered(self) -> None:
        """Import modules without registry lines; one whose extra is missing lists nothing."""
        registry, modules = _registry()
        covered = {entry.module for entry in registry.values()}
        for module in modules:
            if module in covered:
                continue
            try:
                importlib.import_module(f"reconciler.cli.{module}")
            except ModuleNotFoundError as exc:
                if _extras.missing_extra(exc) is None:
                    raise
        self._sync()

    def _sync(self) -> None:
        """Build click commands for what imported modules registered on the Typer app."""
        from reconciler.cli._app import app

        for info in app.registered_commands:
            name = info.name or typer.main.get_command_name(info.callback.__name__)  # type: ignore[union-attr]
            if name not in self.commands:
                self.commands[name] = typer.main.get_command_from_info(
                    info,
                    pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )
        for group_info in app.registered_groups:
            # A name given to add_typer (the only way our modules register groups).
            if isinstance(group_info.name, str) and group_info.name in self.commands:
                continue
            group = typer.main.get_group_from_info(
                group_info,
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
                suggest_commands=app.suggest_commands,
            )
            if group.name:
                self.commands[group.name] = group

"""``cuctl``: the command-line front end.

Each sub-command lives in its own module and registers itself on :data:`app`; this
module only names them. Commands print results on stdout and logs on stderr, and exit
like ``kubectl diff``: 0 = fine / in sync, 1 = findings / changes, 2 = cannot run.

Start-up is paid on every pre-commit hook and CI run, so modules load lazily
(:mod:`reconciler.cli._lazy`): ``cuctl --help`` and completion read the registry below,
and only the module of the command being run is imported.

Adding a command ``cuctl NAME`` in a new module ``reconciler/cli/MODULE.py``:

1. register it on the app in that module: ``@_app.app.command("NAME")`` (or
   ``_app.app.add_typer(sub_app, name="NAME")`` for a group);
2. add ``"MODULE"`` to :data:`_COMMAND_MODULES`;
3. add ``"NAME": Entry("MODULE", "<first paragraph of its docstring>")`` to
   :data:`_COMMANDS` (``hidden=True`` for hidden commands; ``extra="learn"`` when the
   command needs an extra, so a core install is told what to ``pip install``). Without
   this line the command still works, but its module is imported for every ``--help``;
   ``tests/cli/test_startup.py`` fails until the line is there and matches the docstring.

Import heavy libraries inside the functions that use them, not at module top: the same
test fails when ``--help``, ``validate``, offline ``plan`` or ``render`` load one.
"""

from __future__ import annotations

from reconciler.cli._app import app
from reconciler.cli._lazy import Entry

#: Every module that registers commands (imported only when one of its commands runs).
_COMMAND_MODULES: tuple[str, ...] = (
    "validate",
    "plan",
    "apply",
    "demo",
    "factors",
    "completion",
    "snapshot",
    "history",
    "run",
    "export",
    "recommend",
)

#: Command name → (module, one-line help): what ``--help`` and completion show, no imports.
_COMMANDS: dict[str, Entry] = {
    "validate": Entry(
        "validate", "Validate desired state: YAML safety, schemas, references, capacity."
    ),
    "plan": Entry(
        "plan",
        "Preview what the reconciler would change: exit 0 in sync, 1 changes (objects, the "
        "desired state, or promises the devices cannot keep), 2 error.",
    ),
    "render": Entry("plan", "Print the target objects as a YAML stream (stdout); logs on stderr."),
    "apply": Entry(
        "apply",
        "Converge the cluster: exit 0 converged, 2 failed (nothing written), 3 degraded.",
        extra="kube",
    ),
    "factors": Entry(
        "factors", "Learn device conversion factors from inference records.", extra="learn"
    ),
    "demo": Entry(
        "demo",
        "Run the end-to-end demo on a local control plane built from Kubernetes' Go modules.",
    ),
    "snapshot": Entry(
        "snapshot",
        "Print (or write) the snapshot of observed devices, deterministically.",
        extra="kube",
    ),
    "history": Entry(
        "history",
        "Show the commits that changed a pool, tenant, claim or factor rows (or a live object).",
    ),
    "run": Entry(
        "run",
        "Run the controller until SIGTERM: exit 0 on a clean stop, 2 when it cannot start.",
        extra="controller",
    ),
    "export": Entry(
        "export",
        "Serve the engine status as the controller's metrics until SIGTERM: exit 0 on a clean "
        "stop, 2 when it cannot start.",
        extra="controller",
    ),
    "recommend": Entry(
        "recommend",
        "Recommend the cheapest device mix to buy or rent: exit 0 covered, 1 demand that "
        "cannot be covered, 2 error.",
        extra="learn",
    ),
    "completion": Entry(
        "completion", "Print the shell completion script for bash, zsh, fish or PowerShell."
    ),
    "schemas": Entry(
        "validate", "Write the JSON Schemas generated from reconciler.model.documents.", hidden=True
    ),
}


def main() -> None:
    app()


__all__ = ["Entry", "app", "main"]

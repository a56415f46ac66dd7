"""Which ``pip install`` extra provides a third-party import, for a clear "install X" message.

Why: the core install (what the pre-commit hook gets) holds only what ``validate``,
offline ``plan`` and ``render`` need. A command that reaches a heavier library on a core
install would otherwise die with a bare ``ModuleNotFoundError``; instead it says exactly
which extra to install. Keep this table in step with ``[project.optional-dependencies]``
in pyproject.toml (``tests/cli/test_startup.py`` checks it).
"""

from __future__ import annotations

DISTRIBUTION = "cu-reconciler"

#: Top-level import name → the extra that installs it.
EXTRA_OF: dict[str, str] = {
    "kubernetes": "kube",
    "urllib3": "kube",  # the Kubernetes client's transport (reconciler.kube)
    "statsmodels": "learn",
    "numpy": "learn",
    "scipy": "learn",
    "pandas": "learn",
    "pyarrow": "learn",
    "matplotlib": "learn",
    "prometheus_client": "controller",
    "hypercorn": "controller",
    "cryptography": "devcluster",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra whose absence raised ``exc``, or None when it is not a known extra's module."""
    name = (exc.name or "").split(".", 1)[0]
    return EXTRA_OF.get(name)


def install_hint(exc: ModuleNotFoundError, extra: str | None = None) -> str | None:
    """``needs the 'learn' extra (statsmodels is not installed): pip install '...'``.

    ``extra`` is the command's own extra (one that installs everything it needs), named
    instead of the extra of the first missing module so one install is enough.
    """
    if missing_extra(exc) is None:
        return None
    extra = extra or missing_extra(exc)
    module = (exc.name or "").split(".", 1)[0]
    return (
        f"needs the '{extra}' extra ({module} is not installed): "
        f"pip install '{DISTRIBUTION}[{extra}]'"
    )

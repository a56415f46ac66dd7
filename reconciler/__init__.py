"""cu-reconciler: publish heterogeneous accelerator capacity as Compute Units via DRA.

The package is a pipeline, one sub-package per stage, imports flowing only downwards::

    source (Git, files) -> validate -> model.DesiredState ┐
    observe (cluster, snapshot) -> model observed types  ├-> plan (pure) -> diff -> apply
    learn (records) -> model.FactorTable ────────────────┘

``controller`` is the only package that sees all stages; ``cli`` is the command line
front end (``cuctl``); ``devcluster`` runs a real local control plane for tests and demos.
"""

__version__ = "0.1.0"

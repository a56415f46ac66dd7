"""The controller: arranges the pipeline stages; holds no business logic.

Role: run one reconcile as a list of same-signature steps (fetch, validate, observe, plan,
diff, apply), stopping at the first failure with that step's :class:`reasons.Reason`.
Inputs: a repository path and revision, an observe Source and an apply Writer. Output: an
:class:`pipeline.Outcome`. Never: compute what should exist (``plan``) or write outside
``apply``; a failed step writes nothing and leaves the last good state in the cluster.
"""

"""Apply: make the cluster match a ChangeSet, with server-side apply.

Role: the only stage that writes to the Kubernetes API. Input: a :class:`diff.changeset.ChangeSet`
(computed from a plan) and a :class:`writer.Writer`. Output: an :class:`apply.ApplyResult`
naming what happened to each object, in the ChangeSet's vocabulary.
Never: decide *what* should exist (that is ``plan``), delete an object without our owner
label, or write anything when any object fails the server-side dry run.

Modules, by verb (fluxcd/pkg ``ssa``): ``order`` (write order), ``writer`` (the I/O seam and
its Kubernetes implementation), ``fake`` (an in-memory writer for tests of callers),
``apply`` (``apply_all``: dry-run all, then write, then prune).
"""

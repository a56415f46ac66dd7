"""Shared types: the desired-state documents, the desired state, diagnostics, quantities.

Role: the vocabulary every stage speaks. Inputs: none (pure types). Never: I/O of any kind,
and never imports another reconciler package (it is the bottom layer).

Import modules, not names: ``from reconciler.model import documents`` then ``documents.CUPool``.
"""

"""Shared types: the desired-state documents, the desired state, diagnostics, quantities.

Also the pure rules more than one stage needs, so they exist once: diagnostic ``codes``,
layout ``globs``, pool membership (``selection``), device normalisation (``observed``),
exact CU arithmetic (``units``), the factor-table merge rule and workload-mix blend
(``factors``), ownership labels (``ownership``), the API kinds we touch (``kinds``) and the
JSON Schemas generated from the documents (``schemas``).

Role: the vocabulary every stage speaks. Inputs: none (pure types). Never: I/O of any kind,
and never imports another reconciler package (it is the bottom layer).

Import modules, not names: ``from reconciler.model import documents`` then ``documents.CUPool``.
"""

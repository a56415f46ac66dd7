"""The planning core: desired state × observed devices × factors → target DRA objects.

Role: compute, as a pure function, every Kubernetes object that should exist (ResourceSlices
of our driver, DeviceClasses, the fence, tenants' claims) plus a report of the CU arithmetic
and of every claim decision. Inputs: a :class:`~reconciler.model.state.DesiredState`, an
:class:`~reconciler.model.observed.ObservedState`, and optionally the live owned objects.
Outputs: a :class:`~reconciler.plan.target.Plan`. Never: I/O, clock, environment,
randomness, or iteration order that depends on input order; the same inputs give
byte-identical output.

Modules: ``capacity`` (CU arithmetic), ``slices`` (ResourceSlices, limits, generation rule),
``classes`` (DeviceClasses), ``fence`` (DeviceTaintRules + admission policy), ``admission``
(claim admission and preemption), ``claims`` (claim bodies), ``defaults`` (server defaults),
``safety`` (delete guard), ``report``, ``target`` (the glue).
"""

from __future__ import annotations

from reconciler.plan.target import Memo, Plan, plan

__all__ = ["Memo", "Plan", "plan"]

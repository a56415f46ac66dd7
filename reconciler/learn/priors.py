"""Spec-based prior factors: a roofline ratio to the reference device, deliberately wide.

A prior is what we believe before any record arrives. Compute-bound classes (prefill,
encoders) scale with dense FP16/BF16 TFLOPS, memory-bound ones (decode) with memory
bandwidth, and memory capacity only gates what fits. Public device pairs show spec ratios
over-predict the faster chip (mean log error about -0.12, spread about 0.18), so the prior
mean is pulled ``SPEC_BIAS`` toward 1 and its log-sd ``tau`` depends on how far the figures
can be trusted. Pure: specs in, priors out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.learn import specs

SPEC_BIAS = 0.10
"""Log shrink of a spec ratio toward 1: specs over-predict the faster chip by about 10%."""

TAU: Mapping[specs.Reliability, float] = {
    specs.Reliability.VERIFIED: 0.25,
    specs.Reliability.VENDOR_CLAIMED: 0.5,
    specs.Reliability.ESTIMATED: 0.7,
}
"""Prior log-sd by reliability (factors.md §3d: 0.2-0.3 verified, 0.5 claimed, 0.7 none)."""


@dataclass(frozen=True, slots=True)
class Prior:
    """A prior for one (device model, workload class), in log units."""

    device_model: str
    workload_class: specs.WorkloadClass
    spec_ratio: float  # the raw roofline ratio to the reference
    log_mean: float
    tau: float
    reliability: specs.Reliability
    feasible: bool  # False when the device lacks the memory the class needs
    reference: str

    @property
    def value(self) -> float:
        return math.exp(self.log_mean)


def roofline_ratio(
    device: specs.DeviceSpec, reference: specs.DeviceSpec, workload_class: specs.WorkloadClass
) -> float:
    """The spec ratio for a class: TFLOPS for compute-bound classes, GB/s for memory-bound."""
    if specs.BOTTLENECK[workload_class] is specs.Bottleneck.COMPUTE:
        return device.fp16_tflops / reference.fp16_tflops
    return device.memory_bandwidth_gbs / reference.memory_bandwidth_gbs


def shrink(log_ratio: float) -> float:
    """Pull a log ratio ``SPEC_BIAS`` toward 0, never past it."""
    return math.copysign(max(abs(log_ratio) - SPEC_BIAS, 0.0), log_ratio)


def prior_for(
    device: specs.DeviceSpec,
    reference: specs.DeviceSpec,
    workload_class: specs.WorkloadClass,
    min_memory_gb: float = 0.0,
) -> Prior:
    ratio = roofline_ratio(device, reference, workload_class)
    # The reference is exact by definition: its factor is 1 with no uncertainty.
    is_ref = device.model == reference.model
    reliability = worse(device.reliability, reference.reliability)
    return Prior(
        device_model=device.model,
        workload_class=workload_class,
        spec_ratio=ratio,
        log_mean=0.0 if is_ref else shrink(math.log(ratio)),
        tau=0.0 if is_ref else TAU[reliability],
        reliability=reliability,
        feasible=device.memory_gb >= min_memory_gb,
        reference=device.source,
    )


def worse(a: specs.Reliability, b: specs.Reliability) -> specs.Reliability:
    order = list(specs.Reliability)
    return a if order.index(a) >= order.index(b) else b


def spec_priors(
    reference_model: str = specs.REFERENCE_MODEL,
    device_specs: Mapping[str, specs.DeviceSpec] = specs.SPECS,
    classes: Iterable[specs.WorkloadClass] = tuple(specs.WorkloadClass),
    min_memory_gb: Mapping[specs.WorkloadClass, float] | None = None,
) -> dict[tuple[str, specs.WorkloadClass], Prior]:
    """Priors for every known device model and class, relative to ``reference_model``."""
    reference = device_specs[reference_model]
    gates = min_memory_gb or {}
    return {
        (model, cls): prior_for(spec, reference, cls, gates.get(cls, 0.0))
        for model, spec in sorted(device_specs.items())
        for cls in classes
    }


__all__ = ["SPEC_BIAS", "TAU", "Prior", "prior_for", "roofline_ratio", "shrink", "spec_priors"]

"""Peak specs of the accelerators we normalise, with where each figure came from.

Data, not logic: :mod:`reconciler.learn.priors` turns these into prior factors. Every row
names its source and a reliability flag, because a vendor launch claim deserves a wider
prior than a datasheet figure confirmed by an independent measurement. Figures are dense
(no sparsity) FP16/BF16 TFLOPS, memory bandwidth in GB/s and memory in GB; they come from
the table in ``/work/shared/research/factors.md`` §2a. The ``ying-wen/evokernel-spec``
figures (BI-V100 95 TF, Z100 96 TF/64 GB) are deliberately not used: they contradict the
sources below and cite only vendor home pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Reliability(StrEnum):
    """How far a spec figure can be trusted; sets the width of the prior."""

    VERIFIED = "verified"  # datasheet figure, or confirmed by an independent measurement
    VENDOR_CLAIMED = "vendor-claimed"  # launch or press figure, no independent check
    ESTIMATED = "estimated"  # no reliable public figure; an informed guess


class WorkloadClass(StrEnum):
    """The workload classes we learn factors for; their bottleneck sets the prior's basis."""

    PREFILL = "prefill"
    DECODE = "decode"
    EMBEDDING = "embedding"


class Bottleneck(StrEnum):
    COMPUTE = "compute"  # scales with dense FP16/BF16 TFLOPS
    MEMORY_BANDWIDTH = "memory-bandwidth"  # scales with GB/s


CLASS_NAMES: frozenset[str] = frozenset(c.value for c in WorkloadClass)


def parse_class(name: str | None) -> WorkloadClass | None:
    """The class for a name, or None for names we do not learn (Python 3.11 enums cannot
    answer ``"x" in WorkloadClass``)."""
    return WorkloadClass(name) if name in CLASS_NAMES else None


BOTTLENECK: Mapping[WorkloadClass, Bottleneck] = {
    WorkloadClass.PREFILL: Bottleneck.COMPUTE,
    WorkloadClass.DECODE: Bottleneck.MEMORY_BANDWIDTH,
    WorkloadClass.EMBEDDING: Bottleneck.COMPUTE,  # encoders are GEMM-bound like prefill
}


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    model: str
    vendor: str
    fp16_tflops: float
    memory_bandwidth_gbs: float
    memory_gb: float
    reliability: Reliability
    source: str


REFERENCE_MODEL = "A100-SXM4-80GB"

SPECS: Mapping[str, DeviceSpec] = {
    s.model: s
    for s in (
        # NVIDIA A100 datasheet; FlagPerf measured 80.6% of peak FP16 on A100-40GB.
        DeviceSpec(
            "A100-SXM4-80GB",
            "nvidia",
            312.0,
            2039.0,
            80.0,
            Reliability.VERIFIED,
            "NVIDIA A100 datasheet",
        ),
        # NVIDIA H100 datasheet (SXM5), dense BF16.
        DeviceSpec(
            "H100-SXM5-80GB",
            "nvidia",
            989.4,
            3350.0,
            80.0,
            Reliability.VERIFIED,
            "NVIDIA H100 datasheet",
        ),
        # NVIDIA L40S datasheet table.
        DeviceSpec(
            "L40S",
            "nvidia",
            362.05,
            864.0,
            48.0,
            Reliability.VERIFIED,
            "NVIDIA L40S datasheet",
        ),
        # Biren launch claims (Hot Chips 34, Aug 2022); audited MLPerf v2.1 results exist but
        # measure throughput, not the peak, so the peak stays a claim.
        DeviceSpec(
            "BR104",
            "biren",
            512.0,
            819.0,
            32.0,
            Reliability.VENDOR_CLAIMED,
            "Biren Hot Chips 34 launch claim (Tom's Hardware, TechPowerUp)",
        ),
        # Biren BR100 (OAM): Hot Chips 34 / launch claims, Aug 2022: 1,024 BF16 TF, 1.64 TB/s.
        DeviceSpec(
            "BR100",
            "biren",
            1024.0,
            1640.0,
            64.0,
            Reliability.VENDOR_CLAIMED,
            "Biren Hot Chips 34 launch claim (Tom's Hardware, TechPowerUp)",
        ),
        # Iluvatar CoreX vendor figures as reported by TechPowerUp (2021).
        DeviceSpec(
            "BI-V100",
            "iluvatar",
            147.0,
            1200.0,
            32.0,
            Reliability.VENDOR_CLAIMED,
            "Iluvatar CoreX vendor figures via TechPowerUp (2021)",
        ),
        # BAAI FlagPerf: 192 TF nominal, measured 196.5 TF FP16 and 590 GB/s, 64 GiB.
        DeviceSpec(
            "BI-V150",
            "iluvatar",
            192.0,
            590.0,
            64.0,
            Reliability.VERIFIED,
            "BAAI FlagPerf computation-FP16 / main_memory-bandwidth (measured)",
        ),
        # Hygon DCU Z100: ISA gfx906 (DeepGen release notes), i.e. MI50-class without matrix
        # cores, so tens of TFLOPS; 32 GB HBM2 at ~1 TB/s as reported. Low confidence.
        DeviceSpec(
            "Z100",
            "hygon",
            24.5,
            1000.0,
            32.0,
            Reliability.ESTIMATED,
            "gfx906 class (DeepGen release notes); press-reported 32 GB HBM2 ~1 TB/s",
        ),
        # Hygon DCU K100: FlagPerf's K100-64G configs use flops_16bit = 20.48e12; bandwidth
        # has no public figure, assumed ~1 TB/s like Z100. Low confidence.
        DeviceSpec(
            "K100",
            "hygon",
            20.48,
            1000.0,
            64.0,
            Reliability.ESTIMATED,
            "BAAI FlagPerf Hygon K100-64G config (flops_16bit); bandwidth assumed",
        ),
        # Huawei CANN platform INI / 950 whitepaper (gitcode.com/cann/ops-nn/issues/6033):
        # 353.9 TF Cube FP16; FlagPerf measured 313.2 TF FP16 on Atlas 800T A2.
        DeviceSpec(
            "Ascend-910B2",
            "huawei",
            353.9,
            1600.0,
            64.0,
            Reliability.VERIFIED,
            "Huawei CANN platform INI; FlagPerf Atlas 800T A2 measurement",
        ),
    )
}
"""Known device models by canonical name. Unknown models in records are rejected."""


__all__ = [
    "BOTTLENECK",
    "CLASS_NAMES",
    "REFERENCE_MODEL",
    "SPECS",
    "Bottleneck",
    "DeviceSpec",
    "Reliability",
    "WorkloadClass",
    "parse_class",
]

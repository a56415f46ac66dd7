"""The desired-state document model: the single definition of what users write in Git.

Every document is Kubernetes-shaped (``apiVersion``, ``kind``, ``metadata.name``, ``spec``)
and versioned by ``apiVersion`` so the format can evolve with conversion, not breakage.
The JSON Schemas under ``schemas/`` are generated from these classes
(:mod:`reconciler.model.schemas`, written by ``cuctl schemas schemas/``) and a test fails
when they are stale.

Field names are camelCase in YAML (Kubernetes convention) and snake_case in Python.
Unknown fields are rejected (``extra="forbid"``): a typo must be an error, not a silent no-op.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from reconciler.model import identities, timewindows
from reconciler.model.quantity import QUANTITY_PATTERN, parse_quantity

API_GROUP = "cu-reconciler.io"
API_VERSION = f"{API_GROUP}/v1alpha1"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A DRA attribute name: a C identifier, optionally prefixed by a DNS subdomain and "/".
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z_][A-Za-z0-9_]{0,31}$"
)
# Device model names are free-form vendor product names, normalised to a compact token.
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"

DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
DnsSubdomain = Annotated[str, Field(pattern=DNS_SUBDOMAIN, max_length=253)]
QualifiedName = Annotated[str, Field(pattern=QUALIFIED_NAME, max_length=96)]
ModelName = Annotated[str, Field(pattern=MODEL_NAME)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, examples=["80Gi", "32768Mi"])]
VendorName = Annotated[str, Field(pattern=DNS_LABEL, max_length=63, examples=["nvidia"])]
WorkloadClass = Annotated[
    str, Field(pattern=DNS_LABEL, max_length=63, examples=["prefill", "decode", "embedding"])
]
# CU amounts are decimals with at most three fractional digits (Kubernetes milli-units).
CUAmount = Annotated[float, Strict(), Field(ge=0, le=1e9, multiple_of=0.001)]


class _Model(BaseModel):
    """Base: camelCase aliases, unknown fields rejected, immutable after validation."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        validate_default=True,
        # No coercion: `cu: "50"`, `priority: "5"`, `mayBorrow: "yes"` and NaN are errors,
        # not silently converted (a typo must not become a number).
        allow_inf_nan=False,
    )


class Metadata(_Model):
    name: DnsLabel = Field(description="Unique name of the document within its kind.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


# ---------------------------------------------------------------------------- ClusterSettings


class ReferenceUnit(_Model):
    """What 1 CU means: a fraction of one reference device running a reference workload."""

    device_model: ModelName = Field(description="The device model whose factor is 1.0.")
    workload_class: WorkloadClass = Field(
        default="decode", description="The workload the reference throughput is measured on."
    )
    cu_per_device: Annotated[int, Strict(), Field(ge=1, le=1_000_000)] = Field(
        default=100, description="CU published for one reference device (100 = percent)."
    )


class GitLayout(_Model):
    """Where documents live in the repository; globs relative to the repository root."""

    include: list[str] = Field(
        default_factory=lambda: ["**/*.yaml", "**/*.yml"],
        description="Glob patterns of files that hold cu-reconciler documents.",
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["observed/**", ".github/**", ".pre-commit-hooks.yaml"],
        description="Glob patterns excluded from loading (snapshots, CI files).",
    )
    snapshot: str | None = Field(
        default="observed/snapshot.yaml",
        description="Repository path of the committed snapshot of observed devices (a "
        "Kubernetes List of Nodes, ResourceSlices and ResourceClaims) used for offline "
        "planning and device-aware validation; null = none.",
    )


class FenceSettings(_Model):
    """How managed vendor devices are fenced off so they cannot be taken bypassing CU accounting."""

    taint_key: QualifiedName = Field(default="cu-reconciler.io/managed")
    effect: Literal["NoSchedule", "NoExecute"] = "NoSchedule"


class CommitSigning(_Model):
    """Which keys may sign the revisions that are applied; unsigned or other commits are refused."""

    ssh_allowed_signers: list[str] = Field(
        default_factory=list,
        description="Lines of Git's SSH allowed-signers format (gpg.ssh.allowedSignersFile): "
        "'<principal> <key-type> <base64-key>'.",
    )
    gpg_public_keys: list[str] = Field(
        default_factory=list,
        description="ASCII-armoured OpenPGP public keys whose signatures are trusted.",
    )


def _identity(value: str) -> str:
    problem = identities.problem(value)
    if problem is not None:
        raise ValueError(f"{value!r} {problem} (docs/double-allocation.md, 'Who the fence admits')")
    return value


Identity = Annotated[
    str,
    Field(
        min_length=1,
        max_length=identities.MAX_LENGTH,
        examples=["system:serviceaccount:cu-system:cu-sync"],
    ),
    AfterValidator(_identity),
]
"""A Kubernetes username the fence may admit (grammar: :mod:`reconciler.model.identities`)."""


class ClusterSettingsSpec(_Model):
    driver_name: DnsSubdomain = Field(
        max_length=63, description="DRA driver name the reconciler publishes CU devices under."
    )
    reference: ReferenceUnit
    managed_namespaces: list[DnsLabel] = Field(
        min_length=1, description="Namespaces the reconciler may create claims in."
    )
    reconciler_namespace: DnsLabel = Field(default="cu-system")
    layout: GitLayout = Field(default_factory=GitLayout)
    fence: FenceSettings = Field(default_factory=FenceSettings)
    admitted_identities: list[Identity] = Field(
        default_factory=list,
        description="Usernames (besides the reconciler's ServiceAccount) that the fence lets "
        "create CU claims: the dedicated identity a GitOps engine syncs only the rendered "
        "objects as (Argo CD sync impersonation, a Flux Kustomization's serviceAccountName), "
        "e.g. 'system:serviceaccount:cu-system:cu-sync'. Never a shared engine identity "
        "such as Argo CD's application controller: every Application would inherit it.",
    )
    signing: CommitSigning | None = Field(
        default=None,
        description="When set, only revisions signed by one of these keys are applied.",
    )


class ClusterSettings(_Model):
    """Cluster-wide settings; exactly one per repository."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ClusterSettings"]
    metadata: Metadata
    spec: ClusterSettingsSpec


# ----------------------------------------------------------------------------- VendorAdapter


class MemoryUnit(StrEnum):
    BYTES = "bytes"
    KIB = "KiB"
    MIB = "MiB"
    GIB = "GiB"
    MB = "MB"
    GB = "GB"

    @property
    def bytes(self) -> int:
        return {
            "bytes": 1,
            "KiB": 2**10,
            "MiB": 2**20,
            "GiB": 2**30,
            "MB": 10**6,
            "GB": 10**9,
        }[self.value]


class FieldSource(_Model):
    """Where one field of the common device description comes from in a vendor's device.

    Exactly one of ``attribute`` or ``capacity`` names the vendor's field. Short names
    (``productName``) are qualified with the vendor's driver name, as DRA does.
    """

    attribute: QualifiedName | None = None
    capacity: QualifiedName | None = None
    unit: MemoryUnit | None = Field(
        default=None, description="Unit of a plain number (memory in MiB as an int attribute)."
    )
    values: dict[str, str] = Field(
        default_factory=dict,
        description="Value mapping, e.g. vendor product name -> canonical model name.",
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> FieldSource:
        if (self.attribute is None) == (self.capacity is None):
            raise ValueError("set exactly one of 'attribute' or 'capacity'")
        return self


class HealthSource(_Model):
    """How to read device health; a device without the attribute counts as healthy."""

    attribute: QualifiedName
    healthy_values: list[str | bool | int] = Field(
        min_length=1, description="Values that mean healthy; anything else is unhealthy."
    )


class AdapterMapping(_Model):
    model: FieldSource
    memory: FieldSource
    uuid: FieldSource
    health: HealthSource | None = None
    driver_version: FieldSource | None = None
    pcie_root: FieldSource | None = None


class VendorAdapterSpec(_Model):
    vendor: VendorName
    driver: DnsSubdomain = Field(max_length=63, description="The vendor's DRA driver name.")
    device_filter: dict[QualifiedName, StrictBool | StrictInt | StrictStr] = Field(
        default_factory=dict,
        description=(
            "Only devices whose attributes equal these values, type included, as the "
            "DeviceClass CEL compares them: a string matches a string attribute (type: gpu), "
            "an int an int attribute (index: 0), a bool a bool attribute."
        ),
    )
    mapping: AdapterMapping


class VendorAdapter(_Model):
    """Maps one vendor driver's published devices into the common device description."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["VendorAdapter"]
    metadata: Metadata
    spec: VendorAdapterSpec


# ------------------------------------------------------------------------------------ CUPool


class LabelSelectorRequirement(_Model):
    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in ("In", "NotIn")
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self


class LabelSelector(_Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class DeviceSelector(_Model):
    """Which observed devices belong to a pool. All given conditions must hold."""

    vendors: list[VendorName] = Field(default_factory=list, description="Empty = any vendor.")
    models: list[ModelName] = Field(default_factory=list, description="Empty = any model.")
    node_selector: LabelSelector | None = None
    min_memory: Quantity | None = None
    attributes: dict[str, str] = Field(
        default_factory=dict,
        description="Common-description fields that must equal these values (driverVersion).",
    )


class SharingMode(StrEnum):
    WHOLE = "Whole"
    FRACTIONAL = "Fractional"


class Sharing(_Model):
    mode: SharingMode = SharingMode.WHOLE
    min_step: CUAmount | None = Field(
        default=None, description="Fractional only: the smallest CU a claim may take, and its step."
    )

    @model_validator(mode="after")
    def _step_only_when_fractional(self) -> Sharing:
        if self.mode is SharingMode.FRACTIONAL and not self.min_step:
            raise ValueError("Fractional sharing needs a positive minStep")
        if self.mode is SharingMode.WHOLE and self.min_step is not None:
            raise ValueError("minStep applies only to Fractional sharing")
        return self


class FactorBasis(StrEnum):
    """Which conversion factor a pool sells: the raw throughput ratio, or the ratio of the
    throughputs each device achieves while its p99 latency meets the class's target."""

    RAW = "raw"
    AT_SLO = "atSLO"


class LatencyTarget(_Model):
    """A workload class's service-level objective on the p99 latency of a window."""

    p99_ms: Annotated[float, Strict(), Field(gt=0, le=3_600_000)] = Field(
        description="The p99 latency (milliseconds) the class must meet."
    )


class CUPoolSpec(_Model):
    selector: DeviceSelector
    factor_basis: FactorBasis | None = Field(
        default=None,
        description="Which factor the pool sells: atSLO (throughput at the class's latency "
        "target) or raw. Omitted: atSLO for classes that declare a latencyTarget, raw otherwise.",
    )
    sharing: Sharing = Field(default_factory=Sharing)
    headroom_percent: Annotated[float, Strict(), Field(ge=0, le=90)] = Field(
        default=0, description="Share of the pool's CU kept free: never admitted to claims."
    )
    workload_mix: dict[WorkloadClass, Annotated[float, Strict(), Field(gt=0, le=1)]] = Field(
        default_factory=dict,
        description="Workload-class weights for a device's single CU value (geometric mean).",
    )
    declared_capacity: CUAmount | None = Field(
        default=None,
        description="The CU this pool is sold at, all its devices present (before headroom). "
        "Guarantees above it after headroom are an error (CU408) unless the Policy allows "
        "overcommit. Required when tenants hold guarantees in the pool (CU409), unless the "
        "Policy allows overcommit; the observed check (CU403 warning, plan shortfalls) "
        "applies either way.",
    )

    @field_validator("workload_mix")
    @classmethod
    def _mix_sums_to_one(cls, mix: dict[str, float]) -> dict[str, float]:
        if mix and abs(sum(mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"workloadMix weights must sum to 1 (they sum to {sum(mix.values())})")
        return mix


class CUPool(_Model):
    """A named set of devices sold as CU, with a sharing rule and headroom."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["CUPool"]
    metadata: Metadata
    spec: CUPoolSpec


# ------------------------------------------------------------------------------------ Tenant


DayOfWeek = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
ClockTime = Annotated[
    str,
    Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", examples=["08:00", "24:00"]),
]


def _time_zone(value: str) -> str:
    timewindows.zone(value)  # raises ValueError naming the problem
    return value


TimeZoneName = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["Europe/Paris", "UTC"]),
    AfterValidator(_time_zone),
]
"""An IANA time zone name, resolved against the tzdata the reconciler ships with."""


class GuaranteeWindow(_Model):
    """A weekly window in which the tenant's guarantee in the pool is ``guaranteed``."""

    name: DnsLabel = Field(description="Shown in the preview and the window metric.")
    days: list[DayOfWeek] = Field(
        min_length=1, max_length=7, description="Days the window starts on (local time)."
    )
    start: ClockTime = Field(description="Local start, HH:MM.")
    end: ClockTime = Field(
        description="Local end, HH:MM; 24:00 = midnight after; at or before start crosses "
        "midnight into the next day."
    )
    guaranteed: CUAmount = Field(description="The guarantee while the window is in force.")

    @model_validator(mode="after")
    def _distinct_days(self) -> GuaranteeWindow:
        if len(set(self.days)) != len(self.days):
            raise ValueError(f"window {self.name!r} names a day twice")
        if self.start == "24:00":
            raise ValueError(f"window {self.name!r} starts at 24:00: write 00:00 of the next day")
        return self

    def as_window(self) -> timewindows.Window:
        return timewindows.Window(
            self.name,
            frozenset(timewindows.DAYS.index(d) for d in self.days),
            timewindows.minutes(self.start),
            timewindows.minutes(self.end),
        )


class GuaranteeSchedule(_Model):
    """Time-windowed guarantees (docs/peaks-and-troughs.md): outside every window the
    quota's own ``guaranteed`` holds."""

    time_zone: TimeZoneName = Field(description="IANA time zone the windows are written in.")
    windows: list[GuaranteeWindow] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _no_overlap(self) -> GuaranteeSchedule:
        names = [w.name for w in self.windows]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"window names must be unique; repeated: {', '.join(twice)}")
        shapes = [w.as_window() for w in self.windows]
        for i, a in enumerate(shapes):
            for b in shapes[i + 1 :]:
                if timewindows.overlap(a, b):
                    raise ValueError(
                        f"windows {a.name!r} and {b.name!r} overlap: at any time at most one "
                        "window of a pool's guarantee may be in force"
                    )
        return self

    def in_force(self, at: datetime) -> timewindows.InForce:
        shapes = tuple(w.as_window() for w in self.windows)
        return timewindows.in_force_named(shapes, self.time_zone, at)

    def guaranteed_at(self, at: datetime, base: float) -> float:
        name = self.in_force(at).window
        return next((w.guaranteed for w in self.windows if w.name == name), base)


class Quota(_Model):
    pool: DnsLabel
    guaranteed: CUAmount = Field(
        description="CU always available to this tenant in the pool (with a schedule: "
        "outside its windows)."
    )
    limit: CUAmount | None = Field(
        default=None, description="Most CU this tenant may hold in the pool, borrowing included."
    )
    schedule: GuaranteeSchedule | None = Field(
        default=None,
        description="Weekly windows in which the guarantee differs (peaks and troughs).",
    )

    @model_validator(mode="after")
    def _limit_not_below_guarantee(self) -> Quota:
        if self.limit is not None and self.limit < self.guaranteed:
            raise ValueError(f"limit {self.limit} is below guaranteed {self.guaranteed}")
        for w in self.schedule.windows if self.schedule else ():
            if self.limit is not None and self.limit < w.guaranteed:
                raise ValueError(
                    f"limit {self.limit} is below window {w.name!r}'s guaranteed {w.guaranteed}"
                )
        return self

    def guaranteed_at(self, at: datetime | None) -> float:
        """The guarantee in force at ``at``; None (no time given): the base guarantee."""
        if self.schedule is None or at is None:
            return self.guaranteed
        return self.schedule.guaranteed_at(at, self.guaranteed)


class TenantSpec(_Model):
    namespaces: list[DnsLabel] = Field(min_length=1)
    priority: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] = Field(
        description="Higher wins when capacity is short."
    )
    quotas: list[Quota] = Field(default_factory=list)
    may_borrow: StrictBool = Field(
        default=False, description="May use idle CU beyond the guarantee."
    )
    preemptible: StrictBool = Field(
        default=True, description="May this tenant's claims be preempted when supply shrinks."
    )


class Tenant(_Model):
    """A team: its namespaces, priority, and per-pool guarantees and limits."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Tenant"]
    metadata: Metadata
    spec: TenantSpec


# ----------------------------------------------------------------------------------- CUClaim


class NameFilter(_Model):
    allow: list[str] = Field(default_factory=list, description="Empty = all allowed.")
    deny: list[str] = Field(default_factory=list)


class ClaimConstraints(_Model):
    min_memory: Quantity | None = None
    vendors: NameFilter = Field(default_factory=NameFilter)
    models: NameFilter = Field(default_factory=NameFilter)


NO_CONSTRAINTS = ClaimConstraints()
"""The constraints of every claim that sets none: one instance, shared."""


class ClaimForm(StrEnum):
    CLAIM = "ResourceClaim"
    TEMPLATE = "ResourceClaimTemplate"


class CUClaimSpec(_Model):
    tenant: DnsLabel
    pool: DnsLabel
    namespace: DnsLabel | None = Field(
        default=None, description="Target namespace; defaults to the tenant's first namespace."
    )
    cu: Annotated[float, Strict(), Field(gt=0, le=1e9, multiple_of=0.001)] = Field(
        description="CU per device."
    )
    count: Annotated[int, Strict(), Field(ge=1, le=32)] = Field(
        default=1, description="Devices requested."
    )
    workload_class: WorkloadClass | None = None
    form: ClaimForm = ClaimForm.CLAIM
    replicas: Annotated[int, Strict(), Field(ge=1, le=10_000)] = Field(
        default=1,
        description=(
            "Pods expected to use the template; each gets its own claim. "
            "Only for form ResourceClaimTemplate."
        ),
    )
    constraints: ClaimConstraints = Field(default_factory=ClaimConstraints)

    @model_validator(mode="after")
    def _share_no_constraints(self) -> CUClaimSpec:
        """A claim without constraints gets :data:`NO_CONSTRAINTS`, not a copy: pydantic
        copies a default per instance, three objects per claim, 30 MB at 20,000 claims.
        The models are frozen, so an equal instance can be shared."""
        if "constraints" not in self.model_fields_set:
            object.__setattr__(self, "constraints", NO_CONSTRAINTS)
        return self

    @model_validator(mode="after")
    def _replicas_only_for_templates(self) -> CUClaimSpec:
        # A ResourceClaim is one object shared by all its Pods: it is allocated once, so
        # "replicas" would charge CU that no device ever gives out.
        if self.replicas > 1 and self.form is not ClaimForm.TEMPLATE:
            raise ValueError(
                f"replicas {self.replicas} needs form ResourceClaimTemplate: a ResourceClaim "
                "is allocated once and shared by its Pods"
            )
        return self


class CUClaim(_Model):
    """A tenant's desired claim; the reconciler turns it into a ResourceClaim(Template)."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["CUClaim"]
    metadata: Metadata
    spec: CUClaimSpec


# ------------------------------------------------------------------------------------ Policy


class PreemptionPolicy(_Model):
    enabled: StrictBool = Field(
        default=True, description="Reclaim borrowed/lower-priority CU at all."
    )
    allow_in_use: StrictBool = Field(
        default=False,
        description="Allow replacing or deleting a claim that a Pod uses (reservedFor non-empty).",
    )


class FairnessPolicy(_Model):
    borrowing: Literal["PriorityOrder", "ProportionalToGuarantee"] = Field(
        default="PriorityOrder", description="How idle CU is lent out among borrowing tenants."
    )


class FactorPolicy(_Model):
    """When a learned factor may replace the published one (hysteresis against noise)."""

    min_samples: Annotated[int, Strict(), Field(ge=1)] = 300
    min_nodes: Annotated[int, Strict(), Field(ge=1)] = 4
    confidence: Annotated[float, Strict(), Field(gt=0.5, lt=1)] = 0.95
    max_relative_change: Annotated[float, Strict(), Field(gt=0, le=1)] = 0.10
    max_interval_width: Annotated[float, Strict(), Field(gt=0, le=10)] = 0.15
    workload_mix: dict[WorkloadClass, Annotated[float, Strict(), Field(gt=0, le=1)]] = Field(
        default_factory=dict, description="Default workload mix when a pool names none."
    )


class SafetyPolicy(_Model):
    max_delete_fraction: Annotated[float, Strict(), Field(ge=0, le=1)] = Field(
        default=0.3,
        description="Largest share of owned objects one reconcile may delete; more stalls.",
    )
    allow_empty: StrictBool = Field(
        default=False, description="Allow a plan that deletes every owned object."
    )


class WorkloadClassSpec(_Model):
    """A workload class as the business declares it: what latency it must meet."""

    latency_target: LatencyTarget | None = Field(
        default=None,
        description="The class's SLO; with it, 1 CU of the class means the reference device's "
        "throughput while p99 latency meets this target.",
    )


class PolicySpec(_Model):
    workload_classes: dict[WorkloadClass, WorkloadClassSpec] = Field(
        default_factory=dict,
        description="Workload classes by name, with their latency targets.",
    )
    preemption: PreemptionPolicy = Field(default_factory=PreemptionPolicy)
    fairness: FairnessPolicy = Field(default_factory=FairnessPolicy)
    factors: FactorPolicy = Field(default_factory=FactorPolicy)
    safety: SafetyPolicy = Field(default_factory=SafetyPolicy)
    allow_overcommit: StrictBool = Field(
        default=False,
        description="Accept guarantees above a pool's full capacity (CU408 becomes the CU403 "
        "warning) and pools that sell guarantees without a declared size (no CU409); plan "
        "still shows the overcommit and the guarantees it cannot keep.",
    )


class Policy(_Model):
    """Preemption, fairness, factor-update and safety rules; at most one per repository."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Policy"]
    metadata: Metadata
    spec: PolicySpec = Field(default_factory=PolicySpec)

    def latency_targets(self) -> dict[str, float]:
        """Class → p99 target (ms), for the classes that declare one."""
        return {
            name: c.latency_target.p99_ms
            for name, c in sorted(self.spec.workload_classes.items())
            if c.latency_target is not None
        }


# ------------------------------------------------------------------------------- FactorTable


class FactorSource(StrEnum):
    SPEC = "spec"
    LEARNED = "learned"


class Factor(_Model):
    device_model: ModelName
    workload_class: WorkloadClass | None = Field(
        default=None, description="Omitted = applies to every workload class."
    )
    value: Annotated[float, Strict(), Field(gt=0, le=1000)]
    source: FactorSource = FactorSource.SPEC
    samples: Annotated[int, Strict(), Field(ge=0)] = 0
    interval: tuple[float, float] | None = Field(
        default=None, description="Confidence interval [low, high] for the value."
    )
    records_revision: str | None = Field(
        default=None, description="Digest or Git revision of the records it was learned from."
    )
    reference: str | None = Field(default=None, description="Where a spec value came from.")
    basis: FactorBasis = Field(
        default=FactorBasis.RAW,
        description="raw: throughput ratio at the records' load; atSLO: ratio of throughputs "
        "at the latency target (latencyTarget). A table may hold both for a (model, class).",
    )
    latency_target: LatencyTarget | None = Field(
        default=None, description="atSLO rows: the target the factor was learned at."
    )
    throughput: Annotated[float, Strict(), Field(gt=0, le=1e12)] | None = Field(
        default=None,
        description="atSLO rows: the device's learned throughput at the target, in "
        "throughputUnit, for servedModel (the reference row gives tokens per CU-hour).",
    )
    throughput_unit: Literal["tokens/s", "requests/s"] | None = None
    served_model: StrictStr | None = Field(
        default=None, description="atSLO rows: the served model the throughput is for."
    )

    @model_validator(mode="after")
    def _interval_brackets_value(self) -> Factor:
        if self.interval is not None:
            low, high = self.interval
            if not (0 < low <= self.value <= high):
                raise ValueError(f"interval {list(self.interval)} must bracket value {self.value}")
        return self

    @model_validator(mode="after")
    def _basis_fields(self) -> Factor:
        at_slo = self.basis is FactorBasis.AT_SLO
        if at_slo and (self.latency_target is None or self.workload_class is None):
            raise ValueError(
                f"an atSLO factor for {self.device_model} needs a workloadClass and the "
                "latencyTarget it was learned at"
            )
        extra = [
            name
            for name, v in (
                ("latencyTarget", self.latency_target),
                ("throughput", self.throughput),
                ("throughputUnit", self.throughput_unit),
                ("servedModel", self.served_model),
            )
            if v is not None
        ]
        if not at_slo and extra:
            raise ValueError(f"{', '.join(extra)} only apply to basis atSLO")
        if (self.throughput is None) != (self.throughput_unit is None):
            raise ValueError("throughput and throughputUnit go together")
        return self


class FactorTableSpec(_Model):
    schema_version: Literal[1, 2] = Field(
        default=1,
        description="1: raw factors only (every table before atSLO factors); 2: may hold "
        "basis atSLO rows. Version 1 tables are read unchanged.",
    )
    reference_model: ModelName
    factors: list[Factor] = Field(default_factory=list)

    @model_validator(mode="after")
    def _version_allows_rows(self) -> FactorTableSpec:
        if self.schema_version < 2 and any(f.basis is FactorBasis.AT_SLO for f in self.factors):
            raise ValueError("basis atSLO rows need schemaVersion: 2")
        return self


class FactorTable(_Model):
    """Conversion factors per device model (and workload class), with provenance."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FactorTable"]
    metadata: Metadata
    spec: FactorTableSpec


# ------------------------------------------------------------------------------------ costs

Money = Annotated[float, Strict(), Field(ge=0, le=1e12)]
HOURS_PER_YEAR = 8760
HOURS_PER_MONTH = 730
"""The billing month cloud providers quote (8,760 h / 12)."""


class OwnedCost(_Model):
    """A device we own: the purchase spread over its lifetime, plus the power it draws.

    ``purchasePrice: 0`` counts only the power (a sunk purchase); the default is the full cost
    of ownership, so an owned card is not mistaken for a free one.
    """

    purchase_price: Money = Field(description="Price paid per device, in the currency.")
    lifetime_years: Annotated[float, Strict(), Field(gt=0, le=20)] = Field(
        default=4.0, description="Depreciation period."
    )
    power_watts: Annotated[float, Strict(), Field(ge=0, le=100_000)] = Field(
        default=0.0, description="Average draw per device, including its share of cooling."
    )
    energy_price_per_kwh: Money = Field(default=0.0)


class RentedCost(_Model):
    price_per_hour: Money = Field(description="Provider's price per device-hour.")


def hourly_cost(owned: OwnedCost | None, rented: RentedCost | None) -> float:
    """THE hourly cost of one device: rented, its price; owned, purchase / lifetime + power."""
    if rented is not None:
        return rented.price_per_hour
    if owned is None:
        return 0.0
    amortised = owned.purchase_price / (owned.lifetime_years * HOURS_PER_YEAR)
    return amortised + owned.power_watts / 1000 * owned.energy_price_per_kwh


class DeviceCost(_Model):
    """What one device of a model costs, optionally only on the nodes a selector takes."""

    device_model: ModelName
    node_selector: LabelSelector | None = Field(
        default=None,
        description="Only devices on nodes with these labels (a site, a provider); "
        "the first matching entry in list order prices a device.",
    )
    owned: OwnedCost | None = None
    rented: RentedCost | None = None

    @model_validator(mode="after")
    def _one_cost(self) -> DeviceCost:
        if (self.owned is None) == (self.rented is None):
            raise ValueError(
                f"the cost of {self.device_model} sets exactly one of 'owned' or 'rented'"
            )
        return self

    @property
    def cost_per_hour(self) -> float:
        return hourly_cost(self.owned, self.rented)


class DeviceCostsSpec(_Model):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = Field(
        default="USD", description="ISO 4217 code every price is in."
    )
    devices: list[DeviceCost] = Field(min_length=1, max_length=10_000)


class DeviceCosts(_Model):
    """What devices cost, owned or rented: shown per pool, per CU-hour and per tenant."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["DeviceCosts"]
    metadata: Metadata
    spec: DeviceCostsSpec


# ------------------------------------------------------------------------------------ union

Document = (
    ClusterSettings | VendorAdapter | CUPool | Tenant | CUClaim | Policy | FactorTable | DeviceCosts
)

DOCUMENT_KINDS: dict[str, type[_Model]] = {
    "ClusterSettings": ClusterSettings,
    "VendorAdapter": VendorAdapter,
    "CUPool": CUPool,
    "Tenant": Tenant,
    "CUClaim": CUClaim,
    "Policy": Policy,
    "FactorTable": FactorTable,
    "DeviceCosts": DeviceCosts,
}


def memory_bytes(quantity: str | None) -> Fraction | None:
    """A Quantity field as bytes (None stays None)."""
    return None if quantity is None else parse_quantity(quantity)

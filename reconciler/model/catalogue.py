"""What devices cost and what the business needs: the inputs of ``cuctl recommend``.

Two documents, written next to the desired state but not part of it (the reconciler never
acts on them; they answer "what should we buy or rent"):

- ``DeviceCatalogue``: the device offers on the table, each a device model at a site, owned
  (spare cards we already have: purchase price over a lifetime plus power) or rented (a price
  per hour), with how many can be had.
- ``Demand``: throughput at the SLO per tenant and workload class, in CU (1 CU is the reference
  device's share of throughput, ClusterSettings.spec.reference), optionally tied to a pool whose
  selector then limits which offers may serve it.

Hourly cost is defined once (:func:`reconciler.model.documents.hourly_cost`), shared with the
desired state's ``DeviceCosts``, so every report agrees.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict, model_validator

from reconciler.model import documents as docs

HOURS_PER_MONTH = docs.HOURS_PER_MONTH


class Offer(docs._Model):
    """One way to get devices of one model: owned spares at a site, or a rental offer."""

    name: docs.DnsLabel
    device_model: docs.ModelName
    vendor: docs.VendorName
    site: docs.DnsLabel
    memory: docs.Quantity | None = Field(
        default=None, description="Device memory; checked against a pool's minMemory."
    )
    available: Annotated[int, Strict(), Field(ge=0, le=1_000_000)] | None = Field(
        default=None, description="How many can be had; omitted = as many as needed."
    )
    owned: docs.OwnedCost | None = None
    rented: docs.RentedCost | None = None

    @model_validator(mode="after")
    def _one_cost(self) -> Offer:
        if (self.owned is None) == (self.rented is None):
            raise ValueError(f"offer {self.name!r} must set exactly one of 'owned' or 'rented'")
        return self

    @property
    def cost_per_hour(self) -> float:
        """The hourly cost of one device of this offer (:func:`documents.hourly_cost`)."""
        return docs.hourly_cost(self.owned, self.rented)


class DeviceCatalogueSpec(docs._Model):
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = Field(
        default="USD", description="ISO 4217 code every price is in."
    )
    offers: list[Offer] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _unique_names(self) -> DeviceCatalogueSpec:
        seen: set[str] = set()
        for offer in self.offers:
            if offer.name in seen:
                raise ValueError(f"offer name {offer.name!r} is used twice; names are unique")
            seen.add(offer.name)
        return self


class DeviceCatalogue(docs._Model):
    """Device offers with prices and availability (``cuctl recommend --catalogue``)."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["DeviceCatalogue"]
    metadata: docs.Metadata
    spec: DeviceCatalogueSpec


class DemandItem(docs._Model):
    tenant: docs.DnsLabel
    workload_class: docs.WorkloadClass | None = Field(
        default=None,
        description="Omitted = the pool's workload mix, i.e. the CU the pool sells "
        "(required when no pool is given).",
    )
    cu: Annotated[float, Strict(), Field(gt=0, le=1e9)] = Field(
        description="Throughput at the SLO, in CU (reference-device equivalents)."
    )
    pool: docs.DnsLabel | None = Field(
        default=None,
        description="Serve it from devices this pool's selector admits (and with its "
        "headroom); omitted = any offer.",
    )

    @model_validator(mode="after")
    def _class_or_pool(self) -> DemandItem:
        if self.workload_class is None and self.pool is None:
            raise ValueError("a demand item names a workloadClass, a pool, or both")
        return self


class DemandSpec(docs._Model):
    items: list[DemandItem] = Field(min_length=1, max_length=100_000)


class Demand(docs._Model):
    """Demand per tenant and workload class (``cuctl recommend --demand``)."""

    api_version: Literal["cu-reconciler.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Demand"]
    metadata: docs.Metadata
    spec: DemandSpec


SIDE_INPUTS: dict[str, type[docs._Model]] = {"DeviceCatalogue": DeviceCatalogue, "Demand": Demand}
"""Kinds that may sit in a desired-state repository without being desired state: validation
checks their schema wherever they are and the reconciler never acts on them."""

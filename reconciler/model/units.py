"""CU arithmetic, exact: milli-CU integers inside, Kubernetes quantities and decimals outside.

Sums of CU must be reproducible to the last unit (a plan is byte-identical for the same
inputs), so amounts are integers in milli-CU (the quantity suffix ``m``) and conversions
from factors go through ``Fraction``. Planning, validation and reports all use these.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

from reconciler.model import quantity

MILLI = 1000


@functools.lru_cache(maxsize=4096)
def to_milli(factor: float, cu_per_device: int) -> int:
    """``factor × cuPerDevice`` in milli-CU, rounded down; exact for decimal factors.

    Cached: a cluster has a handful of (factor, reference) pairs but validation and planning
    ask for them per device and per claim, and the exact ``Fraction`` costs ~20 µs each."""
    return math.floor(Fraction(repr(factor)) * cu_per_device * MILLI)


@functools.lru_cache(maxsize=4096)
def format_cu(milli: int) -> str:
    """Milli-CU as a Kubernetes quantity: ``260`` or ``12500m``."""
    return quantity.format_decimal(Fraction(milli, MILLI))


def display_cu(milli: int) -> str:
    """Milli-CU for humans: ``260`` or ``12.5``."""
    value = Fraction(milli, MILLI)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.3f}".rstrip("0").rstrip(".")


def cu_to_milli(amount: float) -> int:
    """A CU amount from a document (a float with ≤ 3 decimals, ≤ 1e9) in milli-CU, exactly.

    ``amount × 1000`` is below 2**53 and off by far less than 0.5, so rounding is exact.
    """
    return round(amount * MILLI)


def after_headroom(milli: int, headroom_percent: float) -> int:
    """What is left of ``milli`` once a pool's headroom is kept free: the headroom is rounded
    up, so capacity is never oversold by a rounding (planner and validation agree exactly)."""
    return milli - math.ceil(Fraction(repr(headroom_percent)) * milli / 100)

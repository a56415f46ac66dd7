"""Kubernetes resource quantities, parsed exactly.

Memory sizes in our documents use the Kubernetes quantity syntax (``80Gi``, ``32768Mi``,
``64G``) so users write what they already write in Pod specs. Parsing is exact
(``fractions.Fraction``) because CU arithmetic must be reproducible to the byte.
"""

from __future__ import annotations

import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

QUANTITY_PATTERN = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$"
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def parse_quantity(text: str | int | float) -> Fraction:
    """Parse a quantity; raises ValueError with the accepted syntax on bad input."""
    if isinstance(text, bool):
        raise ValueError(f"not a quantity: {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(str(text))
    match = _QUANTITY_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r} (expected e.g. 80Gi, 64G, 1500m)")
    number, _, suffix = match.groups()
    return Fraction(number) * _SUFFIXES[suffix or ""]


def format_bytes(value: Fraction | int) -> str:
    """Render a byte count as the shortest exact binary quantity (``80Gi``)."""
    v = Fraction(value)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        scaled = v / _SUFFIXES[suffix]
        if scaled.denominator == 1 and scaled >= 1:
            return f"{scaled.numerator}{suffix}"
    return str(int(v)) if v.denominator == 1 else str(float(v))


def format_decimal(value: Fraction | int) -> str:
    """Render a CU amount as a Kubernetes quantity: integers plain, fractions in milli-units."""
    v = Fraction(value)
    if v.denominator == 1:
        return str(v.numerator)
    milli = v * 1000
    if milli.denominator != 1:
        milli = Fraction(round(milli))
    return f"{milli.numerator}m"

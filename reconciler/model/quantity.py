"""Kubernetes resource quantities: the complete upstream grammar, parsed exactly.

Memory sizes and CU amounts use the Kubernetes quantity syntax so users write what they
already write in Pod specs. The grammar is apimachinery's ``resource.Quantity``
(k8s.io/apimachinery/pkg/api/resource/quantity.go)::

    <quantity>        ::= <signedNumber><suffix>
    <signedNumber>    ::= <number> | +<number> | -<number>
    <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= m | "" | k | M | G | T | P | E      (and n, u: nano, micro)
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>   (an integer exponent)

Parsing is exact (``fractions.Fraction``) because CU arithmetic must be reproducible to the
byte. Where a value must not be negative (memory, CU) the caller checks the sign: the
grammar allows ``-1``.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

_SUFFIXES: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
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

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY_PATTERN = rf"^{_NUMBER}(?:Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
"""The whole grammar as one regular expression (also used by the JSON schemas)."""
_QUANTITY_RE = re.compile(
    rf"^(?P<number>{_NUMBER})(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|"
    r"[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_MAX_EXPONENT = 100
"""Exponents beyond this are refused: ``1e999999999`` would be a huge exact integer."""


def parse_quantity(text: str | int | float) -> Fraction:
    """Parse a quantity; raises ValueError with the accepted syntax on bad input.

    Only strings and integers are quantities: a float (YAML ``1.5``) is accepted as its
    decimal text; booleans and NaN/infinity are not quantities.
    """
    if isinstance(text, bool):
        raise ValueError(f"not a quantity: {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        if text != text or text in (float("inf"), float("-inf")):
            raise ValueError(f"not a quantity: {text!r}")
        return Fraction(repr(text))
    if not isinstance(text, str):
        raise ValueError(f"not a quantity: {text!r}")
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Fraction:
    """The string grammar, cached: a fleet repeats a handful of quantities (every device's
    memory, every slice's CU) tens of thousands of times, and Fraction arithmetic dominated
    observe and the report at 40,000 devices. Fractions are immutable, so sharing is safe;
    a bad quantity raises and is not cached."""
    match = _QUANTITY_RE.match(text)
    if not match:
        raise ValueError(
            f"not a Kubernetes quantity: {text!r} (expected e.g. 80Gi, 64G, 1500m, 1e3)"
        )
    number = Fraction(match["number"])
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        if abs(exponent) > _MAX_EXPONENT:
            raise ValueError(f"quantity exponent out of range: {text!r}")
        return number * Fraction(10) ** exponent
    return number * _SUFFIXES[match["suffix"] or ""]


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

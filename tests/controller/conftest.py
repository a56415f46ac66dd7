"""Fixtures of the controller tests (see harness.py)."""

from harness import env

__all__ = ["env"]

"""The stable diagnostic codes, one vocabulary for every stage that reports on user input.

Codes never change meaning once released; tools (CI annotations, editors, dashboards) match
on them. They are grouped by family, and ``docs/errors.md`` documents each one with what to
do about it (a test keeps that page complete):

- ``CU1xx`` reading and loading: the file could not be read safely (size, encoding, YAML
  syntax, tags, aliases, duplicate keys, symlinks, too many files or documents).
- ``CU2xx`` schema: a document does not match its kind's schema (``schemas/*.json``).
- ``CU3xx`` semantics: documents are each valid but do not fit together (references,
  duplicates, capacity, impossible constraints).
- ``CU4xx`` observed snapshot: the committed snapshot of observed devices is unusable, or
  the desired state does not fit the devices it lists.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    # -- CU1xx: reading and loading ------------------------------------------------------
    YAML_SYNTAX = "CU101"
    FILE_TOO_LARGE = "CU102"
    NOT_UTF8 = "CU103"
    CUSTOM_TAG = "CU104"
    ALIAS_EXPANSION = "CU105"
    RECURSIVE_ALIAS = "CU106"
    DUPLICATE_KEY = "CU107"
    TOO_MANY_DOCUMENTS = "CU108"
    TOO_DEEP = "CU109"
    SYMLINK_ESCAPE = "CU110"
    TOO_MANY_FILES = "CU111"
    COMPLEX_KEY = "CU112"
    NOT_A_MAPPING = "CU113"
    UNREADABLE = "CU114"
    MERGE_KEY = "CU115"
    EMPTY_FILE = "CU116"
    REVISION_TOO_LARGE = "CU117"
    NESTED_REPOSITORY = "CU118"
    # -- CU2xx: schema -------------------------------------------------------------------
    MISSING_TYPE = "CU201"
    UNSUPPORTED_API_VERSION = "CU202"
    UNKNOWN_KIND = "CU203"
    MISSING_FIELD = "CU204"
    UNKNOWN_FIELD = "CU205"
    WRONG_TYPE = "CU206"
    INVALID_VALUE = "CU207"
    RULE_VIOLATED = "CU208"
    # -- CU3xx: semantics ----------------------------------------------------------------
    DUPLICATE_NAME = "CU301"
    NO_SETTINGS = "CU302"
    MULTIPLE_SETTINGS = "CU303"
    MULTIPLE_POLICIES = "CU304"
    UNKNOWN_POOL = "CU305"
    UNKNOWN_TENANT = "CU306"
    NAMESPACE_NOT_TENANTS = "CU307"
    NAMESPACE_NOT_MANAGED = "CU308"
    NAMESPACE_SHARED = "CU309"
    NO_QUOTA_IN_POOL = "CU310"
    DUPLICATE_QUOTA = "CU311"
    UNKNOWN_VENDOR = "CU312"
    DUPLICATE_ADAPTER = "CU313"
    IMPOSSIBLE_CONSTRAINT = "CU314"
    CLAIM_OVER_LIMIT = "CU315"
    STEP_MISMATCH = "CU316"
    POOLS_MAY_OVERLAP = "CU317"
    UNKNOWN_MODEL = "CU318"
    FACTOR_UNKNOWN_MODEL = "CU319"
    DUPLICATE_FACTOR = "CU320"
    REFERENCE_MISMATCH = "CU321"
    MISSING_FACTOR = "CU322"
    UNKNOWN_WORKLOAD_CLASS = "CU323"
    CLAIM_NEVER_FITS = "CU324"
    SHARED_ENGINE_IDENTITY = "CU325"
    SECOND_REST_POOL = "CU326"
    # -- CU4xx: observed snapshot --------------------------------------------------------
    SNAPSHOT_INVALID = "CU401"
    POOLS_OVERLAP = "CU402"
    GUARANTEES_EXCEED_CAPACITY = "CU403"
    POOL_EMPTY = "CU404"
    CLAIM_UNSATISFIABLE = "CU405"
    DEVICE_UNMAPPED = "CU406"
    NO_ADAPTER = "CU407"
    GUARANTEES_EXCEED_FULL_CAPACITY = "CU408"
    """An error: guarantees above the size the pool declares (spec.declaredCapacity, after
    headroom), unless Policy spec.allowOvercommit."""
    GUARANTEES_WITHOUT_SIZE = "CU409"
    """An error: a pool with guarantees that declares no size (spec.declaredCapacity), unless
    Policy spec.allowOvercommit: without a size there is no overcommit to check."""

    @property
    def family(self) -> str:
        return {
            "1": "load",
            "2": "schema",
            "3": "semantic",
            "4": "observed",
        }[self.value[2]]

"""learn: the self-learning compute adapter, turning inference records into CU factors.

Role: estimate how fast each device model really is, relative to the reference device and
per workload class, starting from vendor specs and correcting them with what the devices
delivered; propose a new FactorTable only when the policy's evidence rules are met.

Inputs: validated inference records (:mod:`records`), the published FactorTable and the
Policy's ``spec.factors`` (from :mod:`reconciler.model`), and ``now``.
Outputs: an :class:`adapter.Outcome`: per-(device, class) estimates with intervals, spec
priors and their precision-weighted combination, drift alarms and the drift coverage of
every series, slow nodes, and an :class:`update.Proposal` (the new table and every old → new
decision with its evidence).

At scale, ``stream`` folds record files and partitioned Parquet datasets into additive
aggregates a batch at a time (bounded memory), in process or on Dask (``distributed``),
and runs the same story on them.

Pipeline: ``records`` (ingest, RejectReport) → ``fit`` (WLS on aggregated cells, node-
clustered SEs) → ``drift`` (slow nodes, prewhitened CUSUM on hourly residuals) → ``fit``
again on the current segments → ``combine`` (with ``priors`` from ``specs``) → ``update``
(hysteresis). Edges: ``writeback`` (Git commit/branch/push), ``report`` (HTML),
``synthetic`` (the generator with known truth for tests and benchmarks).

Never: read the clock, draw unseeded randomness, or do I/O in the fitting path
(``records.validate``, ``fit``, ``drift``, ``combine``, ``update``, ``adapter`` are pure);
change published capacity silently (every change is a commit whose message carries the
evidence); use ``MixedLM.fit(method=["lbfgs"])`` (statsmodels#10239 zeroes the effects);
import plan/diff/apply/controller/cli.
"""

from reconciler.learn import (
    adapter,
    combine,
    drift,
    fidelity,
    fit,
    priors,
    records,
    specs,
    stream,
    synthetic,
    update,
)

__all__ = [
    "adapter",
    "combine",
    "drift",
    "fidelity",
    "fit",
    "priors",
    "records",
    "specs",
    "stream",
    "synthetic",
    "update",
]

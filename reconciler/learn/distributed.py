"""Run the streamed cell aggregation on a Dask cluster: one task per fragment.

Each fragment's partial aggregate (:func:`reconciler.learn.stream.pass1`, ``pass2``) is
computed on a worker, which reads the file itself (the records location must be visible to
the workers under the same path: a shared volume or an object-store mount); the client
combines the partials **in fragment order**, one at a time, exactly as the in-process
engine does, so both engines give identical numbers and the client holds one partial at a
time besides the running total. Workers need cu-reconciler importable (the same image).

``dask[distributed]`` is an optional extra (``pip install cu-reconciler[distributed]``);
it is imported here only, and only when the Dask engine is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from reconciler.learn import stream


@contextmanager
def client(address: str | None, workers: int = 2) -> Iterator[Any]:
    """A Dask client: to the scheduler at ``address``, or to a new local cluster of
    ``workers`` processes (one thread each) that is shut down afterwards."""
    from distributed import Client, LocalCluster

    if address:
        with Client(address, set_as_default=False) as c:  # type: ignore[no-untyped-call]
            yield c
        return
    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, Client(cluster, set_as_default=False) as c:  # type: ignore[no-untyped-call]
        yield c


def mapper(dask_client: Any) -> stream.Mapper:
    """A :data:`stream.Mapper` that runs each fragment as a Dask task."""

    def run(
        fn: Callable[..., Any], frags: Sequence[stream.Fragment], args: tuple[Any, ...]
    ) -> Iterator[Any]:
        shared = dask_client.scatter(list(args), broadcast=True) if args else []
        futures = [dask_client.submit(fn, frag, *shared, pure=False) for frag in frags]
        try:
            for fut in futures:  # in fragment order: the same sums as the local engine
                yield fut.result()
                fut.release()
        finally:
            for fut in futures:
                fut.cancel()

    return run


__all__ = ["client", "mapper"]

"""How the server shares its CPU: between requests, not inside a matrix product.

A server's parallelism comes from the requests it serves at once. numpy's BLAS would also
split every matrix product of a search over all cores, and its worker threads keep
spinning for a while after each product, taking the cores from the other requests: on two
cores, one BLAS thread per product halves the CPU a search costs under load. OpenBLAS
keeps one pool per process, so the limit is process-wide; it is lifted when the server
stops. (A process that already limits BLAS from another thread keeps its own limit.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread per call while inside."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield

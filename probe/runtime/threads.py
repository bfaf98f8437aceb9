"""How many CPU threads torch (and, on request, the BLAS under numpy) may use for a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def limit_threads(n: int | None, *, blas: bool = False) -> Iterator[None]:
    """Set torch's intra-op thread count for the block (process-wide), then restore it.

    None changes nothing. Cheap when the count is already `n`, so it can wrap every batch of
    a hot loop (extraction's small pooling ops, where waking a second thread costs more than
    it saves). `blas` also caps numpy's BLAS/OpenMP pools (threadpoolctl): the matrices of
    the cross-lingual scores are a few hundred wide, and on a shared CPU the default pools
    made the same SVD 5-20x slower than one thread (measured on a 2-core machine).
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        if blas:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=n):
                yield
        else:
            yield
    finally:
        if n != before:
            torch.set_num_threads(before)

"""How many CPU threads torch (and, on request, the BLAS under numpy) may use for a block,
and how its idle OpenMP threads wait."""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

# libgomp's spins before an idle thread sleeps when the machine was idle at start (its own
# default, 300,000, is what made a busy machine 4-10x slower).
IDLE_SPIN_COUNT = 5000
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def set_openmp_waiting(
    environ: MutableMapping[str, str] | None = None,
    load: float | None = None,
    cores: int | None = None,
) -> str:
    """Choose how torch's idle OpenMP threads wait, before torch is imported; says which.

    Between two parallel regions of a forward pass (hundreds per batch) an idle thread
    either spins, ready at once, or sleeps and has to be woken. Measured on a 2-core VM
    (MiniLM, UD English EWT test, report seconds, 3 alternating rounds, 2026-12-03): with
    the machine idle, a short spin (`GOMP_SPINCOUNT=5000`) ran 10,002-10,404 words/s
    against 8,934-9,322 asleep (`OMP_WAIT_POLICY=PASSIVE`): +12%; with one other busy
    process, 5,812-5,999 against 6,757-6,963: -13%, and libgomp's default spin was 3x
    slower still. So: the short spin when the 1-minute load average at start is under half
    the cores (libgomp, torch's runtime on Linux; LLVM's and Intel's, e.g. on macOS, get
    their nearest bound, a 1 ms block time), PASSIVE otherwise. A policy already in the
    environment is left alone. Returns "user", "spin" or "passive".
    """
    env = os.environ if environ is None else environ
    if any(name in env for name in WAIT_VARIABLES):
        return "user"
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows, or no load average to read: be polite
            load = float("inf")
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if load < (cores or 1) / 2:
        env["GOMP_SPINCOUNT"] = str(IDLE_SPIN_COUNT)
        env["KMP_BLOCKTIME"] = "1"  # the LLVM/Intel runtimes' bound: 1 ms (not measured)
        return "spin"
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return "passive"


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

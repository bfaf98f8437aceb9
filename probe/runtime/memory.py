"""Large numpy buffers that are cheap to touch for the first time.

numpy asks Linux for transparent huge pages on every array of 4 MiB or more
(`madvise(MADV_HUGEPAGE)`). On the VM this was measured on (a 2-core Xeon guest with AMX,
Linux 6.18, THP in `madvise` mode, 2026-12-03) the first touch of such memory is slow:
writing one byte per 4 KiB page of a fresh 256 MiB region took 0.66-0.71 s with huge pages
against 0.08-0.09 s without (alternating, a 4 s pause between, so each region came from
pages already handed back to the host). Where it showed (benchmarks/README.md, issue 23;
MiniLM, English EWT train, 204,577 words):

* extraction's two 256 MiB block buffers: the pooling threads' CPU fell from 2.1-2.3 s to
  0.9-1.0 s of a 15-17 s pass;
* reading one layer from the cache (`SplitReader.layer`, 157 MB): 0.61-0.66 s through h5py's
  own array, 0.08 s into small pages.

On a machine whose huge pages fault fast this may give up a little (not measured: none was
at hand): more TLB misses in the row scatters into a block buffer after its first touch.
"""

from __future__ import annotations

import contextlib
import math
import mmap

import numpy as np
from numpy.typing import DTypeLike


def small_page_array(shape: int | tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """A zero-filled array of `shape` (a size: 1-D) and `dtype` on anonymous memory of its
    own, in small pages where the system lets us say so (Linux); a plain `np.zeros` elsewhere.

    The memory is returned to the system when the array (and every view of it) is gone.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    private = getattr(mmap, "MAP_PRIVATE", None)
    if private is None:  # Windows: no anonymous private mappings to advise
        return np.zeros(shape, dtype)
    size = math.prod(shape)
    region = mmap.mmap(-1, max(size * dtype.itemsize, 1), flags=private | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_NOHUGEPAGE", None)  # Linux only
    if advice is not None:
        # a kernel built without THP refuses the advice: its pages are small anyway
        with contextlib.suppress(OSError):
            region.madvise(advice)
    return np.frombuffer(region, dtype=dtype, count=size).reshape(shape)

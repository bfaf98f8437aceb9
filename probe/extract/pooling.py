"""Subword vectors to word rows: one layer's pooling, and every layer's at once on the CPU.

A word's row is its first subword's vector, or the mean of its subwords' (`batch.inverse`
groups positions by row). `pool_layer` does that for one hidden state on its device; the
encoder uses it on CUDA, where the rows then travel to the host through `RowSink`.

On the CPU the pooled rows go straight into the block: `CpuPooler` runs one job per layer,
each gathering that layer's rows, converting them to the storage dtype and scattering them
to `out[layer, rows]`, the jobs spread over torch's thread count. The earlier path did all
of it on the encoder's thread: every layer gathered and converted into a staging tensor of
all layers, then the whole tensor scattered. Measured with an encoder that costs nothing
(the host-pipeline benchmark, mBERT's 13 x 768, 2 cores), the copies cost the same CPU
either way (4.2-4.5 s a round: they are bound by memory), so the gain is that they now run
on both cores (the encoder's thread fell from 6.5-7.2 to 2.2-2.4 CPU s), not fewer bytes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from probe.extract.batching import PreparedBatch
from probe.runtime.threads import limit_threads


class BatchIndex:
    """One batch's positions and mean-pooling groups as tensors on the device."""

    def __init__(self, batch: PreparedBatch, device: torch.device) -> None:
        self.rows = len(batch.rows)
        self.positions = torch.from_numpy(batch.positions).to(device)
        self.inverse: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        if batch.inverse is not None and batch.counts is not None:
            self.inverse = torch.from_numpy(batch.inverse).to(device)
            self.counts = torch.from_numpy(batch.counts).to(device, torch.float32)[:, None]


def pool_layer(state: torch.Tensor, index: BatchIndex) -> torch.Tensor:
    """One layer's word rows (rows, hidden) from its (windows, width, hidden) state, as a
    new tensor: first-subword rows in the state's dtype, mean rows summed in float32."""
    flat = state.flatten(0, 1)
    if index.inverse is None:
        return flat.index_select(0, index.positions)
    assert index.counts is not None
    picked = flat.index_select(0, index.positions).float()
    summed = torch.zeros((index.rows, flat.shape[1]), device=flat.device)
    return summed.index_add_(0, index.inverse, picked).div_(index.counts)


# Rows per chunk of a first-subword job: about this many bytes of the state's dtype, so the
# gathered rows are still in the core's cache when they are converted and scattered.
# Against one pass per step over all rows of the layer, gather + convert + scatter of
# 3,300 MiniLM rows took 713 us instead of 967 (256-row chunks; 128: 786, 512: 805); in
# extraction of EWT train the pooling threads' CPU fell from 0.96-1.01 s to 0.86-0.94.
CHUNK_BYTES = 384 << 10


class CpuPooler:
    """Pools every layer of a batch into the block buffer, one job per layer, `threads` at a
    time (torch's count by default). Each job keeps its gather and conversion buffers per
    thread, so after the first batches nothing is allocated.

    Each job runs torch with one intra-op thread: the jobs are the parallelism, and a
    nested thread team per small op would cost more than it saves.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads if threads is not None else torch.get_num_threads())
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="pool-layers")
            weakref.finalize(self, self._pool.shutdown, wait=False)

    def pool(self, states: Sequence[torch.Tensor], batch: PreparedBatch, out: np.ndarray) -> None:
        """`out[layer, batch.rows]` = the batch's pooled rows of every layer, on return."""
        index = BatchIndex(batch, torch.device("cpu"))
        target = torch.from_numpy(out[:0]).dtype

        def job(layer: int) -> None:
            state = states[layer]
            hidden = state.shape[-1]
            dest = out[layer]
            if index.inverse is None:  # first subword: gather, convert, scatter by chunks
                flat = state.flatten(0, 1)
                step = max(16, CHUNK_BYTES // (hidden * state.element_size()))
                step = min(step, max(index.rows, 1))
                gathered = self._buffer("gathered", step, hidden, state.dtype)
                stored = self._buffer("stored", step, hidden, target)
                for lo in range(0, index.rows, step):
                    hi = min(lo + step, index.rows)
                    picked = gathered[: hi - lo]
                    torch.index_select(flat, 0, index.positions[lo:hi], out=picked)
                    dest[batch.rows[lo:hi]] = stored[: hi - lo].copy_(picked).numpy()
                return
            rows = pool_layer(state, index)
            if rows.dtype != target:
                rows = self._buffer("stored", index.rows, hidden, target).copy_(rows)
            dest[batch.rows] = rows.numpy()

        with limit_threads(1):
            if self._pool is None:
                for layer in range(len(states)):
                    job(layer)
            else:
                # list(): wait for every job, and raise the first error here
                list(self._pool.map(job, range(len(states))))

    def _buffer(self, name: str, rows: int, hidden: int, dtype: torch.dtype) -> torch.Tensor:
        """This thread's reusable (rows, hidden) buffer `name`, grown with headroom."""
        held: torch.Tensor | None = getattr(self._local, name, None)
        if held is None or held.dtype != dtype or held.numel() < rows * hidden:
            held = torch.empty(int(rows * hidden * 1.25) + 1, dtype=dtype)
            setattr(self._local, name, held)
        return held[: rows * hidden].view(rows, hidden)

"""Pooled rows into the block's feature buffer, beside the encoder's thread.

Per batch the encoder pools every layer's rows into one (layers, rows, hidden) staging
tensor; `RowSink` moves it into the block buffer, `out[:, rows]`. That is a scatter (batches
are cut from length-sorted sentences, so a batch's rows lie all over the block), memory
bound and as costly as the pooling itself: with an encoder that costs nothing (the host
pipeline benchmark, or a GPU) it was half of the encoder thread's time. On CUDA it runs on a
thread of its own (numpy releases the GIL while it copies), the staging buffers are pinned
host memory filled from the device on a side stream, so the next forward pass is queued
while the copy and the scatter run. The encoder does not use it on the CPU: there
`probe.extract.pooling.CpuPooler` pools each layer straight into the block, layers in
parallel. Inline is still the default on the CPU: a scatter on a thread beside a CPU
forward pass cost MiniLM extraction 6-7% (2,286 / 2,416 words/s against 2,500 / 2,579
inline, UD de+fr test, alternating runs).

`drain()` waits for every batch handed over; a block is complete only after it, and the
first error of the scatter thread is raised there (or at the next `stage`).
"""

from __future__ import annotations

import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class _Slot:
    """One staging buffer and the scatter that last read it."""

    host: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    pending: Future[None] | None = None


class RowSink:
    """Scatters staged rows into block buffers, on one background thread (`depth` batches in
    flight; the default on CUDA) or inline (the default on the CPU).

    Memory: `depth` staging buffers of one batch's rows (every layer) each.
    """

    def __init__(
        self, device: torch.device, depth: int = 2, background: bool | None = None
    ) -> None:
        self.device = device
        self._slots = [_Slot() for _ in range(depth)]
        self._turn = 0
        self._cuda = device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if self._cuda else None
        self.background = self._cuda if background is None else background
        self._pool: ThreadPoolExecutor | None = None
        if self.background:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="row-scatter")
            weakref.finalize(self, self._pool.shutdown, wait=False)

    def stage(self, shape: tuple[int, int, int], dtype: torch.dtype) -> torch.Tensor:
        """Where to pool the next batch's rows, (layers, rows, hidden) on the device.

        On the CPU this is the next staging buffer itself (its previous scatter finished);
        on CUDA a device tensor, copied to the pinned buffer by `submit`.
        """
        if self._cuda:
            return torch.empty(shape, dtype=dtype, device=self.device)
        return self._host(self._slots[self._turn], shape, dtype)

    def submit(self, staged: torch.Tensor, rows: np.ndarray, out: np.ndarray) -> None:
        """Queue `out[:, rows] = staged` (after the copy from the device, on CUDA)."""
        slot = self._slots[self._turn]
        self._turn = (self._turn + 1) % len(self._slots)
        ready: torch.cuda.Event | None = None
        if self._cuda:
            assert self._stream is not None
            host = self._host(slot, tuple(staged.shape), staged.dtype)  # type: ignore[arg-type]
            pooled = torch.cuda.Event()
            pooled.record()  # on the compute stream, after the pooling kernels
            with torch.cuda.stream(self._stream):
                self._stream.wait_event(pooled)
                host.copy_(staged, non_blocking=True)
                staged.record_stream(self._stream)  # not reused before the copy is done
                ready = torch.cuda.Event()
                ready.record(self._stream)
        else:
            host = staged
        if self._pool is None:  # inline
            _scatter(host, ready, rows, out)
        else:
            slot.pending = self._pool.submit(_scatter, host, ready, rows, out)

    def drain(self) -> None:
        """Wait for every queued scatter; the first error is raised here."""
        for slot in self._slots:
            self._wait(slot)

    def _host(self, slot: _Slot, shape: tuple[int, int, int], dtype: torch.dtype) -> torch.Tensor:
        """The slot's host buffer as a `shape` view, once its previous scatter is done."""
        self._wait(slot)
        size = shape[0] * shape[1] * shape[2]
        if slot.host.numel() < size or slot.host.dtype != dtype:
            # Batches vary in rows: grow with headroom, rarely (pinning is slow).
            slot.host = torch.empty(int(size * 1.25) + 1, dtype=dtype, pin_memory=self._cuda)
        return slot.host[:size].view(shape)

    @staticmethod
    def _wait(slot: _Slot) -> None:
        if slot.pending is not None:
            pending, slot.pending = slot.pending, None
            pending.result()


def _scatter(
    host: torch.Tensor, ready: torch.cuda.Event | None, rows: np.ndarray, out: np.ndarray
) -> None:
    if ready is not None:
        ready.synchronize()
    out[:, rows] = host.numpy()

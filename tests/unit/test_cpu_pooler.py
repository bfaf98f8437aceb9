"""CpuPooler: every layer's pooled rows land in the block buffer exactly as a plain per-layer
gather (first subword) or mean would put them, whatever the thread count and state dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.extract import pooling
from probe.extract.batching import PreparedBatch
from probe.extract.pooling import CpuPooler


def _batch(
    rng: np.random.Generator, tokens: int, n_rows: int, block: int, mean: bool
) -> PreparedBatch:
    """A batch whose `n_rows` words go to scattered rows of a `block`-row buffer."""
    rows = rng.choice(block, n_rows, replace=False)
    if mean:  # each word owns 1-3 distinct positions
        counts = rng.integers(1, 4, n_rows)
        positions = rng.choice(tokens, int(counts.sum()), replace=False)
        inverse = np.repeat(np.arange(n_rows), counts)
    else:
        counts, inverse = None, None
        positions = rng.choice(tokens, n_rows, replace=False)
    empty = np.zeros(0, np.int64)
    return PreparedBatch(empty, empty, empty, positions.astype(np.int64), rows.astype(np.int64),
                         inverse, counts, tokens, 0, n_rows)  # fmt: skip


def _expected(states: list[torch.Tensor], batch: PreparedBatch, out: np.ndarray) -> None:
    for layer, state in enumerate(states):
        flat = state.float().flatten(0, 1).numpy()
        picked = flat[batch.positions]
        if batch.inverse is not None:
            assert batch.counts is not None
            sums = np.zeros((len(batch.rows), flat.shape[1]), np.float32)
            np.add.at(sums, batch.inverse, picked)
            picked = sums / batch.counts[:, None]
        out[layer, batch.rows] = picked.astype(out.dtype)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("mean", [False, True])
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunked", [False, True])
def test_rows_equal_a_plain_gather(
    threads: int, mean: bool, state_dtype: torch.dtype, chunked: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    if chunked:  # 16-row chunks: batches of 30 and 45 rows span several
        monkeypatch.setattr(pooling, "CHUNK_BYTES", 1)
    rng = np.random.default_rng(threads + 2 * mean)
    n_layers, windows, width, hidden, block = 5, 4, 64, 8, 200
    pooler = CpuPooler(threads)
    out = np.full((n_layers, block, hidden), np.nan, np.float16)
    want = out.copy()
    # Several batches of different sizes: the per-thread buffers grow and are reused.
    free = np.arange(block)
    for n_rows in (30, 7, 45):
        batch = _batch(rng, windows * width, n_rows, len(free), mean)
        batch.rows = free[batch.rows]
        free = np.setdiff1d(free, batch.rows)
        states = [torch.randn(windows, width, hidden).to(state_dtype) for _ in range(n_layers)]
        pooler.pool(states, batch, out)
        _expected(states, batch, want)
    np.testing.assert_allclose(out.astype(np.float32), want.astype(np.float32), rtol=1e-3)
    assert np.isnan(out[:, free]).all()  # rows of no batch are untouched


def test_a_bad_row_is_raised_and_threads_are_restored() -> None:
    pooler = CpuPooler(2)
    before = torch.get_num_threads()
    batch = _batch(np.random.default_rng(0), 16, 4, 10, mean=False)
    batch.rows = np.array([0, 1, 2, 99])  # row 99 of a 10-row block
    out = np.zeros((2, 10, 8), np.float16)
    with pytest.raises(IndexError):
        pooler.pool([torch.randn(1, 16, 8) for _ in range(2)], batch, out)
    assert torch.get_num_threads() == before

"""RowSink: pooled rows reach the block buffer on the row thread, safely and completely."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
import torch

import probe.extract.rows as rows_module
from probe.extract.rows import RowSink


def _batches(n_batches: int, n_rows: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Disjoint random row sets of one block, each with its own (layers, rows, hidden) values."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_rows)
    parts = np.array_split(order, n_batches)
    return [(p, rng.standard_normal((3, len(p), 8)).astype(np.float16)) for p in parts]


def _fill(sink: RowSink, batches: list[tuple[np.ndarray, np.ndarray]], out: np.ndarray) -> None:
    for rows, values in batches:
        staged = sink.stage(values.shape, torch.float16)
        staged.copy_(torch.from_numpy(values))
        sink.submit(staged, rows, out)


def _expected(batches: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    want = np.zeros(shape, np.float16)
    for rows, values in batches:
        want[:, rows] = values
    return want


@pytest.mark.parametrize("background", [True, False])
def test_every_row_lands_after_drain(background: bool) -> None:
    batches = _batches(9, 200, seed=0)
    out = np.zeros((3, 200, 8), np.float16)
    sink = RowSink(torch.device("cpu"), background=background)
    _fill(sink, batches, out)
    sink.drain()
    np.testing.assert_array_equal(out, _expected(batches, out.shape))


def test_a_staging_buffer_is_not_refilled_before_its_scatter_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With slow scatters, `stage` must wait for the one that last read its buffer, or a
    later batch's values would overwrite rows still to be copied."""
    real = rows_module._scatter

    def slow(*args: Any) -> None:
        time.sleep(0.02)
        real(*args)

    monkeypatch.setattr(rows_module, "_scatter", slow)
    batches = _batches(7, 120, seed=1)
    out = np.zeros((3, 120, 8), np.float16)
    sink = RowSink(torch.device("cpu"), depth=2, background=True)
    _fill(sink, batches, out)
    sink.drain()
    np.testing.assert_array_equal(out, _expected(batches, out.shape))


def test_a_scatter_error_is_raised_by_drain() -> None:
    sink = RowSink(torch.device("cpu"), background=True)
    out = np.zeros((3, 10, 8), np.float16)
    staged = sink.stage((3, 2, 8), torch.float16)
    staged.zero_()
    sink.submit(staged, np.array([3, 99]), out)  # row 99 of 10
    with pytest.raises(IndexError):
        sink.drain()
    sink.drain()  # reported once; the sink is usable again


def test_the_cpu_scatters_inline_by_default() -> None:
    assert not RowSink(torch.device("cpu")).background

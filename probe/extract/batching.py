"""Units to batches: length-sorted packing under a token budget, and padded numpy inputs.

numpy only, so batches are prepared on the prefetch thread while the encoder computes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from probe.extract.windows import Unit


@dataclass
class PreparedBatch:
    """One batch ready for the encoder: padded inputs (windows, width), the flat token
    positions to read, and the output rows they go to (with mean pooling's groups)."""

    input_ids: np.ndarray
    mask: np.ndarray
    types: np.ndarray
    positions: np.ndarray
    rows: np.ndarray
    inverse: np.ndarray | None
    counts: np.ndarray | None
    tokens: int
    pad_tokens: int
    progress: int


def batches(
    units: Sequence[Unit], batch_tokens: int, max_spread: float = 0.1
) -> Iterator[list[int]]:
    """Indices of units, longest first, packed so batch rows x width <= batch_tokens.

    A batch is also closed early once the next unit is more than `max_spread` shorter
    than the batch's widest one and the batch already holds a quarter of the budget:
    short sentences then share batches with others of their own length, which keeps the
    padding waste low without making batches so small that per-call overhead dominates.
    """
    order = sorted(range(len(units)), key=lambda i: -units[i].width)
    batch: list[int] = []
    rows = width = 0
    for i in order:
        unit = units[i]
        n = len(unit.windows)
        new_width = max(width, unit.width)
        over_budget = (rows + n) * new_width > batch_tokens
        too_ragged = rows * width >= batch_tokens // 4 and unit.width < (1 - max_spread) * width
        if batch and (over_budget or too_ragged):
            yield batch
            batch, rows, new_width = [], 0, unit.width
        batch.append(i)
        rows += n
        width = new_width
    if batch:
        yield batch


def split(unit: Unit, batch_tokens: int) -> list[Unit]:
    """A unit whose windows exceed the token budget, as pieces of whole windows that
    each fit it (where the rows allow), so a long sentence runs as several batches.

    One forward pass over all windows of a 20,000-word sentence (97 x 512 tokens with
    MiniLM) took 9.0 s where 8-window batches of the same windows took 6.1-6.9 s: the
    activations of every layer (and SDPA's per-head work) of 50k tokens at once fall
    out of the CPU caches. A piece ends only between two windows whose owned rows do
    not meet, so every output row (a word, with all its subwords) is pooled inside one
    batch from exactly the subwords it was pooled from before; where a word straddles
    the next boundary, the piece takes one more window. Windows are computed
    independently (no padding: every window of a long unit is max_length wide), so the
    pieces' features equal the single batch's: bit for bit on CPU in bf16 and fp32
    (tests/test_extract.py; MiniLM shards of a 20,000-word sentence compared).
    """
    per = max(1, batch_tokens // max(unit.width, 1))
    n_win = len(unit.windows)
    if n_win <= per:
        return [unit]
    none = np.iinfo(np.int64).max
    lowest = np.asarray([t[t >= 0].min() if (t >= 0).any() else none for t in unit.targets])
    highest = np.asarray([t.max() for t in unit.targets])  # -1: owns nothing
    # A cut before window b is safe iff no row owned before b is also owned from b on.
    before = np.maximum.accumulate(highest)[:-1]
    after = np.minimum.accumulate(lowest[::-1])[::-1][1:]
    safe = np.flatnonzero(before < after) + 1
    cuts = [0]
    while n_win - cuts[-1] > per:
        later = safe[safe > cuts[-1]]
        if not later.size:
            break
        fits = later[later <= cuts[-1] + per]
        cuts.append(int(fits[-1] if fits.size else later[0]))
    cuts.append(n_win)
    pieces = []
    done = 0
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        targets = unit.targets[lo:hi]
        owned = np.concatenate(targets)
        # the progress bar counts each piece's own rows; the last takes what is left
        progress = unit.progress - done if i == len(cuts) - 2 else len(np.unique(owned[owned >= 0]))
        done += progress
        types = None if unit.type_ids is None else unit.type_ids[lo:hi]
        pieces.append(Unit(unit.windows[lo:hi], targets, types, unit.n_targets, progress))
    return pieces


def prepared(
    units: Sequence[Unit],
    row_base: Sequence[int],
    pooling: str,
    batch_tokens: int,
    pad_id: int,
    markers: np.ndarray | None = None,
) -> Iterator[PreparedBatch]:
    """Every batch of `units` ready for the encoder: `batches`, with a unit over the budget
    (always a batch of its own there) run as the pieces of `split`, one batch each.

    The other batches are exactly those `batches` forms, so short sentences meet the
    same neighbours and padding as without the split.
    """
    for batch in batches(units, batch_tokens):
        if len(batch) == 1:
            (index,) = batch
            for piece in split(units[index], batch_tokens):
                yield prepare([piece], [row_base[index]], pooling, pad_id, markers)
        else:
            yield prepare([units[i] for i in batch], [row_base[i] for i in batch], pooling,
                          pad_id, markers)  # fmt: skip


def prepare(
    units: Sequence[Unit],
    row_base: Sequence[int],
    pooling: str,
    pad_id: int,
    markers: np.ndarray | None = None,
) -> PreparedBatch:
    """One batch's padded inputs and the token positions each output row is read from.

    `first-content` reads a word's first piece that is not a bare boundary marker (one of
    `markers`, the tokenizer's "▁"), the marker itself where the word has nothing else;
    without markers it is `first`, the same positions.
    """
    windows = [w for u in units for w in u.windows]
    lengths = np.fromiter((len(w) for w in windows), dtype=np.int64, count=len(windows))
    width = int(lengths.max())
    n_win = len(windows)
    # Every window's tokens at once: flat (row, column) coordinates of the real tokens.
    win_row = np.repeat(np.arange(n_win), lengths)
    column = np.arange(len(win_row)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = win_row * width + column
    # Compact while queued (int32 ids, uint8 mask and types); int64 on the device.
    input_ids = np.full(n_win * width, pad_id, dtype=np.int32)
    input_ids[flat] = np.concatenate(windows)
    mask = np.zeros(n_win * width, dtype=np.uint8)
    mask[flat] = 1
    types = np.zeros(n_win * width, dtype=np.uint8)
    if any(u.type_ids is not None for u in units):
        types[flat] = np.concatenate([
            t for u in units
            for t in (u.type_ids or [np.zeros(len(w), np.int64) for w in u.windows])
        ])  # fmt: skip
    base_per_window = np.repeat(
        np.asarray(row_base, dtype=np.int64), [len(u.windows) for u in units]
    )
    targets = np.concatenate([t for u in units for t in u.targets])
    keep = targets >= 0
    positions = flat[keep]
    rows = (targets + np.repeat(base_per_window, lengths))[keep]
    inverse = counts = None
    if pooling == "mean":
        uniq, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    elif pooling == "first-content" and markers is not None and markers.size:
        # Per row, its pieces in order with the bare markers last; np.unique keeps the first.
        bare = np.isin(input_ids[positions], markers)
        order = np.lexsort((np.arange(len(rows)), bare, rows))
        uniq, first_index = np.unique(rows[order], return_index=True)
        positions = positions[order[first_index]]
    else:
        pick_from = rows[::-1] if pooling == "last" else rows  # first, first-content
        uniq, first_index = np.unique(pick_from, return_index=True)
        if pooling == "last":
            first_index = len(rows) - 1 - first_index
        positions = positions[first_index]
    shape = (n_win, width)
    return PreparedBatch(
        input_ids.reshape(shape), mask.reshape(shape), types.reshape(shape), positions,
        uniq, inverse, counts, tokens=n_win * width, pad_tokens=n_win * width - len(flat),
        progress=sum(u.progress for u in units),
    )  # fmt: skip

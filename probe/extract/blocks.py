"""Blocks: the unit of work between tokenising and writing, bounded in feature bytes.

Sentences are read in file order in blocks of about `block_bytes` of features; inside a
block they are tokenised, sorted by length and batched (on the prefetch thread), and a
finished block goes to the writer thread while the next one is computed, so memory is
bounded by two blocks, never by the split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from probe.extract.batching import PreparedBatch, prepared
from probe.extract.plan import ShardItem, shard_ranges
from probe.extract.windows import UnitBuilder
from probe.runtime.memory import small_page_array


@dataclass
class PreparedBlock:
    """One block of a shard, tokenised and batched: rows [row, row + n_rows) of the shard."""

    item: int  # ShardItem.index
    row: int
    n_rows: int
    out_rows: int  # rows of the block's feature array (pairs fill two per record)
    batches: list[PreparedBatch]
    empty_words: int
    bare_first: int  # words whose first piece is the bare boundary marker
    truncated: int
    last: bool  # the shard's last block
    word_types: np.ndarray  # word tasks: each row's type key, (n_rows,) int64; else empty
    segments: np.ndarray  # a pair's token view: each row's segment, (n_rows,) int8; else empty


class BlockBuffers:
    """Two feature buffers used in turn: one is filled while the other is being written.

    `ShardWrites.block` waits for the previous block's write before queueing the next, so
    by the time a buffer comes round again its write is done. Reusing them keeps the pages
    mapped: a fresh array per block made the encoder's thread take a page fault on every
    4 KiB of features it wrote (~0.4 s of 8 s for MiniLM on the UD test splits). They are
    in small pages (probe.runtime.memory): their first touch cost seven times less.
    """

    def __init__(self, n_layers: int, hidden: int, dtype: str) -> None:
        self.n_layers, self.hidden, self.dtype = n_layers, hidden, np.dtype(dtype)
        self._buffers: list[np.ndarray] = [np.empty(0, self.dtype), np.empty(0, self.dtype)]
        self._turn = 0

    def take(self, rows: int) -> np.ndarray:
        """A (layers, rows, hidden) array; its contents are whatever was there before."""
        self._turn = 1 - self._turn
        size = self.n_layers * rows * self.hidden
        if self._buffers[self._turn].size < size:
            self._buffers[self._turn] = small_page_array(size, self.dtype)
        return self._buffers[self._turn][:size].reshape(self.n_layers, rows, self.hidden)


def block_rows(
    n_layers: int, hidden: int, dtype: str, block_bytes: int, word_level: bool,
    token_length: int | None = None,
) -> int:  # fmt: skip
    """Records' rows per block (words, or records of two rows): `block_bytes` of features, at
    least 1024 so tiny budgets still make batches worth a forward pass. A pair's token view
    counts pairs of up to `token_length` rows each, at least 64 (a block of 1024 mBERT pairs
    of 128 tokens would be 2.7 GB)."""
    bytes_per_row = n_layers * hidden * np.dtype(dtype).itemsize
    if token_length is not None:
        return max(64, block_bytes // bytes_per_row // token_length)
    return max(1024, block_bytes // bytes_per_row // (1 if word_level else 2))


# A shard's first block holds this share of a block's rows: the encoder waits for the run's
# first block to be tokenised and batched, and for no other (each later one is prepared
# while the one before it runs). MiniLM on English EWT train (2 cores): a whole first block
# was 0.10-0.11 s of tokenising before the first forward pass, a short one 0.03 s. Every
# shard starts this way, not only the run's first: a shard's blocks (and so its batches and
# its bits) must not depend on which shards a run happens to have left to build.
FIRST_BLOCK_SHARE = 1 / 8


def block_ranges(rows_per_record: Sequence[int], rows_per_block: int) -> list[tuple[int, int]]:
    """A shard's blocks: consecutive record ranges of at most `rows_per_block` rows, the
    first of them short (`FIRST_BLOCK_SHARE`) so the encoder starts sooner."""
    head = shard_ranges(rows_per_record, max(1, int(rows_per_block * FIRST_BLOCK_SHARE)))[0]
    cut = head[1]
    if cut == len(rows_per_record):
        return [head]
    rest = shard_ranges(rows_per_record[cut:], rows_per_block)
    return [head] + [(lo + cut, hi + cut) for lo, hi in rest]


def prepared_blocks(
    units: UnitBuilder,
    items: Sequence[ShardItem],
    *,
    n_layers: int,
    hidden: int,
    pooling: str,
    dtype: str,
    block_bytes: int,
    batch_tokens: int,
) -> Iterator[PreparedBlock]:
    """Every block of every shard, tokenised and batched, in the order they are extracted.

    The builder's counters of empty words, bare first pieces and truncations are read per
    block here, on the one thread that tokenises. Word tasks pool with `pooling`; sentence
    tasks always mean (with or without the special tokens: the task's `sentence_pooling`).
    """
    for item in items:
        job = item.job
        lo, hi = item.records
        records = job.records[lo:hi]
        per_record = job.rows_per_record[lo:hi]
        word_level = job.task.level == "word"
        tokens = job.task.level == "pair-tokens"
        rows_per_block = block_rows(
            n_layers,
            hidden,
            dtype,
            block_bytes,
            word_level,
            units.token_limit(job.task.token_length) if tokens else None,
        )
        ranges = block_ranges(per_record, rows_per_block)
        row = 0
        for number, (b_lo, b_hi) in enumerate(ranges):
            empty, bare, truncated = units.empty_words, units.bare_first, units.truncated
            block, bases, out_rows = units.block(
                job.task.level, records[b_lo:b_hi], per_record[b_lo:b_hi],
                job.task.sentence_pooling, job.task.token_length,
            )  # fmt: skip
            # A word's subwords are pooled with `pooling`; a token view keeps every token
            # ("first" of a one-token row); sentences are means.
            how = pooling if word_level else "first" if tokens else "mean"
            batches = list(prepared(block, bases, how, batch_tokens, units.pad_id,
                                    units.markers))  # fmt: skip
            n_rows = out_rows if tokens else sum(per_record[b_lo:b_hi])
            types = np.zeros(0, dtype=np.int64)
            if word_level:
                types = np.concatenate([u.word_types for u in block if u.word_types is not None])
            segments = np.zeros(0, dtype=np.int8)
            if tokens:
                segments = np.concatenate([u.segments for u in block if u.segments is not None])
                segments = segments.astype(np.int8)
            yield PreparedBlock(
                item.index, row, n_rows, out_rows, batches, units.empty_words - empty,
                units.bare_first - bare, units.truncated - truncated,
                last=number == len(ranges) - 1, word_types=types, segments=segments,
            )  # fmt: skip
            row += n_rows


def skip_blocks(blocks: Iterator[PreparedBlock], item: ShardItem) -> None:
    """Drop a shard's prepared blocks (another process built it while we waited)."""
    for block in blocks:
        if block.item != item.index:
            raise RuntimeError(f"prepared block of shard {block.item} while at {item.index}")
        if block.last:
            return

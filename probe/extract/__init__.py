"""Extraction: run the encoder once over task data and write every layer to the cache.

Sentences are read in file order in blocks of about `block_rows` words; inside a block they
are tokenised, sorted by length and packed into batches of at most `batch_tokens` padded
tokens, so little compute is spent on padding; a sentence longer than `max_length` becomes
overlapping windows, run in batches of the same budget. Subword vectors of every hidden
state are pooled to words on the device, and a finished block is handed to a writer thread
that appends it to the shard while the next block is computed. Memory is bounded by one block,
never by the split.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from probe import cache as store
from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.tasks import (
    Task,
    default_data_dir,
    expand_languages,
    get_task,
    local_files,
    read_split,
)
from probe.errors import ProbeError
from probe.extract.background import ShardWrites, prefetch, trim_heap
from probe.models import ModelRef, load_encoder, resolve_model, special_token_layout
from probe.runtime.faults import fault_point
from probe.runtime.precision import autocast, cpu_threads, pick_compute_dtype, small_kernel_caches
from probe.runtime.ranks import Rank, assign, current_rank, from_main, gather_all, process_group

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

Pooling = Literal["first", "mean", "last"]
POOLINGS: tuple[str, ...] = ("first", "mean", "last")
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32")
COMPUTE_DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
OVERWRITE: tuple[str, ...] = ("never", "missing", "always")


@dataclass(frozen=True)
class ExtractConfig:
    """What to extract and how; everything that changes the numbers goes into the cache key."""

    model: str
    task: str
    langs: tuple[str, ...] = ("all",)
    splits: tuple[str, ...] | None = None  # None: the splits a zero-shot run from `source` needs
    source: str | None = None
    pooling: Pooling = "first"
    dtype: str = "float16"
    compute_dtype: str = "auto"
    max_length: int = 512
    window_stride: int | None = None  # step between overlapping windows; None = half a window
    batch_tokens: int | None = None  # None: 4096 on CPU, 32768 on CUDA
    device: str = "auto"
    data_dir: Path | None = None
    cache_root: Path = Path("cache")
    overwrite: str = "missing"
    max_sentences: int | None = None  # cap per split (first N records), part of the data identity
    shard_rows: int = 2_000_000  # words (or pairs) per shard file
    block_bytes: int = 256 << 20  # feature bytes computed between two writes

    def __post_init__(self) -> None:
        checks = {
            "pooling": (self.pooling, POOLINGS),
            "dtype": (self.dtype, STORAGE_DTYPES),
            "compute_dtype": (self.compute_dtype, COMPUTE_DTYPES),
            "overwrite": (self.overwrite, OVERWRITE),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ProbeError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.max_length < 8:
            raise ProbeError(f"max_length must be at least 8, not {self.max_length}")


@dataclass
class ShardReport:
    """One shard: rows are words for word-level tasks, pairs for sentence-level ones."""

    path: Path
    rows: int
    seconds: float
    skipped: bool
    tokens: int = 0
    pad_tokens: int = 0
    source_hash: str = ""  # identity of the data the shard was (or is to be) built from
    rank: int = 0  # which rank of a distributed run extracted it


@dataclass
class ExtractReport:
    key: str
    cache_dir: Path
    device: str
    compute_dtype: str
    shards: list[ShardReport] = field(default_factory=list)
    world_size: int = 1  # ranks that shared the work (torchrun / accelerate launch)
    rank: int = 0  # the rank that returned this report (every rank gets the merged list)
    wall_seconds: float = 0.0  # from the first shard to the last rank finishing

    @property
    def extracted(self) -> list[ShardReport]:
        return [s for s in self.shards if not s.skipped]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.extracted)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.extracted)

    @property
    def padding_waste(self) -> float:
        tokens = sum(s.tokens for s in self.extracted)
        return sum(s.pad_tokens for s in self.extracted) / tokens if tokens else 0.0


# --- tokenised units ------------------------------------------------------------------------


@dataclass
class Unit:
    """One record as encoder input: one or more windows, each a row of token ids.

    `targets[w][t]` is the unit-local output row that token t of window w is pooled into, or
    -1 (special tokens, and window overlaps assigned to another window).
    """

    windows: list[np.ndarray]
    targets: list[np.ndarray]
    type_ids: list[np.ndarray] | None
    n_targets: int
    progress: int  # records (words for word tasks) this unit completes, for the progress bar

    @property
    def width(self) -> int:
        return max(len(w) for w in self.windows)


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


@dataclass
class PreparedBlock:
    """One block of a shard, tokenised and batched: rows [row, row + n_rows) of the shard."""

    item: int  # ShardItem.index
    row: int
    n_rows: int
    out_rows: int  # rows of the block's feature array (pairs fill two per record)
    batches: list[PreparedBatch]
    empty_words: int
    truncated: int
    last: bool  # the shard's last block


class Encoder:
    """The model, its tokenizer and precision: turns units into pooled layer features."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerFast,
        device: torch.device,
        compute_dtype: torch.dtype,
        max_length: int,
        window_stride: int | None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.compute_dtype = compute_dtype
        limit = _position_limit(model)
        if max_length > limit:
            log.info(
                "max_length %d exceeds the model's %d positions; using %d", max_length, limit, limit
            )
        self.max_length = min(max_length, limit)
        self.prefix, self.suffix = special_token_layout(tokenizer)
        self.window = self.max_length - len(self.prefix) - len(self.suffix)
        self.stride = window_stride or max(1, self.window // 2)
        if not 0 < self.stride <= self.window:
            raise ProbeError(f"window stride must be in 1..{self.window}, not {self.stride}")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else self.pad_id
        config = model.config
        self.n_layers = int(config.num_hidden_layers) + 1
        self.hidden = int(config.hidden_size)
        self.empty_words = 0
        self.truncated = 0

    # tokenisation ---------------------------------------------------------------------------

    def word_units(self, sentences: Sequence[TaggedSentence]) -> list[Unit]:
        """Subword ids per word; words the tokenizer drops become one UNK, never a zero vector."""
        enc = self.tokenizer(
            [list(s.words) for s in sentences], is_split_into_words=True, add_special_tokens=False
        )
        units = []
        no_target = -np.ones(len(self.prefix), dtype=np.int64)
        tail = -np.ones(len(self.suffix), dtype=np.int64)
        for i, sent in enumerate(sentences):
            ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
            word_ids = np.asarray(enc.word_ids(i), dtype=np.int64)
            n_words = len(sent.words)
            # Word ids run 0, 0, 1, 2, 2, ... so every word has a subword iff the ids start
            # at 0, never skip one, and end at the last word.
            if (
                len(word_ids) == 0
                or word_ids[0] != 0
                or word_ids[-1] != n_words - 1
                or (len(word_ids) > 1 and np.diff(word_ids).max() > 1)
            ):
                ids, word_ids = self._fill_empty_words(ids, word_ids, n_words)
            if len(ids) <= self.window:  # the common case: one window, every subword its own
                window = np.concatenate([self.prefix, ids, self.suffix])
                targets = np.concatenate([no_target, word_ids, tail])
                units.append(Unit([window], [targets], None, n_words, n_words))
            else:
                units.append(self._windowed(ids, word_ids, n_words))
        return units

    def _fill_empty_words(
        self, ids: np.ndarray, word_ids: np.ndarray, n_words: int
    ) -> tuple[np.ndarray, np.ndarray]:
        counts = np.bincount(word_ids, minlength=n_words)
        new_ids: list[int] = []
        new_words: list[int] = []
        pos = 0
        for word in range(n_words):
            if counts[word] == 0:
                new_ids.append(self.unk_id)
                new_words.append(word)
                self.empty_words += 1
            while pos < len(word_ids) and word_ids[pos] == word:
                new_ids.append(int(ids[pos]))
                new_words.append(word)
                pos += 1
        return np.asarray(new_ids, dtype=np.int64), np.asarray(new_words, dtype=np.int64)

    def _windowed(self, ids: np.ndarray, targets: np.ndarray, n_targets: int) -> Unit:
        """Split a long sequence into overlapping windows; each subword is pooled from the
        window where it has the most context on both sides (never silently truncated).

        Ownership looks only at the few windows that cover each subword (about window /
        stride + 1 of them), so time and memory grow linearly with the sentence: scoring
        every window for every subword took windows x subwords (n² / stride) of int64
        arrays, +67 MB of peak memory for a 20,000-word sentence and 4 s and 1.5 GB for
        100,000 words (now 0.4 s and 46 MB). The owners are the same, ties included.
        """
        n = len(ids)
        starts = [0]
        while starts[-1] + self.window < n:
            starts.append(min(starts[-1] + self.stride, n - self.window))
        windows, window_targets = [], []
        owner = _window_owners(np.asarray(starts, dtype=np.int64), self.window, n)
        no_target = -np.ones(len(self.prefix), dtype=np.int64)
        tail = -np.ones(len(self.suffix), dtype=np.int64)
        for w, start in enumerate(starts):
            stop = min(start + self.window, n)
            windows.append(np.concatenate([self.prefix, ids[start:stop], self.suffix]))
            mine = np.where(owner[start:stop] == w, targets[start:stop], -1)
            window_targets.append(np.concatenate([no_target, mine, tail]))
        return Unit(windows, window_targets, None, n_targets, n_targets)

    def pair_units(self, pairs: Sequence[TextPair]) -> list[Unit]:
        """Joint encoding of both texts; each side is mean-pooled into its own row."""
        a = [p.text_a for p in pairs]
        b = [p.text_b for p in pairs]
        full = self.tokenizer(a, b, add_special_tokens=True, truncation=False)
        long = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > self.max_length]
        if long:
            cut = self.tokenizer(
                [a[i] for i in long], [b[i] for i in long], truncation="longest_first",
                max_length=self.max_length,
            )  # fmt: skip
            self.truncated += len(long)
            log.warning("%d pairs longer than %d tokens were truncated", len(long), self.max_length)
        units = []
        replaced = dict(zip(long, range(len(long)), strict=True))
        for i in range(len(pairs)):
            enc, j = (cut, replaced[i]) if i in replaced else (full, i)
            ids = np.asarray(enc["input_ids"][j], dtype=np.int64)
            seq = np.asarray([-1 if s is None else s for s in enc.sequence_ids(j)], dtype=np.int64)
            types = enc["token_type_ids"][j] if "token_type_ids" in enc else None
            type_ids = None if types is None else [np.asarray(types, dtype=np.int64)]
            units.append(Unit([ids], [seq], type_ids, 2, 1))
        return units

    def sentence_units(self, texts: Sequence[str], side: int) -> list[Unit]:
        """One text per unit, mean-pooled into row `side` of its pair (for parallel data)."""
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        units = []
        for i in range(len(texts)):
            ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
            seq = np.asarray(
                [-1 if s is None else side for s in enc.sequence_ids(i)], dtype=np.int64
            )
            if len(ids) > self.max_length:
                keep = self.max_length - len(self.suffix)
                ids = np.concatenate([ids[:keep], self.suffix])
                seq = np.concatenate([seq[:keep], -np.ones(len(self.suffix), dtype=np.int64)])
                self.truncated += 1
            units.append(Unit([ids], [seq], None, 2, 1 - side))
        return units

    # compute --------------------------------------------------------------------------------

    def batches(
        self, units: Sequence[Unit], batch_tokens: int, max_spread: float = 0.1
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

    def split(self, unit: Unit, batch_tokens: int) -> list[Unit]:
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
            progress = (
                unit.progress - done if i == len(cuts) - 2 else len(np.unique(owned[owned >= 0]))
            )
            done += progress
            types = None if unit.type_ids is None else unit.type_ids[lo:hi]
            pieces.append(Unit(unit.windows[lo:hi], targets, types, unit.n_targets, progress))
        return pieces

    def prepared(
        self,
        units: Sequence[Unit],
        row_base: Sequence[int],
        pooling: str,
        batch_tokens: int,
    ) -> Iterator[PreparedBatch]:
        """Every batch of `units` ready for `run`: `batches`, with a unit over the budget
        (always a batch of its own there) run as the pieces of `split`, one batch each.

        The other batches are exactly those `batches` forms, so short sentences meet the
        same neighbours and padding as without the split.
        """
        for batch in self.batches(units, batch_tokens):
            if len(batch) == 1:
                (index,) = batch
                for piece in self.split(units[index], batch_tokens):
                    yield self.prepare([piece], [row_base[index]], pooling)
            else:
                yield self.prepare([units[i] for i in batch], [row_base[i] for i in batch],
                                   pooling)  # fmt: skip

    def prepare(
        self, units: Sequence[Unit], row_base: Sequence[int], pooling: str
    ) -> PreparedBatch:
        """One batch's padded inputs and the token positions each output row is read from.

        numpy only, so it runs on the prefetch thread while the encoder computes.
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
        input_ids = np.full(n_win * width, self.pad_id, dtype=np.int32)
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
        else:
            pick_from = rows if pooling == "first" else rows[::-1]
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

    @torch.inference_mode()
    def run(self, batch: PreparedBatch, out: np.ndarray) -> None:
        """Run one prepared batch and write its pooled rows into `out` (layers, rows, hidden)."""
        states = self._forward(batch.input_ids, batch.mask, batch.types)
        dev = self.device
        store_dtype = torch.from_numpy(out[:0]).dtype
        # Only the kept positions of each layer are copied (stacking every hidden state first
        # would copy all tokens of all layers, padding included, once more).
        index = torch.from_numpy(batch.positions).to(dev)
        mean = batch.inverse is not None
        if mean:
            inverse_t = torch.from_numpy(batch.inverse).to(dev)
            counts_t = torch.from_numpy(batch.counts).to(dev, torch.float32)[:, None]

        def pooled(state: torch.Tensor) -> torch.Tensor:
            """One layer's word rows (words, hidden), in the storage dtype, on the device."""
            picked = state.flatten(0, 1).index_select(0, index)
            if mean:
                summed = torch.zeros((len(batch.rows), picked.shape[1]), device=dev)
                picked = summed.index_add_(0, inverse_t, picked.float()).div_(counts_t)
            return picked.to(store_dtype)

        # numpy's row scatter is ~5x faster than torch's index_copy_ for these sizes
        if dev.type == "cpu":  # straight into the block, one layer at a time
            with cpu_threads(1):  # small ops: waking a second thread costs more than it saves
                for layer, state in enumerate(states):
                    out[layer, batch.rows] = pooled(state).numpy()
        else:  # one transfer of every layer's rows
            out[:, batch.rows] = torch.stack([pooled(s) for s in states]).cpu().numpy()

    def pool(
        self, units: Sequence[Unit], row_base: Sequence[int], pooling: str, out: np.ndarray
    ) -> tuple[int, int]:
        """Prepare and run one batch; (tokens computed, of which padding)."""
        batch = self.prepare(units, row_base, pooling)
        self.run(batch, out)
        return batch.tokens, batch.pad_tokens

    def _forward(
        self, input_ids: np.ndarray, mask: np.ndarray, types: np.ndarray
    ) -> tuple[torch.Tensor, ...]:
        """Every hidden state of one batch, each (windows, width, hidden), embeddings first."""
        dev = self.device
        pin = dev.type == "cuda"
        kwargs: dict[str, Any] = {
            "input_ids": _to(input_ids, dev, pin),
            "attention_mask": _to(mask, dev, pin),
            "output_hidden_states": True,
            "return_dict": True,
        }
        if "token_type_ids" in self.tokenizer.model_input_names:
            kwargs["token_type_ids"] = _to(types, dev, pin)
        fault_point("forward")
        with autocast(dev, self.compute_dtype):
            outputs = self.model(**kwargs)
        states = outputs.hidden_states
        if len(states) != self.n_layers:
            raise ProbeError(
                f"model returned {len(states)} hidden states, expected {self.n_layers}"
            )
        return tuple(states)


def _window_owners(starts: np.ndarray, window: int, n: int) -> np.ndarray:
    """For each of n positions, the window (by its start) where it has the most context.

    Context is the distance to the nearer edge of the window; ties go to the earlier
    window. Only the windows covering a position are scored (starts increase, so they are
    a run from the first one ending after it to the last one starting at or before it).
    """
    if len(starts) == 1:
        return np.zeros(n, dtype=np.int64)
    pos = np.arange(n, dtype=np.int64)
    first = np.searchsorted(starts + window, pos, side="right")
    last = np.searchsorted(starts, pos, side="right") - 1
    candidates = first[None, :] + np.arange(int((last - first).max()) + 1)[:, None]
    begin = starts[np.minimum(candidates, len(starts) - 1)]
    context = np.minimum(pos - begin, begin + window - 1 - pos)
    best = np.where(candidates <= last, context, -1).argmax(axis=0)
    return np.take_along_axis(candidates, best[None, :], axis=0)[0]


def _to(array: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    """A compact integer array as an int64 tensor on `device` (widened after the copy)."""
    tensor = torch.from_numpy(array)
    if pin:
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device, torch.int64)


def _position_limit(model: PreTrainedModel) -> int:
    config = model.config
    limit = int(getattr(config, "max_position_embeddings", 512))
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= 2  # positions start after the padding index
    return limit


# --- devices and precision ------------------------------------------------------------------


def rank_device(device: str, rank: Rank) -> torch.device:
    """The device of one rank: cuda:LOCAL_RANK under a multi-process launch, else as asked."""
    if not rank.distributed:
        return pick_device(device)
    if device not in ("auto", "cuda", "cpu"):
        raise ProbeError(
            f"--device {device} names one device, but under torchrun every rank picks its own "
            "(cuda:LOCAL_RANK): pass --device auto, cuda or cpu"
        )
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise ProbeError("--device cuda was asked for, but torch sees no CUDA device")
    if rank.local_rank >= count:
        raise ProbeError(
            f"LOCAL_RANK {rank.local_rank} has no GPU: this node shows {count}; start at most "
            f"{count} processes per node (torchrun --nproc_per_node {count})"
        )
    chosen = torch.device("cuda", rank.local_rank)
    torch.cuda.set_device(chosen)
    return chosen


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(device)


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitJob:
    """One split of one language: its records and their identity."""

    task: Task
    lang: str
    split: str
    records: list[Any]
    source_hash: str
    files: tuple[Path, ...]

    @property
    def rows_per_record(self) -> list[int]:
        if self.task.level == "word":
            return [len(r.words) for r in self.records]
        return [1] * len(self.records)


def plan_jobs(config: ExtractConfig) -> list[SplitJob]:
    """Read every requested split (fast) so bad data fails before the encoder loads."""
    task = get_task(config.task)
    data_dir = default_data_dir(config.data_dir)
    if data_dir is None:
        raise ProbeError(
            "no data directory: pass --data-dir or set PROBE_DATA "
            "(reading from the HF hub is available through probe.data.sources.hub when online)"
        )
    langs = expand_languages(task, config.langs, data_dir)
    if config.source:
        task.check_language(config.source)
    jobs = []
    for lang in langs:
        for split in config.splits or task.splits_for(lang, config.source):
            files = local_files(task, data_dir, lang, split)
            records = read_split(task, data_dir, lang, split)
            if config.max_sentences:
                records = records[: config.max_sentences]
            source_hash = store.file_sha256(files)
            if config.max_sentences:
                source_hash += f":first{config.max_sentences}"
            jobs.append(SplitJob(task, lang, split, records, source_hash, files))
    return jobs


def shard_ranges(rows_per_record: Sequence[int], shard_rows: int) -> list[tuple[int, int]]:
    """Consecutive record ranges holding at most `shard_rows` rows each (at least one record)."""
    ranges, start, rows = [], 0, 0
    for i, n in enumerate(rows_per_record):
        if rows and rows + n > shard_rows:
            ranges.append((start, i))
            start, rows = i, 0
        rows += n
    ranges.append((start, len(rows_per_record)))
    return ranges


@dataclass(frozen=True)
class ShardItem:
    """One shard of the plan: a record range of one split, and where it goes."""

    index: int  # position in the plan, the same on every rank
    job: SplitJob
    n_shards: int
    records: tuple[int, int]
    path: Path
    rows: int


def plan_shards(jobs: Sequence[SplitJob], config: ExtractConfig, key: str) -> list[ShardItem]:
    """Every shard the jobs need, in a fixed order: a function of the data and `shard_rows`
    only (never of the world size), so any number of ranks finds the same shards."""
    items: list[ShardItem] = []
    for job in jobs:
        ranges = shard_ranges(job.rows_per_record, config.shard_rows)
        for index, (lo, hi) in enumerate(ranges):
            path = store.shard_path(config.cache_root, key, job.task.name, job.lang, job.split,
                                    index if len(ranges) > 1 else None)  # fmt: skip
            rows = sum(job.rows_per_record[lo:hi])
            items.append(ShardItem(len(items), job, len(ranges), (lo, hi), path, rows))
    return items


def extract(config: ExtractConfig, progress: bool = True) -> ExtractReport:
    """Extract every requested split not already cached; return what was done and how fast.

    Under `torchrun` or `accelerate launch` (WORLD_SIZE > 1) the ranks share the missing
    shards, balanced by rows (`probe.runtime.ranks.assign`), and each writes its own with the usual
    lock and atomic rename; every rank returns the merged report and rank 0 writes the
    manifest once all are done. A plain run is rank 0 of 1 and talks to nobody.
    """
    rank = current_rank()
    with process_group(rank):
        return _extract(config, progress, rank)


def _extract(config: ExtractConfig, progress: bool, rank: Rank) -> ExtractReport:
    jobs = plan_jobs(config)
    root = config.cache_root
    ref = resolve_model(config.model, root)
    device = rank_device(config.device, rank)
    compute = pick_compute_dtype(config.compute_dtype, device)
    spec = _spec(config, ref, compute)
    key = spec.key()
    report = ExtractReport(key, root / key, str(device), str(compute).removeprefix("torch."),
                           world_size=rank.world_size, rank=rank.rank)  # fmt: skip
    items = plan_shards(jobs, config, key)

    def missing() -> tuple[str, list[int]]:
        return key, [i.index for i in items if not _reusable(i.path, i.job.source_hash,
                                                             config.overwrite)]  # fmt: skip

    main_key, todo = from_main(rank, missing)
    if main_key != key:
        raise ProbeError(
            f"{rank} would write cache key {key} but rank 0 writes {main_key} (different "
            "model files or compute dtype on this node); pass the same --model and --compute"
        )
    pending = set(todo)
    shards = {i.index: ShardReport(i.path, i.rows, 0.0, skipped=True,
                                   source_hash=i.job.source_hash)
              for i in items if i.index not in pending}  # fmt: skip
    if not todo:
        log.info("everything is cached under %s", root / key)
    else:
        owners = assign([items[i].rows for i in todo], rank.world_size)
        mine = [items[i] for i, owner in zip(todo, owners, strict=True) if owner == rank.rank]
        start = time.perf_counter()
        if rank.is_main:
            store.write_spec(root, spec, {"model": config.model, "model_path": str(ref.path)})
        done: dict[int, ShardReport] = {}
        if mine:
            with small_kernel_caches():
                done = _extract_items(mine, ref, device, compute, spec, config, rank, progress)
        for part in gather_all(rank, done):
            shards.update(part)
        report.wall_seconds = time.perf_counter() - start
    report.shards = [shards[i.index] for i in items]
    if rank.is_main:
        store.update_manifest(root, key, {
            i.path.relative_to(root / key).as_posix(): {
                "rows": i.rows, "records": list(i.records), "n_shards": i.n_shards,
                "source_hash": i.job.source_hash,
            } for i in items
        })  # fmt: skip
        if report.extracted:
            log.info(
                "extracted %d rows in %.1f s (%.0f rows/s), padding waste %.1f%%, into %s",
                report.rows, report.seconds, report.rows / max(report.seconds, 1e-9),
                100 * report.padding_waste, report.cache_dir,
            )  # fmt: skip
    return report


def _extract_items(
    items: Sequence[ShardItem],
    ref: ModelRef,
    device: torch.device,
    compute: torch.dtype,
    spec: store.ExtractionSpec,
    config: ExtractConfig,
    rank: Rank,
    progress: bool,
) -> dict[int, ShardReport]:
    """This rank's shards (at least one), each rechecked under its lock (another process
    may have built it)."""
    model, tokenizer = load_encoder(ref, str(device))
    encoder = Encoder(model, tokenizer, device, compute, config.max_length, config.window_stride)
    batch_tokens = config.batch_tokens or (32768 if device.type == "cuda" else 4096)
    from tqdm.auto import tqdm

    unit = "word" if items[0].job.task.level == "word" else "pair"
    where = f" ({rank})" if rank.distributed else ""
    done: dict[int, ShardReport] = {}
    # Tokenising and batching run one block ahead on a thread of their own.
    blocks = prefetch(_prepared_blocks(encoder, items, config, batch_tokens), "tokenize")
    buffers = BlockBuffers(encoder.n_layers, encoder.hidden, config.dtype)
    with (
        tqdm(total=sum(i.rows for i in items), unit=unit, unit_scale=True, smoothing=0.1,
             disable=not (progress and rank.is_main)) as bar,
        ShardWrites() as writes,
        closing(blocks),
    ):  # fmt: skip
        for item in items:
            job, path = item.job, item.path
            lock = ExitStack()
            lock.enter_context(store.shard_lock(path))
            try:
                if _reusable(path, job.source_hash, config.overwrite):  # built meanwhile
                    lock.close()
                    _skip_blocks(blocks, item)
                    shard = ShardReport(path, item.rows, 0.0, skipped=True)
                    bar.update(item.rows)
                else:
                    store.remove_stale_temporaries(path)  # of killed writers; we hold the lock
                    bar.set_description(f"{job.task.name}/{job.lang}/{job.split}{where}")
                    shard = _extract_shard(encoder, item, blocks, spec, config, ref, bar,
                                           writes, lock, buffers)  # fmt: skip
            except BaseException:
                lock.close()  # a no-op once the shard's writes took it over
                raise
            shard.source_hash, shard.rank = job.source_hash, rank.rank
            done[item.index] = shard
        began = time.perf_counter()
        writes.drain()
        if done:  # the last writes and commits belong to the run's time
            last = max((s for s in done.values() if not s.skipped), default=None,
                       key=lambda s: s.seconds)  # fmt: skip
            if last is not None:
                last.seconds += time.perf_counter() - began
    return done


class BlockBuffers:
    """Two feature buffers used in turn: one is filled while the other is being written.

    `ShardWrites.block` waits for the previous block's write before queueing the next, so
    by the time a buffer comes round again its write is done. Reusing them keeps the pages
    mapped: a fresh array per block made the encoder's thread take a page fault on every
    4 KiB of features it wrote (~0.4 s of 8 s for MiniLM on the UD test splits).
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
            self._buffers[self._turn] = np.empty(size, self.dtype)
        return self._buffers[self._turn][:size].reshape(self.n_layers, rows, self.hidden)


def _prepared_blocks(
    encoder: Encoder, items: Sequence[ShardItem], config: ExtractConfig, batch_tokens: int
) -> Iterator[PreparedBlock]:
    """Every block of every shard, tokenised and batched, in the order they are extracted.

    Blocks hold about `config.block_bytes` of features; the encoder's counters of empty
    words and truncations are read per block here, on the one thread that tokenises.
    """
    pooling_of = {True: config.pooling, False: "mean"}
    for item in items:
        job = item.job
        lo, hi = item.records
        records = job.records[lo:hi]
        per_record = job.rows_per_record[lo:hi]
        word_level = job.task.level == "word"
        bytes_per_row = encoder.n_layers * encoder.hidden * np.dtype(config.dtype).itemsize
        block_rows = max(1024, config.block_bytes // bytes_per_row // (1 if word_level else 2))
        ranges = shard_ranges(per_record, block_rows)
        row = 0
        for number, (b_lo, b_hi) in enumerate(ranges):
            empty, truncated = encoder.empty_words, encoder.truncated
            units, bases, out_rows = _block_units(
                encoder, job.task.level, records[b_lo:b_hi], per_record[b_lo:b_hi]
            )
            batches = list(encoder.prepared(units, bases, pooling_of[word_level], batch_tokens))
            n_rows = sum(per_record[b_lo:b_hi])
            yield PreparedBlock(
                item.index, row, n_rows, out_rows, batches, encoder.empty_words - empty,
                encoder.truncated - truncated, last=number == len(ranges) - 1,
            )  # fmt: skip
            row += n_rows


def _skip_blocks(blocks: Iterator[PreparedBlock], item: ShardItem) -> None:
    """Drop a shard's prepared blocks (another process built it while we waited)."""
    for block in blocks:
        if block.item != item.index:
            raise RuntimeError(f"prepared block of shard {block.item} while at {item.index}")
        if block.last:
            return


def _spec(config: ExtractConfig, ref: ModelRef, compute: torch.dtype) -> store.ExtractionSpec:
    return store.ExtractionSpec(
        model_identity=ref.identity,
        pooling=config.pooling,
        max_length=config.max_length,
        window_stride=config.window_stride or 0,
        dtype=config.dtype,
        compute_dtype=str(compute).removeprefix("torch."),
        slug=ref.slug,
    )


def _reusable(path: Path, source_hash: str, overwrite: str) -> bool:
    """A complete shard of exactly this source data is reused unless told otherwise."""
    if overwrite == "always":
        return False
    current = store.shard_is_current(path, source_hash)
    if overwrite == "never" and path.exists() and not current:
        raise ProbeError(f"{path} is stale or incomplete and --overwrite never forbids rebuilding")
    return current


def _extract_shard(
    encoder: Encoder,
    item: ShardItem,
    blocks: Iterator[PreparedBlock],
    spec: store.ExtractionSpec,
    config: ExtractConfig,
    ref: ModelRef,
    bar: Any,
    writes: ShardWrites,
    lock: ExitStack,
    buffers: BlockBuffers,
) -> ShardReport:
    """Run the encoder over one shard's prepared blocks; writes and the commit (and with
    them the lock) go to `writes`.

    The report's seconds are this thread's time on the shard: the encoder, pooling, and
    waiting for the next prepared block or for an earlier block's write.
    """
    job, path = item.job, item.path
    lo, hi = item.records
    task = job.task
    word_level = task.level == "word"
    arrays, strings = _shard_metadata(task, job.records[lo:hi])
    attrs = store.base_attrs(
        level=task.level, task=task.name, lang=job.lang, split=job.split,
        model=config.model, model_identity=ref.identity, cache_key=spec.key(),
        n_layers=encoder.n_layers, hidden=encoder.hidden, pooling=config.pooling if word_level
        else "mean", dtype=config.dtype, compute_dtype=spec.compute_dtype,
        max_length=encoder.max_length, window_stride=encoder.stride,
        source_hash=job.source_hash, source_files=[str(f) for f in job.files],
        label_names=list(task.labels), shard_index=0 if item.n_shards == 1 else lo,
        record_range=[lo, hi], n_shards=item.n_shards,
    )  # fmt: skip
    start = time.perf_counter()
    writer = store.ShardWriter(
        path,
        feature_names=store.WORD_FEATURES if word_level else store.SENTENCE_FEATURES,
        n_layers=encoder.n_layers,
        n_rows=item.rows,
        hidden=encoder.hidden,
        dtype=config.dtype,
        attrs=attrs,
        arrays=arrays,
        strings=strings,
    )
    writes.open(writer, lock.pop_all())  # the lock now belongs to the shard's commit
    tokens = pad = empty = truncated = 0
    for block in blocks:
        if block.item != item.index:
            raise RuntimeError(f"prepared block of shard {block.item} while at {item.index}")
        out = buffers.take(block.out_rows)
        for batch in block.batches:
            encoder.run(batch, out)
            tokens += batch.tokens
            pad += batch.pad_tokens
            bar.update(batch.progress)
        features = (
            {"features": out}
            if word_level
            else {"sentence_features": out[:, 0::2], "sentence_features_b": out[:, 1::2]}
        )
        writes.block(writer, block.row, features)
        trim_heap()
        empty += block.empty_words
        truncated += block.truncated
        if block.last:
            break
    writes.commit(writer, {"empty_words": empty, "truncated": truncated})
    seconds = time.perf_counter() - start
    return ShardReport(path, item.rows, seconds, skipped=False, tokens=tokens, pad_tokens=pad)


def _block_units(
    encoder: Encoder, level: str, block: Sequence[Any], per_record: Sequence[int]
) -> tuple[list[Unit], list[int], int]:
    """Units of one block and the first output row of each (pairs use rows 2i and 2i+1)."""
    if level == "word":
        units = encoder.word_units(block)
        bases = np.concatenate([[0], np.cumsum(per_record)[:-1]]).astype(int).tolist()
        return units, bases, int(sum(per_record))
    n = len(block)
    if level == "pair":
        return encoder.pair_units(block), [2 * i for i in range(n)], 2 * n
    src = encoder.sentence_units([p.text_a for p in block], side=0)
    eng = encoder.sentence_units([p.text_b for p in block], side=1)
    return src + eng, [2 * i for i in range(n)] * 2, 2 * n


def _shard_metadata(
    task: Task, records: Sequence[Any]
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Labels, offsets and the strings that trace a row back to its source."""
    label_index = {name: i for i, name in enumerate(task.labels)}
    if task.level == "word":
        lengths = np.asarray([len(r.words) for r in records], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        labels = np.asarray([label_index[t] for r in records for t in r.tags], dtype=np.int16)
        words = [w for r in records for w in r.words]
        return (
            {"offsets": offsets, "labels": labels},
            {"words": words, "sentence_ids": [r.sent_id for r in records]},
        )
    labels = np.asarray(
        [label_index[r.label] if r.label is not None else -1 for r in records], dtype=np.int16
    )
    return (
        {"labels": labels},
        {
            "sentence_ids": [r.pair_id for r in records],
            "text_a": [r.text_a for r in records],
            "text_b": [r.text_b for r in records],
        },
    )

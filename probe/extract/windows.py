"""Records as encoder input: token windows and the output row each token is pooled into.

A word sentence longer than the model's window becomes overlapping windows, each subword
owned (pooled from) by the window where it has the most context; a pair is encoded jointly
(truncated where it must be, and counted); a parallel sentence is one text per unit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.data.alignment import (
    bare_marker_ids,
    pad_id,
    special_token_layout,
    type_keys,
    unk_id,
)
from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.type_alignment import TypeAligner
from probe.errors import ProbeError

log = logging.getLogger(__name__)


@dataclass
class Unit:
    """One record as encoder input: one or more windows, each a row of token ids.

    `targets[w][t]` is the unit-local output row that token t of window w is pooled into, or
    -1 (special tokens, and window overlaps assigned to another window). A sentence of a word
    task also carries each word's type key (`WordPieces.type_keys`).
    """

    windows: list[np.ndarray]
    targets: list[np.ndarray]
    type_ids: list[np.ndarray] | None
    n_targets: int
    progress: int  # records (words for word tasks) this unit completes, for the progress bar
    word_types: np.ndarray | None = None
    # A pair's token view: each token's segment (0 text a, 1 text b, -1 a special token).
    segments: np.ndarray | None = None

    @property
    def width(self) -> int:
        return max(len(w) for w in self.windows)


class UnitBuilder:
    """Tokenises records into units for one tokenizer, window length and stride.

    `empty_words`, `bare_first` and `truncated` count, over the builder's life, words that
    got an UNK, words whose first piece is the bare boundary marker (`markers`), and records
    cut to fit; the extraction reads their change per block into the shard's attrs.
    """

    def __init__(self, tokenizer: Any, max_length: int, window_stride: int | None) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.prefix, self.suffix = special_token_layout(tokenizer)
        self.window = max_length - len(self.prefix) - len(self.suffix)
        self.stride = window_stride or max(1, self.window // 2)
        if not 0 < self.stride <= self.window:
            raise ProbeError(f"window stride must be in 1..{self.window}, not {self.stride}")
        self.aligner = TypeAligner(tokenizer)  # align_words, each word type tokenised once
        self.pad_id = pad_id(tokenizer)
        self.unk_id = unk_id(tokenizer)
        self.markers = bare_marker_ids(tokenizer)
        self.empty_words = 0
        self.bare_first = 0
        self.truncated = 0

    def block(
        self,
        level: str,
        records: Sequence[Any],
        per_record: Sequence[int],
        sentence_pooling: str = "mean",
        token_length: int | None = None,
    ) -> tuple[list[Unit], list[int], int]:
        """Units of one block, the first output row of each, and the block's output rows
        (pairs and parallel sentences fill rows 2i and 2i+1; a pair's token view one row per
        token). `sentence_pooling` is the task's (parallel tasks: "mean-with-specials" also
        averages the special tokens); `token_length` a token view's cut (`Task.token_length`)."""
        if level == "word":
            units = self.words(records)
            bases = np.concatenate([[0], np.cumsum(per_record)[:-1]]).astype(int).tolist()
            return units, bases, int(sum(per_record))
        n = len(records)
        if level == "pair":
            return self.pairs(records), [2 * i for i in range(n)], 2 * n
        if level == "pair-tokens":
            units = self.pair_tokens(records, token_length)
            lengths = [u.n_targets for u in units]
            bases = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist()
            return units, bases, int(sum(lengths))
        specials = sentence_pooling == "mean-with-specials"
        src = self.sentences([p.text_a for p in records], side=0, specials=specials)
        eng = self.sentences([p.text_b for p in records], side=1, specials=specials)
        return src + eng, [2 * i for i in range(n)] * 2, 2 * n

    def words(self, sentences: Sequence[TaggedSentence]) -> list[Unit]:
        """Subword ids per word (probe.data.alignment); one window where they fit."""
        units = []
        no_target = -np.ones(len(self.prefix), dtype=np.int64)
        tail = -np.ones(len(self.suffix), dtype=np.int64)
        aligned = self.aligner([s.words for s in sentences])
        keys = type_keys(aligned)
        for pieces, word_types in zip(aligned, keys, strict=True):
            self.empty_words += pieces.empty
            ids, word_ids, n_words = pieces.ids, pieces.word_of, pieces.n_words
            if len(ids) <= self.window:  # the common case: one window, every subword its own
                window = np.concatenate([self.prefix, ids, self.suffix])
                targets = np.concatenate([no_target, word_ids, tail])
                unit = Unit([window], [targets], None, n_words, n_words)
            else:
                unit = self.windowed(ids, word_ids, n_words)
            unit.word_types = word_types
            units.append(unit)
        if self.markers.size and aligned:  # one vectorised count per block
            firsts = np.concatenate([p.ids[p.starts()] for p in aligned])
            self.bare_first += int(np.isin(firsts, self.markers).sum())
        return units

    def windowed(self, ids: np.ndarray, targets: np.ndarray, n_targets: int) -> Unit:
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
        owner = window_owners(np.asarray(starts, dtype=np.int64), self.window, n)
        no_target = -np.ones(len(self.prefix), dtype=np.int64)
        tail = -np.ones(len(self.suffix), dtype=np.int64)
        for w, start in enumerate(starts):
            stop = min(start + self.window, n)
            windows.append(np.concatenate([self.prefix, ids[start:stop], self.suffix]))
            mine = np.where(owner[start:stop] == w, targets[start:stop], -1)
            window_targets.append(np.concatenate([no_target, mine, tail]))
        return Unit(windows, window_targets, None, n_targets, n_targets)

    def pairs(self, pairs: Sequence[TextPair]) -> list[Unit]:
        """Joint encoding of both texts; each side is mean-pooled into its own row."""
        encoded, cut = self.encode_pairs(pairs)
        self._count_cut(cut, self.max_length)
        return [Unit([ids], [seq], types, 2, 1) for ids, seq, types in encoded]

    def pair_tokens(self, pairs: Sequence[TextPair], token_length: int | None) -> list[Unit]:
        """Joint encoding of both texts cut to `token_length` tokens; every token (the special
        ones too) is a row of its own, with its segment (`Unit.segments`)."""
        encoded, cut = self.encode_pairs(pairs, token_length)
        self._count_cut(cut, self.token_limit(token_length))
        units = []
        for ids, seq, types in encoded:
            n = len(ids)
            units.append(Unit([ids], [np.arange(n, dtype=np.int64)], types, n, 1, segments=seq))
        return units

    def token_limit(self, token_length: int | None) -> int:
        """The tokens a pair keeps: the window, or a token view's shorter `token_length`."""
        return min(self.max_length, token_length or self.max_length)

    def pair_lengths(self, pairs: Sequence[TextPair], token_length: int | None) -> np.ndarray:
        """Tokens per pair of `pair_tokens` (the rows a token view's shard holds); counts
        nothing, so it may run before the tokenising thread starts."""
        encoded, _ = self.encode_pairs(pairs, token_length)
        return np.asarray([len(ids) for ids, _, _ in encoded], dtype=np.int64)

    def _count_cut(self, cut: int, limit: int) -> None:
        if cut:
            self.truncated += cut
            log.warning("%d pairs longer than %d tokens were truncated", cut, limit)

    def encode_pairs(
        self, pairs: Sequence[TextPair], token_length: int | None = None
    ) -> tuple[list[tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]], int]:
        """(ids, segment of each token (-1: special), token type ids or None) per pair, and
        how many pairs were cut: the tokenizer's own pair template, cut longest-first where
        a pair is longer than the window (or `token_length`)."""
        limit = self.token_limit(token_length)
        a = [p.text_a for p in pairs]
        b = [p.text_b for p in pairs]
        full = self.tokenizer(a, b, add_special_tokens=True, truncation=False)
        long = [i for i, ids in enumerate(full["input_ids"]) if len(ids) > limit]
        if long:
            cut = self.tokenizer(
                [a[i] for i in long], [b[i] for i in long], truncation="longest_first",
                max_length=limit,
            )  # fmt: skip
        out = []
        replaced = dict(zip(long, range(len(long)), strict=True))
        for i in range(len(pairs)):
            enc, j = (cut, replaced[i]) if i in replaced else (full, i)
            ids = np.asarray(enc["input_ids"][j], dtype=np.int64)
            seq = np.asarray([-1 if s is None else s for s in enc.sequence_ids(j)], dtype=np.int64)
            types = enc["token_type_ids"][j] if "token_type_ids" in enc else None
            out.append((ids, seq, None if types is None else [np.asarray(types, dtype=np.int64)]))
        return out, len(long)

    def sentences(self, texts: Sequence[str], side: int, specials: bool = False) -> list[Unit]:
        """One text per unit, mean-pooled into row `side` of its pair (for parallel data):
        over its subwords, or with `specials` over every token of the window, [CLS] and
        [SEP] included (XTREME's retrieval pools over the attention mask)."""
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False)
        units = []
        special_target = side if specials else -1
        for i in range(len(texts)):
            ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
            seq = np.asarray(
                [special_target if s is None else side for s in enc.sequence_ids(i)],
                dtype=np.int64,
            )
            if len(ids) > self.max_length:  # XTREME's cut too: the first max_length - 2 pieces
                keep = self.max_length - len(self.suffix)
                ids = np.concatenate([ids[:keep], self.suffix])
                seq = np.concatenate([seq[:keep], np.full(len(self.suffix), special_target)])
                self.truncated += 1
            units.append(Unit([ids], [seq], None, 2, 1 - side))
        return units


def window_owners(starts: np.ndarray, window: int, n: int) -> np.ndarray:
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

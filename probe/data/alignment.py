"""Words to subwords: the one aligner behind extraction's word rows and fine-tuning's labels.

The tokenizer is duck-typed (a Hugging Face fast tokenizer in practice: called with
`is_split_into_words=True`, returning `input_ids` and `word_ids(i)`), so this module needs
neither torch nor transformers. Both users see the same pieces: every subword with the
index of its word, in order, and one UNK for a word the tokenizer drops (a zero-width
space, a lone combining mark), so that no word is ever without a vector or a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class WordPieces:
    """One sentence's subwords: `ids[i]` belongs to word `word_of[i]` (non-decreasing, every
    word 0..n_words-1 present); `empty` words had no piece and got one UNK each."""

    ids: np.ndarray
    word_of: np.ndarray
    n_words: int
    empty: int

    def starts(self) -> np.ndarray:
        """The position of every word's first piece (each word has at least one)."""
        return np.flatnonzero(np.r_[True, self.word_of[1:] != self.word_of[:-1]])

    def type_keys(self) -> np.ndarray:
        """Each word's type key (`type_keys`, for this sentence alone)."""
        return type_keys([self])[0]


def type_keys(sentences: Sequence[WordPieces]) -> list[np.ndarray]:
    """Each word's type as the model sees it, per sentence: a key of the tuple of its input
    ids, so words the tokenizer normalises alike ("The" and "the" under an uncased
    vocabulary) share a key and any other two words do not.

    The key is sum_k (id_k + 1) * B^k mod 2^64 over the word's pieces (B = 2^21 + 1),
    read as int64: for words of up to three pieces (with ids below 2^21) it is the
    tuple's base-B digits, equal iff the tuples are; longer words wrap, a 64-bit hash.
    Deterministic across processes and platforms (docs/cache-format.md); computed for all
    sentences at once, since per-sentence numpy calls cost more than the arithmetic.
    """
    if not sentences:
        return []
    ids = np.concatenate([p.ids for p in sentences]).astype(np.uint64)
    words = np.cumsum([0] + [p.n_words for p in sentences])
    word = np.concatenate([p.word_of + base for p, base in zip(sentences, words, strict=False)])
    starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
    lengths = np.diff(np.r_[starts, len(ids)])
    k = np.arange(len(ids)) - np.repeat(starts, lengths)
    powers = np.cumprod(np.r_[np.uint64(1), np.full(int(lengths.max()) - 1, _TYPE_BASE)])
    keys = np.add.reduceat((ids + np.uint64(1)) * powers[k], starts).view(np.int64)
    return np.split(keys, words[1:-1])


# The base of the word-type key: above any vocabulary's ids, odd so powers never vanish mod 2^64.
_TYPE_BASE = np.uint64((1 << 21) + 1)
# The word-boundary markers of SentencePiece ("▁") and byte-level BPE ("Ġ").
BOUNDARY_MARKERS = ("\u2581", "\u0120")


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def unk_id(tokenizer: Any) -> int:
    """The UNK id (the pad id, or 0, for a vocabulary without one)."""
    return tokenizer.unk_token_id if tokenizer.unk_token_id is not None else pad_id(tokenizer)


def bare_marker_ids(tokenizer: Any) -> np.ndarray:
    """The id of the tokenizer's bare word-boundary marker ("▁" alone for SentencePiece,
    "Ġ" alone for byte-level BPE), or none (WordPiece: no marker, or one that is only text).

    A marker counts only if this tokenizer prefixes words with it: the first piece of a
    word ("a") must start with it, so a WordPiece vocabulary that lists "▁" as an ordinary
    character never has its pieces skipped.
    """
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=False)
    first = tokenizer.convert_ids_to_tokens(enc["input_ids"][0][:1])
    marker = next((m for m in BOUNDARY_MARKERS if first and first[0].startswith(m)), None)
    if marker is None:
        return np.zeros(0, dtype=np.int64)
    found = tokenizer.convert_tokens_to_ids(marker)
    if found is None or tokenizer.convert_ids_to_tokens([found]) != [marker]:
        return np.zeros(0, dtype=np.int64)  # the marker is never a piece on its own
    return np.asarray([found], dtype=np.int64)


def special_token_layout(tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ids the tokenizer puts before and after a single sequence ([CLS]/[SEP], <s>/</s>),
    read off a real encoding so any model's template is honoured."""
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = enc["input_ids"][0], enc.word_ids(0)
    first = word_ids.index(0)
    last = len(word_ids) - 1 - word_ids[::-1].index(0)
    return np.asarray(ids[:first], dtype=np.int64), np.asarray(ids[last + 1 :], dtype=np.int64)


def align_words(tokenizer: Any, sentences: Sequence[Sequence[str]]) -> list[WordPieces]:
    """Every sentence's subwords (no special tokens) with their word index, in one batched
    tokenizer call; words without a piece are filled with one UNK at their position."""
    enc = tokenizer(
        [list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False
    )
    unk = unk_id(tokenizer)
    out = []
    for i, words in enumerate(sentences):
        ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
        word_ids = np.asarray(enc.word_ids(i), dtype=np.int64)
        n_words = len(words)
        empty = 0
        # Word ids run 0, 0, 1, 2, 2, ... so every word has a subword iff the ids start
        # at 0, never skip one, and end at the last word.
        if (
            len(word_ids) == 0
            or word_ids[0] != 0
            or word_ids[-1] != n_words - 1
            or (len(word_ids) > 1 and np.diff(word_ids).max() > 1)
        ):
            ids, word_ids, empty = _fill_empty_words(ids, word_ids, n_words, unk)
        out.append(WordPieces(ids, word_ids, n_words, empty))
    return out


def first_subword(pieces: WordPieces, room: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `room` subwords, and each word's first-subword position (plus `offset`, the
    special tokens before it), or -1 for a word that starts past the cut."""
    starts = np.searchsorted(pieces.word_of, np.arange(pieces.n_words), side="left")
    first = np.where(starts < room, offset + starts, -1).astype(np.int64)
    return pieces.ids[:room], first


def _fill_empty_words(
    ids: np.ndarray, word_ids: np.ndarray, n_words: int, unk: int
) -> tuple[np.ndarray, np.ndarray, int]:
    counts = np.bincount(word_ids, minlength=n_words)
    new_ids: list[int] = []
    new_words: list[int] = []
    empty = 0
    pos = 0
    for word in range(n_words):
        if counts[word] == 0:
            new_ids.append(unk)
            new_words.append(word)
            empty += 1
        while pos < len(word_ids) and word_ids[pos] == word:
            new_ids.append(int(ids[pos]))
            new_words.append(word)
            pos += 1
    return np.asarray(new_ids, dtype=np.int64), np.asarray(new_words, dtype=np.int64), empty

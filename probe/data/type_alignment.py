"""`align_words`, with every distinct word tokenised once.

Why: extraction tokenises every sentence of a split, and on a 2-core CPU that work competes
with the forward pass for the cores. Words repeat (English EWT train: 204,577 words of
19,674 types), and the tokenizer call was most of the tokenising thread's time (0.93 CPU s
of 1.0 for EWT train with MiniLM's tokenizer; the 19,674 types alone: 0.29 s).

Why it is exact: with `is_split_into_words=True` a Hugging Face tokenizer normalises,
pre-tokenises and splits each word on its own, so a word's pieces do not depend on its
neighbours (even SentencePiece's `Metaspace` with `prepend_scheme="first"` marks every
pre-split word, checked with tokenizers 0.23). Rather than trust that for every tokenizer,
every call also tokenises a spread of its sentences whole (`check` of them, first words
included) and compares: on any difference the aligner tokenises whole sentences from then
on, for that call too, and says so once in the log. Words the tokenizer drops get one UNK
each, as in `align_words`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from probe.data.alignment import WordPieces, align_words, unk_id

log = logging.getLogger(__name__)

LEARN_CHUNK = 128  # new words per tokenizer sequence (`TypeAligner._learn`)


class TypeAligner:
    """Sentences of words to `WordPieces`, the same as `align_words(tokenizer, ...)`.

    Word types are kept between calls (a dict of up to `max_types`, then started afresh),
    so later blocks of a split mostly reuse what earlier ones tokenised.
    """

    def __init__(self, tokenizer: Any, check: int = 64, max_types: int = 500_000) -> None:
        self.tokenizer = tokenizer
        self.check = check
        self.max_types = max_types
        self.by_type = True
        self._pieces: dict[str, np.ndarray] = {}
        self._dropped: set[str] = set()  # words the tokenizer gives no piece (one UNK here)
        self._unk = unk_id(tokenizer)

    def __call__(self, sentences: Sequence[Sequence[str]]) -> list[WordPieces]:
        if not self.by_type or not sentences:
            return align_words(self.tokenizer, sentences)
        aligned = self._assemble(sentences)
        picks = np.unique(np.linspace(0, len(sentences) - 1, min(self.check, len(sentences))))
        exact = align_words(self.tokenizer, [sentences[int(i)] for i in picks])
        if all(_same(aligned[int(i)], e) for i, e in zip(picks, exact, strict=True)):
            return aligned
        self.by_type = False
        log.info(
            "this tokenizer splits some words differently inside a sentence than alone; "
            "tokenising whole sentences (slower, the same pieces as always)"
        )
        return align_words(self.tokenizer, sentences)

    def _assemble(self, sentences: Sequence[Sequence[str]]) -> list[WordPieces]:
        """Each sentence's pieces from its words' cached pieces (new words tokenised now)."""
        words = [w for sentence in sentences for w in sentence]
        self._learn(words)
        table: dict[str, int] = {}
        type_of = np.fromiter(
            (table.setdefault(w, len(table)) for w in words), np.int64, len(words)
        )
        pieces = [self._pieces[w] for w in table]
        lengths = np.fromiter((len(p) for p in pieces), np.int64, len(pieces))
        dropped = np.fromiter((w in self._dropped for w in table), np.float64, len(table))
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        per_word = lengths[type_of]  # every word has at least one piece (UNK if dropped)
        offsets = np.repeat(np.cumsum(per_word) - per_word, per_word)
        ids = flat[np.repeat(starts[type_of], per_word) + np.arange(int(per_word.sum())) - offsets]
        n_words = np.fromiter((len(s) for s in sentences), np.int64, len(sentences))
        word_base = np.concatenate([[0], np.cumsum(n_words)[:-1]])
        sentence_of_word = np.repeat(np.arange(len(sentences)), n_words)
        local = np.arange(len(words)) - word_base[sentence_of_word]
        word_of = np.repeat(local, per_word)
        empty = np.bincount(sentence_of_word, weights=dropped[type_of], minlength=len(sentences))
        cuts = np.cumsum(np.bincount(sentence_of_word, weights=per_word, minlength=len(sentences)))
        cuts = cuts.astype(np.int64)[:-1]
        return [
            WordPieces(i, w, int(n), int(e))
            for i, w, n, e in zip(
                np.split(ids, cuts), np.split(word_of, cuts), n_words, empty, strict=True
            )
        ]

    def _learn(self, words: Sequence[str]) -> None:
        """Tokenise the words not seen yet (a dropped word: one UNK).

        They go in as long pre-split sequences of `LEARN_CHUNK` words (one sequence per word
        cost the tokenizer about as much per word as whole sentences do), each behind a copy
        of its first word, so no word is learnt at a sequence's start: a tokenizer that
        treats the first word apart then differs at every sentence's first word, which the
        check in `__call__` sees in any sentence it samples.
        """
        if len(self._pieces) > self.max_types:
            self._pieces.clear()
            self._dropped.clear()
        new = list(dict.fromkeys(w for w in words if w not in self._pieces))
        if not new:
            return
        chunks = [new[i : i + LEARN_CHUNK] for i in range(0, len(new), LEARN_CHUNK)]
        enc = self.tokenizer(
            [chunk[:1] + chunk for chunk in chunks], is_split_into_words=True,
            add_special_tokens=False,
        )  # fmt: skip
        for c, chunk in enumerate(chunks):
            ids = np.asarray(enc["input_ids"][c], dtype=np.int64)
            word_ids = np.asarray(enc.word_ids(c), dtype=np.int64)
            counts = np.bincount(word_ids, minlength=len(chunk) + 1)
            split = np.split(ids, np.cumsum(counts)[:-1])[1:]  # the leading copy dropped
            for word, pieces in zip(chunk, split, strict=True):
                if not len(pieces):
                    self._dropped.add(word)
                    pieces = np.asarray([self._unk], dtype=np.int64)
                self._pieces[word] = pieces


def _same(a: WordPieces, b: WordPieces) -> bool:
    return (
        a.n_words == b.n_words
        and a.empty == b.empty
        and np.array_equal(a.ids, b.ids)
        and np.array_equal(a.word_of, b.word_of)
    )

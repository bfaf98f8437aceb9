"""Sentence fingerprints of a split and the overlap between two splits (the leakage guard's core).

A sentence's fingerprint is a hash of its normalised text: Unicode NFKC, casefolded, every
whitespace character removed, so a tokenised copy (`do n't .`), a raw copy (`don't.`) and a
re-cased copy of one sentence are the same sentence. A pair item (XNLI, PAWS-X) has two
texts and is a copy when either of them is a training text: a shared premise is seen text.

Translations are found by parallel-set ids: a sentence id of a known parallel corpus names the
same sentence in every language (PUD's `n01001011` is sentence 11 of document n01001 in all
PUD treebanks). Only ids of such a scheme count: treebanks number their own sentences
(`dev-s1` is the first dev sentence of de_gsd and of ja_gsd alike), so equal ids in general
mean nothing.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from probe.data.sources.records import TaggedSentence, TextPair

# Parallel corpora whose sentence ids are shared by every language's copy of a sentence.
PARALLEL_ID_SCHEMES: dict[str, re.Pattern[str]] = {
    # UD PUD: n (news) or w (wikipedia), document number, sentence number: n01001011.
    "pud": re.compile(r"[nw]\d{8}"),
}
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The form two copies of a sentence share: NFKC, casefolded, without any whitespace."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", text).casefold())


def fingerprint(text: str) -> int:
    """A 64-bit hash of the normalised text (chance of any collision between 1e5 training
    and 1e5 evaluation texts: ~5e-10)."""
    return _hash(normalise(text))


def _hash(normalised: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalised.encode("utf-8"), digest_size=8).digest())


def parallel_id(sentence_id: str) -> str | None:
    """`scheme:id` when the id belongs to a known parallel corpus, else None."""
    for scheme, pattern in PARALLEL_ID_SCHEMES.items():
        if pattern.fullmatch(sentence_id):
            return f"{scheme}:{sentence_id}"
    return None


@dataclass(frozen=True)
class SentenceSet:
    """One split's items as the guard compares them: per item the fingerprint and normalised
    length (characters without whitespace) of each of its texts (one for a sentence, two for
    a pair), and its parallel-set id where it has one."""

    fingerprints: tuple[tuple[int, ...], ...]
    lengths: tuple[tuple[int, ...], ...]
    parallel_ids: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.fingerprints)

    @classmethod
    def from_texts(cls, texts: Iterable[Sequence[str]], ids: Iterable[str]) -> SentenceSet:
        """Items given as their texts (one or two each) and sentence ids."""
        items = [tuple(normalise(t) for t in item) for item in texts]
        ids = list(ids)
        if len(ids) != len(items):
            raise ValueError(f"{len(items)} items but {len(ids)} sentence ids")
        return cls(
            tuple(tuple(map(_hash, item)) for item in items),
            tuple(tuple(map(len, item)) for item in items),
            tuple(parallel_id(i) for i in ids),
        )

    @classmethod
    def from_words(
        cls, words: Sequence[str], offsets: Sequence[int], ids: Sequence[str]
    ) -> SentenceSet:
        """A word split as the cache stores it: all words, sentence i = offsets[i]:[i+1]."""
        texts = ((" ".join(words[offsets[i] : offsets[i + 1]]),) for i in range(len(offsets) - 1))
        return cls.from_texts(texts, ids)

    @classmethod
    def from_pairs(
        cls, text_a: Sequence[str], text_b: Sequence[str], ids: Sequence[str]
    ) -> SentenceSet:
        if len(text_a) != len(text_b):
            raise ValueError(f"{len(text_a)} first texts but {len(text_b)} second texts")
        return cls.from_texts(zip(text_a, text_b, strict=True), ids)

    @classmethod
    def from_records(cls, records: Sequence[TaggedSentence] | Sequence[TextPair]) -> SentenceSet:
        """A split read from its files (`probe.data.tasks.read_split`)."""
        texts: list[tuple[str, ...]] = []
        ids: list[str] = []
        for record in records:
            if isinstance(record, TaggedSentence):
                texts.append((" ".join(record.words),))
                ids.append(record.sent_id)
            else:
                texts.append((record.text_a, record.text_b))
                ids.append(record.pair_id)
        return cls.from_texts(texts, ids)

    @staticmethod
    def union(sets: Iterable[SentenceSet]) -> SentenceSet:
        sets = list(sets)
        return SentenceSet(
            tuple(fp for s in sets for fp in s.fingerprints),
            tuple(n for s in sets for n in s.lengths),
            tuple(p for s in sets for p in s.parallel_ids),
        )


@dataclass(frozen=True)
class Overlap:
    """How many items of an evaluation split a training split holds: as copies (a text of
    the item is a text of the training split) and as translations (the same parallel-set
    id, not a copy), each also counted among those whose matched text has at least
    `min_chars` normalised characters (the `long_` counts)."""

    eval_items: int
    copies: int
    long_copies: int
    translations: int
    long_translations: int

    @property
    def long(self) -> int:
        """The items that count against a run: long copies plus long translations."""
        return self.long_copies + self.long_translations


def overlap(train: SentenceSet, evaluation: SentenceSet, min_chars: int) -> Overlap:
    """Which evaluation items the training split holds, each evaluation item counted once."""
    seen = {fp for item in train.fingerprints for fp in item}
    parallel = {p for p in train.parallel_ids if p is not None}
    copies = long_copies = translations = long_translations = 0
    for fps, lengths, pid in zip(evaluation.fingerprints, evaluation.lengths,
                                 evaluation.parallel_ids, strict=True):  # fmt: skip
        matched = [n for fp, n in zip(fps, lengths, strict=True) if fp in seen]
        if matched:
            copies += 1
            long_copies += max(matched) >= min_chars
        elif pid is not None and pid in parallel:
            translations += 1
            long_translations += max(lengths) >= min_chars
    return Overlap(len(evaluation), copies, long_copies, translations, long_translations)

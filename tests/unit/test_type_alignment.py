"""`TypeAligner` gives exactly `align_words`'s pieces, and notices a tokenizer that splits a
word differently inside a sentence than alone instead of trusting that none does."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

from probe.data.alignment import WordPieces, align_words
from probe.data.type_alignment import TypeAligner

MARK = "\u2581"
WORDS = ["the", "dog", "dogs", "Dog", "a", "xyz", "\u200b", "barked", ".", "zebra", "ab"]


def wordpiece() -> BertTokenizerFast:
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz."))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "dog", "##s", *chars]
    vocab += [f"##{c}" for c in chars]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(dict.fromkeys(vocab))})


def metaspace(scheme: str) -> PreTrainedTokenizerFast:
    """A Unigram vocabulary in which "▁dog" and "dog" are different pieces."""
    pieces = ["<pad>", "<unk>", "<s>", "</s>", MARK, f"{MARK}the", f"{MARK}dog", "dog", "the",
              *"abcdehkrxyz.", *(f"{MARK}{c}" for c in "abcdehkrxyz.")]  # fmt: skip
    vocab = [(p, 0.0 if i < 4 else -1.0 - i / 100) for i, p in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=1, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme=scheme)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


def sentences(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(1, 9))] for _ in range(n)]


def same(a: list[WordPieces], b: list[WordPieces]) -> bool:
    return len(a) == len(b) and all(
        x.n_words == y.n_words and x.empty == y.empty
        and np.array_equal(x.ids, y.ids) and np.array_equal(x.word_of, y.word_of)
        for x, y in zip(a, b, strict=True)
    )  # fmt: skip


@pytest.mark.parametrize("make", [wordpiece, lambda: metaspace("always")])
def test_pieces_equal_whole_sentence_tokenising(make: object) -> None:
    tok = make()  # type: ignore[operator]
    aligner = TypeAligner(tok, check=4)
    for seed in range(3):  # later calls reuse the word types of earlier ones
        batch = sentences(50, seed)
        assert same(aligner(batch), align_words(tok, batch))
    assert aligner.by_type


def test_a_word_without_pieces_gets_one_unk() -> None:
    tok = wordpiece()
    aligner = TypeAligner(tok)
    got = aligner([["a", "\u200b", "dog"], ["\u200b"]])
    assert same(got, align_words(tok, [["a", "\u200b", "dog"], ["\u200b"]]))
    assert [p.empty for p in got] == [1, 1]
    assert got[0].ids.tolist()[1] == tok.unk_token_id and got[0].word_of.tolist() == [0, 1, 2]


class FirstWordUpper:
    """A duck-typed tokenizer whose first word of every sequence gets other ids (what a
    context-dependent pre-tokenizer would do); otherwise `wordpiece()`'s."""

    def __init__(self) -> None:
        self.inner = wordpiece()
        self.unk_token_id = self.inner.unk_token_id
        self.pad_token_id = self.inner.pad_token_id

    def __call__(self, batch: list[list[str]], **kwargs: object) -> object:
        enc = self.inner(batch, **kwargs)
        ids = [[i + 1000 if w == 0 else i for i, w in zip(row, enc.word_ids(n), strict=True)]
               for n, row in enumerate(enc["input_ids"])]  # fmt: skip
        return _Encoded(ids, enc)


class _Encoded:
    def __init__(self, ids: list[list[int]], enc: object) -> None:
        self.ids, self.enc = ids, enc

    def __getitem__(self, key: str) -> list[list[int]]:
        assert key == "input_ids"
        return self.ids

    def word_ids(self, i: int) -> list[int | None]:
        return self.enc.word_ids(i)  # type: ignore[attr-defined, no-any-return]


def test_a_first_word_split_differently_turns_the_shortcut_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tok = FirstWordUpper()
    batch = [["dog", "dog"], ["the", "dog", "xyz"]]
    exact = align_words(tok, batch)
    assert exact[0].ids[0] != exact[0].ids[-1]  # context matters
    aligner = TypeAligner(tok)
    with caplog.at_level(logging.INFO, logger="probe.data.type_alignment"):
        got = aligner(batch)
    assert same(got, exact)
    assert not aligner.by_type
    assert "tokenising whole sentences" in caplog.text
    more = sentences(20, 7)
    assert same(aligner(more), align_words(tok, more))


def test_a_word_first_only_in_an_unsampled_sentence_is_still_checked() -> None:
    """Words are learnt behind another word, so a first-word difference shows in every
    sentence, the sampled ones included (not only where the word happened to come first)."""
    tok = FirstWordUpper()
    aligner = TypeAligner(tok, check=4)
    batch = [["dog"]] * 100
    batch[2] = ["a", "dog"]  # not among the 4 sampled sentences
    assert same(aligner(batch), align_words(tok, batch))
    assert not aligner.by_type


def test_metaspace_first_marks_every_pre_split_word() -> None:
    """What the module's docstring relies on, for the one scheme that looked position-bound."""
    tok = metaspace("first")
    aligner = TypeAligner(tok)
    batch = [["dog", "dog"], ["the", "dog", "xyz"]]
    assert same(aligner(batch), align_words(tok, batch)) and aligner.by_type


def test_the_type_table_starts_afresh_past_its_cap() -> None:
    tok = wordpiece()
    aligner = TypeAligner(tok, max_types=3)
    for seed in range(4):
        batch = sentences(30, seed)
        assert same(aligner(batch), align_words(tok, batch))
        assert len(aligner._pieces) <= len(WORDS)
    assert aligner([]) == []

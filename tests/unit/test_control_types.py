"""Control-task types follow the model's input normalisation: one type per tuple of input
ids (the stored `word_types` keys), so case variants an uncased tokenizer merges share a
control label, and words the model sees differently keep their own draws."""

from __future__ import annotations

import numpy as np
from transformers import BertTokenizerFast

from probe.analysis.control import control_labels
from probe.data.alignment import align_words

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "a", "##s",
         *[f"w{i}" for i in range(100)]]  # fmt: skip


def keys(words: list[str], lowercase: bool) -> np.ndarray:
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(VOCAB)}, do_lower_case=lowercase)
    (pieces,) = align_words(tok, [words])
    return pieces.type_keys()


def test_case_variants_share_a_label_under_an_uncased_tokenizer() -> None:
    words = ["The", "cat", "sat", "on", "THE", "mat", "the", "Cat", "cats"]
    counts = np.ones(17)
    for seed in range(5):
        by_ids = control_labels(keys(words, lowercase=True), counts, seed)
        assert by_ids[0] == by_ids[4] == by_ids[6] and by_ids[1] == by_ids[7]
    # the strings alone would split them (seeds where the draws differ exist)
    by_string = [control_labels(words, counts, seed) for seed in range(5)]
    assert any(labels[0] != labels[6] for labels in by_string)


def test_different_words_are_different_types() -> None:
    words = [f"w{i}" for i in range(100)] + ["cat", "cats"]  # "cats" = cat ##s
    types = keys(words, lowercase=True)
    assert len(set(types.tolist())) == len(words)
    labels = control_labels(types, np.ones(10), seed=0)
    assert len(set(labels.tolist())) == 10  # independent draws over every class
    # each type's label is its own draw, the same wherever (and with whatever) it occurs
    alone = [control_labels(types[i : i + 1], np.ones(10), seed=0)[0] for i in range(len(words))]
    assert labels.tolist() == alone


def test_a_cased_tokenizer_keeps_case_variants_apart() -> None:
    """Without lowercasing "The" is not "the" for the model ("The" is [UNK] here)."""
    types = keys(["The", "the", "THE"], lowercase=False)
    assert types[0] != types[1] and types[0] == types[2]  # both unknown: one input, one type

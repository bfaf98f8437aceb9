"""Control-task types follow the model's input normalisation: one type per tuple of input
ids (the stored `word_types` keys), so case variants an uncased tokenizer merges share a
control label, and words the model sees differently keep their own draws."""

from __future__ import annotations

import numpy as np
import pytest
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


def test_majority_share_is_the_most_frequent_label_and_its_share() -> None:
    """What flags selectivity as uninformative: NER-like (O ~85%) vs balanced labels."""
    from probe.analysis.control import majority_share

    ner_like = np.array([0] * 85 + [1] * 5 + [2] * 10)
    assert majority_share(ner_like, 3) == (0, 0.85)
    assert majority_share(np.array([2, 1, 2, 0, 1, 2]), 4) == (2, 0.5)
    with pytest.raises(ValueError, match="at least one"):
        majority_share(np.array([], dtype=np.int64), 3)


def test_a_control_map_per_seed_differs_and_keeps_the_label_distribution() -> None:
    """Selectivity averages over several maps: each seed is its own type -> label map, each
    drawn from the same label distribution."""
    types = np.arange(20_000)
    counts = np.array([70, 20, 10])
    maps = [control_labels(types, counts, seed) for seed in range(3)]
    assert all((a != b).mean() > 0.3 for a, b in zip(maps, maps[1:], strict=False))
    for labels in maps:
        assert np.allclose(np.bincount(labels, minlength=3) / len(types), [0.7, 0.2, 0.1],
                           atol=0.015)  # fmt: skip

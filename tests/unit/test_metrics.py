"""Tests of the metrics (worked by hand), the `score` dispatcher, and control-task labels."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis.control import control_labels, selectivity
from probe.analysis.metrics import (
    accuracy,
    entity_f1,
    entity_scores,
    expected_calibration_error,
    score,
    tag_sequences,
    xtreme_pos_f1,
)
from probe.errors import ProbeError

NER = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
ID = {name: i for i, name in enumerate(NER)}


def _ids(*tags: str) -> np.ndarray:
    return np.array([ID[t] for t in tags])


def test_accuracy_skips_unlabelled_words() -> None:
    assert accuracy(np.array([1, 2, 3, 0]), np.array([1, 2, 0, -100])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="equal length"):
        accuracy(np.array([1, 2]), np.array([1]))


def test_entity_f1_by_hand() -> None:
    """Two gold entities; the prediction finds one and invents one: P = R = F1 = 1/2."""
    offsets = np.array([0, 3, 6])
    gold = _ids("B-PER", "I-PER", "O", "O", "B-LOC", "O")
    pred = _ids("B-PER", "I-PER", "O", "O", "O", "B-ORG")
    scores = entity_scores(pred, gold, offsets, NER)
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert entity_f1(pred, gold, offsets, NER) == 0.5


def test_entity_f1_is_seqeval_default_mode_and_respects_sentences() -> None:
    """Default (conlleval) mode: an I- opening a span counts as its start; spans stop at offsets."""
    gold = _ids("B-PER", "I-PER")
    assert entity_f1(_ids("I-PER", "I-PER"), gold, np.array([0, 2]), NER) == 1.0  # strict: 0
    pred = _ids("B-PER", "O")
    # One sentence: gold PER spans both words, the prediction covers one: nothing matches.
    assert entity_f1(pred, gold, np.array([0, 2]), NER) == 0.0
    # Two one-word sentences: gold has two PER entities (the I- opens the second); one matches.
    two = entity_scores(pred, gold, np.array([0, 1, 2]), NER)
    assert two["precision"] == 1.0 and two["recall"] == 0.5
    assert tag_sequences(gold, np.array([0, 1, 2]), NER) == [["B-PER"], ["I-PER"]]


def test_pos_f1_note() -> None:
    """Token accuracy is the per-token F1; XTREME's seqeval-on-UPOS merges runs and differs."""
    upos = ("NOUN", "VERB")
    gold, pred, offsets = np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([0, 3])
    assert accuracy(pred, gold) == pytest.approx(2 / 3)
    # gold runs: NOUN NOUN | VERB -> 2 "entities"; pred: NOUN | VERB VERB -> 2; none match.
    assert xtreme_pos_f1(pred, gold, offsets, upos) == 0.0


def test_ece_by_hand() -> None:
    """Bins of width 1/15: {0.9, 0.9} acc 1/2; {0.62} acc 1; {0.58} acc 0.

    ECE = 2/4*|0.5-0.9| + 1/4*|1-0.62| + 1/4*|0-0.58| = 0.2 + 0.095 + 0.145 = 0.44.
    """
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.38, 0.62], [0.58, 0.42], [0.5, 0.5]])
    gold = np.array([0, 1, 1, 1, -100])
    assert expected_calibration_error(probs, gold) == pytest.approx(0.44)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0
    # Bins are (lo, hi]: 0.6 = 9/15 sits in the bin ending at 0.6, with 0.58.
    edge = np.array([[0.6, 0.4], [0.58, 0.42]])
    assert expected_calibration_error(edge, np.array([0, 0])) == pytest.approx(1 - 0.59)


def test_score_dispatches_and_always_reports_ece() -> None:
    probs = np.eye(len(NER))[_ids("B-PER", "I-PER", "O", "O", "O", "B-ORG")] * 0.8 + 0.2 / len(NER)
    gold = _ids("B-PER", "I-PER", "O", "O", "B-LOC", "O")
    offsets = np.array([0, 3, 6])
    ner = score("entity_f1", probs, gold, offsets=offsets, label_names=NER)
    assert set(ner) == {"entity_f1", "entity_precision", "entity_recall", "accuracy", "ece"}
    assert ner["entity_f1"] == 0.5 and ner["accuracy"] == pytest.approx(4 / 6)
    acc = score("accuracy", probs, gold)
    assert set(acc) == {"accuracy", "ece"}
    assert 0.0 <= acc["ece"] <= 1.0
    with pytest.raises(ProbeError, match="Did you mean 'accuracy'"):
        score("acuracy", probs, gold)
    with pytest.raises(ValueError, match="offsets="):
        score("entity_f1", probs, gold)


# --- control tasks -------------------------------------------------------------------------


def test_control_labels_are_a_deterministic_function_of_type_and_seed() -> None:
    counts = [50, 30, 20]
    words = ["the", "cat", "The", "sat", "the", "cat"]
    first = control_labels(words, counts, seed=0)
    assert np.array_equal(first, control_labels(words, counts, seed=0))
    assert first[0] == first[4] and first[1] == first[5]  # one label per type
    lower = control_labels(words, counts, seed=0, lowercase=True)
    assert lower[0] == lower[2] == lower[4]
    # Another split of the language: shared types keep their labels, new types get a draw.
    other = control_labels(["cat", "dog", "the"], counts, seed=0)
    assert other[0] == first[1] and other[2] == first[0]
    types = [f"w{i}" for i in range(200)]
    assert not np.array_equal(control_labels(types, counts, 0), control_labels(types, counts, 1))


def test_control_labels_follow_the_label_distribution() -> None:
    counts = np.array([70, 0, 20, 10])  # a label never seen in training is never drawn
    labels = control_labels([f"type{i}" for i in range(20000)], counts, seed=3)
    share = np.bincount(labels, minlength=4) / len(labels)
    np.testing.assert_allclose(share, counts / counts.sum(), atol=0.015)
    assert share[1] == 0
    mapped = control_labels(["a", "b"], {0: 1, 2: 1}, seed=0)
    assert set(mapped.tolist()) <= {0, 2}
    with pytest.raises(ValueError, match="label_counts"):
        control_labels(["a"], [0, 0], seed=0)


def test_selectivity() -> None:
    assert selectivity(0.95, 0.7) == pytest.approx(0.25)

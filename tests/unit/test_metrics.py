"""Tests of the metrics (worked by hand), the `score` dispatcher, and control-task labels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probe.analysis.control import control_labels, selectivity
from probe.analysis.metrics import (
    accuracy,
    entity_f1,
    entity_scores,
    expected_calibration_error,
    score,
    tag_sequences,
    xtreme_pos_f1,
    xtreme_pos_scores,
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


# --- XTREME's POS F1 (seqeval 0.0.12) ---------------------------------------------------------

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
        "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")  # fmt: skip


def _pos(*sentences: str) -> tuple[np.ndarray, np.ndarray]:
    """Space-separated UPOS sentences -> (flat ids, offsets)."""
    tags = [s.split() for s in sentences]
    ids = np.array([UPOS.index(t) for sent in tags for t in sent], dtype=np.int64)
    return ids, np.concatenate([[0], np.cumsum([len(t) for t in tags])]).astype(np.int64)


def _pos_f1(gold: tuple[str, ...], pred: tuple[str, ...]) -> dict[str, float]:
    g, offsets = _pos(*gold)
    p, same = _pos(*pred)
    assert np.array_equal(offsets, same)
    return xtreme_pos_scores(p, g, offsets, UPOS)


def test_pos_f1_types_are_whole_tags_so_cconj_is_not_sconj() -> None:
    """seqeval 1.x scores this 1.0 (both types "CONJ"); 0.0.12, XTREME's, scores 2/3."""
    scores = _pos_f1(("PRON SCONJ VERB",), ("PRON CCONJ VERB",))
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert _pos_f1(("ADJ ADP",), ("ADP ADJ",))["f1"] == 0.0


def test_pos_f1_merges_runs_of_a_tag_into_one_chunk() -> None:
    """gold NOUN NOUN NOUN is one chunk: one wrong word in it costs the run, not one word."""
    gold, offsets = _pos("NOUN NOUN NOUN")
    pred, _ = _pos("NOUN VERB NOUN")
    assert accuracy(pred, gold) == pytest.approx(2 / 3)
    assert xtreme_pos_scores(pred, gold, offsets, UPOS) == {"precision": 0, "recall": 0, "f1": 0}
    # NOUN NOUN | VERB against NOUN | VERB VERB: two chunks each, none equal.
    assert _pos_f1(("NOUN NOUN VERB",), ("NOUN VERB VERB",))["f1"] == 0.0
    # A run predicted whole is one hit: gold {DET, NOUN 1-2, VERB}, pred {DET, NOUN 1-2, ADJ}.
    scores = _pos_f1(("DET NOUN NOUN VERB",), ("DET NOUN NOUN ADJ",))
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    # Running one word too far misses it too: pred {DET, NOUN 1-3}; only DET matches.
    scores = _pos_f1(("DET NOUN NOUN VERB",), ("DET NOUN NOUN NOUN",))
    assert scores == pytest.approx({"precision": 1 / 2, "recall": 1 / 3, "f1": 2 / 5})


def test_pos_f1_sconj_and_sym_are_single_word_chunks_and_intj_runs_merge() -> None:
    """0.0.12 reads the first letter as an IOBES prefix: S (SCONJ, SYM) closes every word;
    I (INTJ) continues a run like any other letter."""
    assert _pos_f1(("SCONJ SCONJ",), ("SCONJ ADP",))["f1"] == 0.5  # 1 of 2 chunks each side
    assert _pos_f1(("SYM SYM SYM",), ("SYM SYM X",))["recall"] == pytest.approx(2 / 3)
    assert _pos_f1(("INTJ INTJ",), ("INTJ ADP",))["f1"] == 0.0  # one run of 2 vs INTJ, ADP
    assert _pos_f1(("NOUN NOUN",), ("NOUN ADP",))["f1"] == 0.0


def test_pos_f1_chunks_never_cross_a_sentence() -> None:
    """The same tags in two sentences are two chunks: the second sentence's NOUN is scored
    alone. In one sentence they would be one chunk NOUN NOUN NOUN, missed entirely."""
    scores = _pos_f1(("NOUN NOUN", "NOUN"), ("NOUN NOUN", "VERB"))
    assert scores == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert _pos_f1(("NOUN NOUN NOUN",), ("NOUN NOUN VERB",))["f1"] == 0.0
    # Equal sequences score 1 however they are cut, empty sentences included.
    gold, offsets = _pos("NOUN", "", "NOUN NOUN", "SCONJ PRON")
    assert xtreme_pos_f1(gold, gold, offsets, UPOS) == 1.0


def test_pos_f1_of_nothing_is_zero_and_bad_input_fails() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert xtreme_pos_scores(empty, empty, np.array([0]), UPOS) == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0,
    }  # fmt: skip
    assert xtreme_pos_f1(empty, empty, np.array([0, 0, 0]), UPOS) == 0.0
    gold, offsets = _pos("NOUN VERB")
    with pytest.raises(ValueError, match="offsets must run from 0"):
        xtreme_pos_f1(gold, gold, np.array([0, 1]), UPOS)
    with pytest.raises(ValueError, match="every word labelled"):
        xtreme_pos_f1(gold, np.array([7, -100]), offsets, UPOS)
    with pytest.raises(ValueError, match="equal length"):
        xtreme_pos_f1(gold[:1], gold, offsets, UPOS)


# A transcription of seqeval 0.0.12 (seqeval/metrics/sequence_labeling.py at tag v0.0.12:
# get_entities, end_of_chunk, start_of_chunk, f1_score), kept literal and loop-based so the
# vectorised version is checked against the algorithm itself, not against a re-derivation.


def _v0012_end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    chunk_end = False
    if prev_tag == "E":
        chunk_end = True
    if prev_tag == "S":
        chunk_end = True
    if prev_tag == "B" and tag in ("B", "S", "O"):
        chunk_end = True
    if prev_tag == "I" and tag in ("B", "S", "O"):
        chunk_end = True
    if prev_tag != "O" and prev_tag != "." and prev_type != type_:
        chunk_end = True
    return chunk_end


def _v0012_start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    chunk_start = False
    if tag == "B":
        chunk_start = True
    if tag == "S":
        chunk_start = True
    if prev_tag == "E" and tag in ("E", "I"):
        chunk_start = True
    if prev_tag == "S" and tag in ("E", "I"):
        chunk_start = True
    if prev_tag == "O" and tag in ("E", "I"):
        chunk_start = True
    if tag != "O" and tag != "." and prev_type != type_:
        chunk_start = True
    return chunk_start


def _v0012_get_entities(seq: list[list[str]]) -> list[tuple[str, int, int]]:
    flat: list[str] = seq  # type: ignore[assignment]
    if any(isinstance(s, list) for s in seq):
        flat = [item for sublist in seq for item in sublist + ["O"]]
    prev_tag, prev_type, begin_offset = "O", "", 0
    chunks = []
    for i, chunk in enumerate(flat + ["O"]):
        tag, type_ = chunk[0], chunk.split("-")[-1]
        if _v0012_end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin_offset, i - 1))
        if _v0012_start_of_chunk(prev_tag, tag, prev_type, type_):
            begin_offset = i
        prev_tag, prev_type = tag, type_
    return chunks


def _v0012_scores(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, float]:
    true_entities = set(_v0012_get_entities(y_true))
    pred_entities = set(_v0012_get_entities(y_pred))
    nb_correct = len(true_entities & pred_entities)
    p = nb_correct / len(pred_entities) if pred_entities else 0
    r = nb_correct / len(true_entities) if true_entities else 0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r > 0 else 0}


# UPOS plus tags that reach every branch of 0.0.12's rules: IOBES prefixes, "O" and "."
# starts, types shared across prefixes, an empty type ("B-") and an "O"-typed tag ("B-O").
ODD = (*UPOS, "O", "B-NP", "I-NP", "E-NP", "S-NP", "B-VP", "I-VP", "E-VP", "S-VP", ".X",
       ".NP", "O-NP", "OTHER", "B-", "I-", "B-O", "E", "S", "I", "B", "NP")  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    tagset=st.sampled_from([UPOS, ODD, ("NOUN", "SCONJ", "INTJ"), ("B-X", "I-X", "O", "E-X")]),
    data=st.data(),
)
def test_pos_f1_equals_seqeval_0_0_12(tagset: tuple[str, ...], data: st.DataObject) -> None:
    lengths = data.draw(st.lists(st.integers(0, 7), max_size=6), label="lengths")
    n = sum(lengths)
    ids = st.lists(st.integers(0, len(tagset) - 1), min_size=n, max_size=n)
    gold = np.array(data.draw(ids, label="gold"), dtype=np.int64)
    # Predictions near the gold ids (runs and boundaries match often) or anywhere.
    flips = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    pred = np.where(flips, np.array(data.draw(ids, label="pred"), dtype=np.int64), gold)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    expected = _v0012_scores(
        tag_sequences(gold, offsets, tagset), tag_sequences(pred, offsets, tagset)
    )
    assert xtreme_pos_scores(pred, gold, offsets, tagset) == pytest.approx(expected)


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


def test_score_adds_pos_f1_beside_the_accuracy_headline() -> None:
    gold, offsets = _pos("PRON SCONJ VERB", "NOUN NOUN")
    pred, _ = _pos("PRON CCONJ VERB", "NOUN NOUN")
    probs = np.eye(len(UPOS))[pred] * 0.9 + 0.1 / len(UPOS)
    out = score("accuracy", probs, gold, offsets=offsets, label_names=UPOS, extra=("pos_f1",))
    assert list(out) == ["accuracy", "pos_f1", "ece"]
    assert out["accuracy"] == pytest.approx(4 / 5)
    assert out["pos_f1"] == pytest.approx(3 / 4) == xtreme_pos_f1(pred, gold, offsets, UPOS)
    assert set(score("pos_f1", probs, gold, offsets=offsets, label_names=UPOS)) == set(out)
    with pytest.raises(ValueError, match="'pos_f1' scores whole sentences"):
        score("accuracy", probs, gold, extra=("pos_f1",))
    with pytest.raises(ProbeError, match="Did you mean 'pos_f1'"):
        score("accuracy", probs, gold, offsets=offsets, label_names=UPOS, extra=("pos-f1",))


# --- control tasks -------------------------------------------------------------------------


def test_control_labels_are_a_deterministic_function_of_type_and_seed() -> None:
    counts = [50, 30, 20]
    words = ["the", "cat", "The", "sat", "the", "cat"]
    first = control_labels(words, counts, seed=0)
    assert np.array_equal(first, control_labels(words, counts, seed=0))
    assert first[0] == first[4] and first[1] == first[5]  # one label per type
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

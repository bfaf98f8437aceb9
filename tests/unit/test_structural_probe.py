"""Structural probes: the tree metrics, UUAS with the MST, the Spearman averages, the probe
recovering a planted tree metric, and edge probing's arcs."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis.structural import (
    depth_scores,
    distance_scores,
    length_averaged,
    spanning_edges,
    tree_depths,
    tree_distances,
    uuas_counts,
)
from probe.train import TrainConfig
from probe.train.edges import arc_rows
from probe.train.structural import TreeData, fit_structural, predict_structural
from tests.structural_data import random_heads

pytestmark = pytest.mark.usefixtures("one_thread")

# 0-based heads, -1 the root: "the(0) dog(1) saw(2) a(3) cat(4) .(5)"
HEADS = np.array([1, 2, -1, 4, 2, 2])
KEEP = np.array([True, True, True, True, True, False])  # "." is punctuation


def test_tree_distances_and_depths_by_hand() -> None:
    d = tree_distances(HEADS)
    assert d[0, 4] == 3 and d[0, 3] == 4 and d[1, 3] == 3 and d[2, 5] == 1 and d[0, 5] == 3
    assert (d == d.T).all() and (np.diag(d) == 0).all()
    assert tree_depths(HEADS).tolist() == [2, 1, 0, 2, 1, 1]
    with pytest.raises(ValueError, match="one root"):
        tree_depths(np.array([-1, -1]))


def test_uuas_is_one_for_gold_distances() -> None:
    gold = tree_distances(HEADS)
    assert uuas_counts(gold, gold, KEEP) == (4, 4)  # 5 kept words: 4 edges
    scores = distance_scores([gold.astype(float)], [HEADS], [KEEP])
    assert scores.scores["uuas"] == 1.0
    assert scores.counts["uuas"].tolist() == [[4, 4]]


def test_uuas_matches_a_hand_computed_tree() -> None:
    # Predicted distances whose MST over the kept words is the chain 0-1-2-3-4: gold edges
    # {0-1, 1-2, 2-4, 3-4}; shared: 0-1, 1-2 and 3-4, so 3 of 4.
    positions = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 9.0])
    predicted = (positions[:, None] - positions[None]) ** 2
    assert spanning_edges(predicted[:5, :5]) == {(0, 1), (1, 2), (2, 3), (3, 4)}
    assert uuas_counts(predicted, tree_distances(HEADS), KEEP) == (3, 4)
    assert distance_scores([predicted], [HEADS], [KEEP]).scores["uuas"] == 0.75


def test_depth_spearman_and_root_accuracy_by_hand() -> None:
    # gold depths [2, 1, 0, 2, 1, 1]; predicted ranks agree except words 3 and 4 swapped:
    # ranks gold [5, 3, 1, 5, 3, 3] (ties averaged), predicted [5, 3, 1, 2, 6, 4].
    predicted = np.array([2.0, 1.0, 0.1, 0.9, 2.5, 1.2])
    scores = depth_scores([predicted], [HEADS], [KEEP])
    gold_ranks = np.array([5.5, 3.0, 1.0, 5.5, 3.0, 3.0])
    pred_ranks = np.array([5.0, 3.0, 1.0, 2.0, 6.0, 4.0])
    expected = np.corrcoef(gold_ranks, pred_ranks)[0, 1]
    assert scores.scores["nspr"] == pytest.approx(expected)  # one sentence of length 6
    assert scores.scores["root_acc"] == 1.0  # word 2 is the least deep kept word
    wrong = predicted.copy()
    wrong[0] = 0.0
    assert depth_scores([wrong], [HEADS], [KEEP]).scores["root_acc"] == 0.0
    # punctuation never counts as the predicted root
    punct_lowest = predicted.copy()
    punct_lowest[5] = -1.0
    assert depth_scores([punct_lowest], [HEADS], [KEEP]).scores["root_acc"] == 1.0


def test_spearman_averages_by_length_in_5_to_50() -> None:
    values = [(5, 1.0), (5, 0.0), (7, 0.2), (4, -9.0), (51, -9.0), (6, float("nan"))]
    assert length_averaged(values) == pytest.approx((0.5 + 0.2) / 2)
    assert np.isnan(length_averaged([(3, 1.0)]))


WIDTH, HIDDEN = 10, 32
# The planted subspace: WIDTH orthonormal directions of the HIDDEN-dimensional vectors.
ROTATION = np.linalg.qr(np.random.default_rng(7).normal(size=(HIDDEN, HIDDEN)))[0][:WIDTH]


def _planted(n_sentences: int, seed: int) -> TreeData:
    """Vectors whose squared distances under a hidden projection are tree distances: each
    word is the sum of one orthonormal direction per edge on its path to the root (word k's
    edge to its head is direction k), rotated into HIDDEN dimensions, plus noise."""
    rng = np.random.default_rng(seed)
    width, hidden, rotation = WIDTH, HIDDEN, ROTATION
    vectors, heads, offsets = [], [], [0]
    for _ in range(n_sentences):
        n = int(rng.integers(5, width + 1))
        head = np.asarray(random_heads(n, rng)) - 1
        code = np.zeros((n, width))
        for word in range(n):
            node = word
            while head[node] >= 0:
                code[word, node] = 1.0
                node = head[node]
        vectors.append(code @ rotation + 0.05 * rng.normal(size=(n, hidden)))
        heads.append(head)
        offsets.append(offsets[-1] + n)
    return TreeData(np.concatenate(vectors).astype(np.float32), np.asarray(offsets),
                    np.concatenate(heads))  # fmt: skip


def test_distance_probe_recovers_a_planted_tree_metric() -> None:
    train, dev, test = _planted(300, seed=0), _planted(60, seed=1), _planted(80, seed=2)
    config = TrainConfig(lr=1e-2, batch_size=512, max_epochs=40, patience=4, seed=0)
    result = fit_structural("distance", train, dev, 10, config)
    predicted = predict_structural(result.head, test)  # type: ignore[arg-type]
    keep = [np.ones(len(h), dtype=bool) for h in test.sentence_heads()]
    scores = distance_scores(predicted, test.sentence_heads(), keep)
    assert scores.scores["uuas"] > 0.9 and scores.scores["dspr"] > 0.9
    # The same probe on shuffled vectors (no tree in them) is far worse.
    rng = np.random.default_rng(3)
    shuffled = TreeData(test.features[rng.permutation(len(test.features))], test.offsets,
                        test.heads)  # fmt: skip
    noise = distance_scores(predict_structural(result.head, shuffled),  # type: ignore[arg-type]
                            shuffled.sentence_heads(), keep)  # fmt: skip
    assert noise.scores["uuas"] < scores.scores["uuas"] - 0.3


def test_depth_probe_recovers_planted_depths() -> None:
    train, dev, test = _planted(300, seed=0), _planted(60, seed=1), _planted(80, seed=2)
    config = TrainConfig(lr=1e-2, batch_size=512, max_epochs=40, patience=4, seed=0)
    result = fit_structural("depth", train, dev, 10, config)
    predicted = predict_structural(result.head, test)  # type: ignore[arg-type]
    keep = [np.ones(len(h), dtype=bool) for h in test.sentence_heads()]
    scores = depth_scores(predicted, test.sentence_heads(), keep)
    assert scores.scores["root_acc"] > 0.9 and scores.scores["nspr"] > 0.85


def test_arc_rows_pair_heads_with_dependents() -> None:
    offsets = np.array([0, 6, 8])
    heads = np.concatenate([HEADS, [-1, 0]])
    arcs, arc_offsets = arc_rows(offsets, heads)
    assert arcs.tolist() == [[1, 0], [2, 1], [4, 3], [2, 4], [2, 5], [6, 7]]
    assert arc_offsets.tolist() == [0, 5, 6]

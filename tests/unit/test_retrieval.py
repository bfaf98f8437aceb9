"""Tatoeba retrieval: XTREME's protocol against a literal transcription of XTREME's code, the
search direction, and centring whose means never include the scored pairs."""

from __future__ import annotations

import numpy as np
import pytest

from probe.analysis.crosslingual.retrieval import (
    centred_retrieval,
    centring_halves,
    nearest,
    retrieval_accuracy,
    retrieval_both_ways,
    xtreme_accuracy,
    xtreme_search,
)
from probe.errors import ProbeError
from probe.experiments.map_parallel import xtreme_layer
from tests.helpers import planted_pairs


def xtreme_similarity_search(x: np.ndarray, y: np.ndarray, dim: int, normalize: bool = False):
    """google-research/xtreme third_party/utils_retrieve.py `similarity_search`, line for
    line, with faiss written out in numpy:

        idx = faiss.IndexFlatL2(dim)
        if normalize:
            faiss.normalize_L2(x)
            faiss.normalize_L2(y)
        idx.add(x)
        scores, prediction = idx.search(y, 1)
        return prediction

    (faiss works in float32; normalize_L2 divides each row by its L2 norm in place;
    IndexFlatL2.search returns, per query row of y, the indexed row of x with the smallest
    squared L2 distance.) run_retrieval.py calls it as similarity_search(x, y, embed_size,
    normalize=(dist == 'cosine')) with x the other language, y English, dist 'cosine'.
    """
    x, y = x.astype(np.float32).copy(), y.astype(np.float32).copy()
    assert x.shape[1] == y.shape[1] == dim
    if normalize:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y /= np.linalg.norm(y, axis=1, keepdims=True)
    distances = (y**2).sum(1)[:, None] - 2 * y @ x.T + (x**2).sum(1)[None, :]
    return distances.argmin(axis=1)[:, None]


def xtreme_evaluate_accuracy(labels: list[int], predictions: list[int]) -> float:
    """xtreme evaluate.py `accuracy` (x100): predictions are one per English query."""
    correct = sum([int(p == gold) for p, gold in zip(predictions, labels, strict=True)])
    return float(correct) / len(predictions) * 100


# --- XTREME's protocol -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xtreme_search_matches_a_literal_transcription_of_xtremes_code(seed: int) -> None:
    x, eng = planted_pairs(200, 24, noise=1.2, seed=seed)
    literal = xtreme_similarity_search(x, eng, 24, normalize=True)[:, 0]
    np.testing.assert_array_equal(xtreme_search(x, eng), literal)
    score = xtreme_evaluate_accuracy(list(range(200)), list(literal))
    assert xtreme_accuracy(x, eng) == pytest.approx(score / 100)
    assert 0.1 < xtreme_accuracy(x, eng) < 0.95  # a case where the search order matters


def test_xtreme_direction_is_english_querying_the_other_language() -> None:
    """By hand: English (1, .05) and (0, 1) each find their own translation among (1, 0) and
    (.9, .1), so en->xx is 1.0; (.9, .1) is closer to English (1, .05) than to (0, 1), so
    xx->en misses one of two."""
    x = np.array([[1.0, 0.0], [0.9, 0.1]])
    eng = np.array([[1.0, 0.05], [0.0, 1.0]])
    both = retrieval_both_ways(x, eng)
    assert xtreme_accuracy(x, eng) == both["en2xx"] == 1.0
    assert both["xx2en"] == 0.5
    np.testing.assert_array_equal(xtreme_similarity_search(x, eng, 2, normalize=True)[:, 0], [0, 1])


def test_xtreme_does_not_centre() -> None:
    """A large offset shared by the English sentences hides the translations from XTREME's
    cosine (it does no centring); the centred variant removes it."""
    x, eng = planted_pairs(200, 16, noise=0.3, seed=3)
    shifted = eng + 40.0
    literal = xtreme_similarity_search(x, shifted, 16, normalize=True)[:, 0]
    assert (
        xtreme_accuracy(x, shifted)
        == xtreme_evaluate_accuracy(list(range(200)), list(literal)) / 100
    )
    assert xtreme_accuracy(x, shifted) < 0.05 < 0.3 < xtreme_accuracy(x, eng)
    assert centred_retrieval(x, shifted, seed=0)["en2xx"] > 0.9


def test_xtreme_layer_is_mberts_8_of_12_scaled_to_depth() -> None:
    assert [xtreme_layer(d) for d in (12, 6, 24, 2, 1)] == [8, 4, 16, 1, 1]
    with pytest.raises(ProbeError, match="at least one transformer layer"):
        xtreme_layer(0)


# --- centred, with means from the other half -------------------------------------------------


def test_centring_halves_are_seeded_disjoint_and_cover_every_pair() -> None:
    a, b = centring_halves(101, seed=7)
    assert len(a) == 50 and len(b) == 51
    assert not set(a) & set(b) and sorted([*a, *b]) == list(range(101))
    np.testing.assert_array_equal(centring_halves(101, seed=7)[0], a)
    assert not np.array_equal(centring_halves(101, seed=8)[0], a)
    assert not np.array_equal(a, np.arange(50))  # a random half, not the file's first half
    with pytest.raises(ValueError, match="too few"):
        centring_halves(3, seed=0)


def test_centred_retrieval_uses_only_the_other_halfs_means() -> None:
    """Computed by hand from the halves: each half shifted by the other half's means and
    searched within itself, hits pooled over all pairs; not the old transductive number (every
    pair centred by the means of all, searched among all). The next test catches centring each
    half by its own means."""
    x, eng = planted_pairs(120, 16, noise=1.0, seed=4)
    a, b = centring_halves(120, seed=5)
    hits = {"xx2en": 0, "en2xx": 0}
    for scored, other in ((a, b), (b, a)):
        xs, es = x[scored] - x[other].mean(0), eng[scored] - eng[other].mean(0)
        hits["xx2en"] += int((nearest(xs, es) == np.arange(len(scored))).sum())
        hits["en2xx"] += int((nearest(es, xs) == np.arange(len(scored))).sum())
    got = centred_retrieval(x, eng, seed=5)
    assert got["xx2en"] == hits["xx2en"] / 120 and got["en2xx"] == hits["en2xx"] / 120
    everything = nearest(x - x.mean(0), eng - eng.mean(0)) == np.arange(120)
    assert abs(got["xx2en"] - float(everything.mean())) > 0.05
    assert got["mean"] == pytest.approx((got["xx2en"] + got["en2xx"]) / 2)


def test_centring_fails_if_the_scored_pairs_entered_the_mean() -> None:
    """Shift one half of one language far away. Centring each half by its own mean (the
    transductive way) cancels that shift and retrieval stays high; centring by the other
    half's mean cannot, so the shifted sentences, as queries, all point the same way and
    retrieval collapses."""
    x, eng = planted_pairs(200, 16, noise=0.3, seed=6)
    a, b = centring_halves(200, seed=0)
    shifted = x.copy()
    shifted[a] += 40.0

    def transductive(xx: np.ndarray) -> float:
        hits = 0
        for half in (a, b):
            xs, es = xx[half] - xx[half].mean(0), eng[half] - eng[half].mean(0)
            hits += int((nearest(xs, es) == np.arange(len(half))).sum())
        return hits / 200

    assert transductive(shifted) > 0.9  # what a leaky centring would report
    assert centred_retrieval(x, eng, seed=0)["xx2en"] > 0.9  # no shift: the signal is there
    assert centred_retrieval(shifted, eng, seed=0)["xx2en"] < 0.05


def test_plain_retrieval_has_no_centring_and_rejects_unpaired_inputs() -> None:
    x, eng = planted_pairs(100, 8, noise=0.1, seed=9)
    assert retrieval_accuracy(x, eng) == pytest.approx(
        float((nearest(x, eng) == np.arange(100)).mean())
    )
    with pytest.raises(ValueError, match="row i must translate row i"):
        retrieval_accuracy(np.zeros((3, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="row i must translate row i"):
        xtreme_accuracy(np.zeros((3, 4)), np.zeros((4, 4)))

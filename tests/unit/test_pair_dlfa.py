"""DLFA on a pair's token view: a signal split across two layers is recovered only by
fusing them, through the fused [CLS] row or the masked mean."""

from __future__ import annotations

import numpy as np
import pytest

from probe.heads.registry import HEADS
from probe.train import SequenceData, TrainConfig, fit, predict_proba


def _planted(n: int, seed: int) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """Sequences of 4-9 tokens; the label is sign(a + b), a read off layer 2 (feature 0), b
    off layer 1 (feature 1). Each layer alone sees half of the signal; every other feature
    is noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 10, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows, hidden = int(offsets[-1]), 8
    low = rng.normal(0, 1, (rows, hidden)).astype(np.float32)
    high = rng.normal(0, 1, (rows, hidden)).astype(np.float32)
    a, b = rng.normal(0, 1, n), rng.normal(0, 1, n)
    # every token of a sequence carries its halves, so the [CLS] row and the mean see them
    of = np.repeat(np.arange(n), lengths)
    high[:, 0], high[:, 1] = 3 * a[of], 0.0
    low[:, 1], low[:, 0] = 3 * b[of], 0.0
    labels = (a + b > 0).astype(np.int64)
    return {1: low, 2: high}, offsets, labels


def _accuracy(head: str, layers: tuple[int, int], pool: str) -> float:
    feats, offsets, labels = _planted(600, 0)
    dev_feats, dev_offsets, dev_labels = _planted(300, 1)
    train = SequenceData(feats, offsets, labels)
    dev = SequenceData(dev_feats, dev_offsets, dev_labels)
    config = TrainConfig(lr=1e-2, max_epochs=40, batch_size=256, patience=5)
    result = fit(lambda: HEADS.get(head).build("pair-tokens", 8, 2, pool=pool),
                 train.sentences(layers), dev.sentences(layers), config)  # fmt: skip
    probs = predict_proba(result.head, dev.sentences(layers))
    return float((probs.argmax(axis=1) == dev_labels).mean())


@pytest.mark.parametrize("pool", ["first", "mean"])
def test_pair_dlfa_recovers_a_signal_split_across_two_layers(pool: str) -> None:
    fused = _accuracy("dlfa", (2, 1), pool)
    last_alone = _accuracy("dlfa", (2, 2), pool)
    low_alone = _accuracy("dlfa", (1, 1), pool)
    assert fused > 0.93
    assert last_alone < 0.85 and low_alone < 0.85


def test_pair_heads_refuse_an_unknown_pooling() -> None:
    from probe.errors import ProbeError

    with pytest.raises(ProbeError, match="pair pooling must be one of first, mean"):
        HEADS.get("dlfa").build("pair-tokens", 8, 2, pool="max")

"""Description length of labels given features: the online (prequential) code of Voita & Titov.

Voita & Titov (2020, "Information-Theoretic Probing with Minimum Description Length", EMNLP)
measure how well features encode a labelling by the number of bits needed to transmit the
labels to a receiver who already holds the features. With the *online code* the sender
orders the n labelled examples, cuts them at timesteps 1 <= t_1 < ... < t_S = n, sends the
first block with the uniform code (t_1 * log2 K bits for K classes), and then, for each next
block, trains a probe on the examples [0, t_i) already sent and sends block [t_i, t_{i+1})
with that probe's code, sum of -log2 p(y | x) bits. The receiver can rerun the same training,
so the total is a real code length:

    online = t_1 log2 K + sum_{i=1}^{S-1} sum_{j in [t_i, t_{i+1})} -log2 p_i(y_j | x_j)

Features that make the labels easy to learn *from little data* give short codes, which is
what accuracy on the full training set cannot show (a random encoder or a control task often
reaches a similar accuracy, never a similar code length). The figures reported beside it are
the uniform code length n log2 K (what a receiver without features pays) and the compression
uniform / online (1 = the features did not help at all).

This module is the arithmetic only (numpy, no torch): block boundaries, code lengths, the
result record. `probe.train.mdl.online_code` trains the probes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from probe.analysis.metrics import IGNORE_INDEX
from probe.errors import ProbeError

# Voita & Titov's timesteps: 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50, 100 % of the
# training set (their release, control_tasks/mdl_configs/online_l0.yml, `inds`).
VOITA_FRACTIONS: tuple[float, ...] = (
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0,
)  # fmt: skip

# The smallest probability a code charges for: a float32 softmax can underflow to 0 for a
# confidently wrong probe, which would make the code infinite; the floor (2^-126, so at most
# 126 bits for one label) keeps the sum finite and still punishes such a probe hard.
_FLOOR = float(np.finfo(np.float32).tiny)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(f) for f in fractions)
    if not values:
        raise ProbeError("MDL block fractions are empty; pass e.g. VOITA_FRACTIONS")
    if any(not 0 < f <= 1 for f in values) or any(b <= a for a, b in pairwise(values)):
        raise ProbeError(
            f"MDL block fractions must increase strictly within (0, 1]; got {list(values)}"
        )
    if values[-1] != 1.0:
        raise ProbeError(
            f"the last MDL block fraction must be 1.0 (every label is sent); got {values[-1]}"
        )
    return values


def block_ends(n: int, fractions: Sequence[float] = VOITA_FRACTIONS) -> list[int]:
    """The timesteps t_1 < ... < t_S = n: whole examples, floor(fraction * n) as in Voita &
    Titov's release, at least 1 (the first block must hold an example), repeats dropped (a
    small n gives fewer blocks, never empty ones).

    >>> block_ends(1000)
    [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    """
    values = _check_fractions(fractions)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ProbeError(f"MDL needs at least one labelled example; got n={n!r}")
    ends: list[int] = []
    for f in values:
        end = max(1, min(int(n), math.floor(f * int(n))))
        if not ends or end > ends[-1]:
            ends.append(end)
    ends[-1] = int(n)  # 1.0 * n is exact, but say so for any float rounding
    return ends


def sentence_block_ends(
    sizes: Sequence[int] | np.ndarray, fractions: Sequence[float] = VOITA_FRACTIONS
) -> list[int]:
    """Block ends counted in *sentences* for word tasks, where a sentence's words travel
    together: each word timestep of `block_ends(total words)` moves to the nearest sentence
    boundary (at least one sentence; repeats dropped; the last end is every sentence).

    sizes: labelled words per sentence, in transmission order. Returns sentence counts; the
    word ends are `np.cumsum(sizes)[ends - 1]`.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or len(sizes) == 0 or np.any(sizes < 0):
        raise ProbeError("sentence sizes must be a non-empty 1-d array of word counts >= 0")
    cum = np.cumsum(sizes)
    total = int(cum[-1])
    if total < 1:
        raise ProbeError("MDL needs at least one labelled word; every sentence is unlabelled")
    ends: list[int] = []
    for target in block_ends(total, fractions):
        # cum[k - 1] is the words in the first k sentences; pick the k closest to `target`.
        k = int(np.searchsorted(cum, target))  # first k with cum[k] >= target (0-based)
        candidates = [k + 1] + ([k] if k >= 1 else [])
        best = min(candidates, key=lambda c: (abs(int(cum[c - 1]) - target), c))
        # The first block must carry a labelled word, else it sends nothing and the probe
        # after it trains on nothing.
        while int(cum[best - 1]) == 0:
            best += 1
        # A block must carry a labelled word: sentences without one (every label -100)
        # can leave two ends with the same word count, an empty block.
        if not ends or int(cum[best - 1]) > int(cum[ends[-1] - 1]):
            ends.append(best)
    ends[-1] = len(sizes)
    return ends


def uniform_codelength(n: int, n_classes: int) -> float:
    """Bits to send n labels of K classes with no features: n log2 K."""
    if n < 0 or n_classes < 1:
        raise ProbeError(f"uniform code needs n >= 0 and at least one class; got n={n}, "
                         f"n_classes={n_classes}")  # fmt: skip
    return float(n) * math.log2(n_classes)


def codelength(probs: np.ndarray, labels: np.ndarray) -> float:
    """Bits to send `labels` with the code of predicted distributions `probs`: the sum of
    -log2 p(gold) over labelled items (gold -100 skipped).

    probs: (n, K) class probabilities (rows summing to 1); labels: (n,) ids in [0, K) or -100.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ProbeError(f"codelength needs probs (n, K) and labels (n,); got {probs.shape} "
                         f"and {labels.shape}")  # fmt: skip
    keep = labels != IGNORE_INDEX
    gold = labels[keep].astype(np.int64)
    if gold.size and (gold.min() < 0 or gold.max() >= probs.shape[1]):
        raise ProbeError(f"labels must be class ids in [0, {probs.shape[1]}) or "
                         f"{IGNORE_INDEX}; got {gold.min()}..{gold.max()}")  # fmt: skip
    p = probs[keep][np.arange(gold.size), gold]
    return float(-np.log2(np.maximum(p, _FLOOR)).sum())


@dataclass(frozen=True)
class OnlineCode:
    """One online code: the timesteps, the bits of each block, and the totals.

    blocks: the block ends t_1 < ... < t_S = n in labelled examples (words for word tasks,
    pairs for pair tasks); block_bits: bits of each block, the first one by the uniform code;
    online_bits = sum(block_bits); uniform_bits = n log2 K; compression = uniform / online.
    """

    blocks: tuple[int, ...]
    block_bits: tuple[float, ...]
    online_bits: float
    uniform_bits: float
    compression: float
    n_classes: int

    @classmethod
    def from_blocks(
        cls, blocks: Sequence[int], later_bits: Sequence[float], n_classes: int
    ) -> OnlineCode:
        """Assemble the code from the block ends and the bits of blocks 2..S (the probes'
        code lengths); the first block's uniform cost and the totals are computed here."""
        ends = tuple(int(t) for t in blocks)
        if not ends or ends[0] < 1 or any(b <= a for a, b in pairwise(ends)):
            raise ProbeError(f"block ends must start at >= 1 and increase strictly; got {ends}")
        if len(later_bits) != len(ends) - 1:
            raise ProbeError(f"{len(ends)} blocks need {len(ends) - 1} probe code lengths, "
                             f"got {len(later_bits)}")  # fmt: skip
        bits = (uniform_codelength(ends[0], n_classes), *(float(b) for b in later_bits))
        online = float(sum(bits))
        uniform = uniform_codelength(ends[-1], n_classes)
        compression = uniform / online if online > 0 else math.inf
        return cls(ends, bits, online, uniform, compression, n_classes)

    @property
    def n(self) -> int:
        """Labelled examples transmitted."""
        return self.blocks[-1]

    @property
    def online_kbits(self) -> float:
        return self.online_bits / 1000

    @property
    def uniform_kbits(self) -> float:
        return self.uniform_bits / 1000

"""Control tasks (Hewitt & Liang 2019): random per-word-type labels, and probe selectivity.

A control task keeps the task's output space and label distribution but makes each label a
function of the word type alone, so only memorising types solves it. A probe that scores
well on the control task can memorise; selectivity = task score - control score says how
much of the task score reflects the representation rather than the probe's capacity.

Each type's control label is a pure function of (seed, type): a keyed hash of the type gives
a uniform number that is mapped through the empirical label distribution's inverse CDF. So
the same map holds across every split of one language and across processes, with nothing to
store or pass between splits, and a type never seen in training simply gets its own draw
from the same distribution (as Hewitt & Liang's map would when extended to new types).

A type is what the model can tell apart: the tuple of the word's input ids, stored by the
extraction as each word's `word_types` key (docs/cache-format.md). Case variants that an
uncased tokenizer maps to the same ids ("The", "the" for MiniLM) are one type with one
label; with word strings they would get independent labels that no probe on the model's
vectors could learn, lowering control accuracy and inflating selectivity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np


def _label_probabilities(
    label_counts: Sequence[int] | np.ndarray | Mapping[int, int],
) -> np.ndarray:
    """Counts per label id (array, list, or {id: count}) -> probabilities, shape (classes,)."""
    if isinstance(label_counts, Mapping):
        if any(k < 0 for k in label_counts):
            raise ValueError(f"label ids must be non-negative; got {sorted(label_counts)}")
        counts = np.zeros(max(label_counts) + 1 if label_counts else 0, dtype=np.float64)
        for k, v in label_counts.items():
            counts[k] = v
    else:
        counts = np.asarray(label_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0) or counts.sum() <= 0:
        raise ValueError(
            "label_counts must be non-negative counts per label id with a positive total "
            f"(e.g. np.bincount(train_labels, minlength=n_classes)); got {counts!r}"
        )
    return counts / counts.sum()


def _uniform(seed: int, word_type: str | int) -> float:
    """A reproducible uniform number in [0, 1) for (seed, type), the same in every process:
    a string type by its UTF-8, a type key by its 8 bytes."""
    data = (
        word_type.encode("utf-8")
        if isinstance(word_type, str)
        else int(word_type).to_bytes(8, "big", signed=True)
    )
    digest = hashlib.blake2b(data, digest_size=8, key=str(int(seed)).encode("ascii")).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def control_labels(
    types: Sequence[str] | np.ndarray,
    label_counts: Sequence[int] | np.ndarray | Mapping[int, int],
    seed: int,
) -> np.ndarray:
    """The control label id of every word, shape (len(types),) int64.

    types: each word's type: the stored `word_types` keys (int64, what the model sees), or
        strings where no model is involved.
    label_counts: the task's label counts in the training split of this language (e.g.
        `np.bincount(train_labels, minlength=n_classes)`); every split must use the same
        counts and seed so that all splits share one type -> label map.
    """
    probs = _label_probabilities(label_counts)
    cdf = np.cumsum(probs)
    # Guard the top against rounding so every u < 1 lands in a class of non-zero probability.
    cdf[np.flatnonzero(probs)[-1] :] = 1.0
    unique, inverse = np.unique(np.asarray(types), return_inverse=True)
    draws = np.fromiter((_uniform(seed, t) for t in unique.tolist()), np.float64, len(unique))
    labels = np.searchsorted(cdf, draws, side="right").astype(np.int64)
    return labels[inverse.reshape(-1)]


def majority_share(labels: np.ndarray, n_classes: int) -> tuple[int, float]:
    """The most frequent label id of `labels` and its share of them.

    A control task draws labels from the task's own distribution, so a probe that only ever
    predicts the majority label already scores about its share on both the task and the
    control task: where one label dominates (NER's O, ~85% of words) the task and control
    accuracies are both pinned near that share and their difference, selectivity, is near
    zero by construction, whatever the representation holds.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError("majority_share needs at least one label")
    counts = np.bincount(labels, minlength=n_classes)
    top = int(counts.argmax())
    return top, float(counts[top] / counts.sum())


def selectivity(task_score: float, control_score: float) -> float:
    """Task score minus control-task score (Hewitt & Liang 2019); high means selective."""
    return float(task_score) - float(control_score)

"""Calibration maths on predicted class probabilities: reliability bins, NLL, temperature scaling.

Binning is the one `metrics.expected_calibration_error` uses (equal-width bins (lo, hi] over
the max class probability), so a reliability diagram and the ECE beside it always agree.

Temperature scaling (Guo et al. 2017) divides a head's logits by one scalar T > 0 fitted by
minimising the NLL on held-out data; it leaves every argmax, hence accuracy, unchanged and
only moves confidence. The heads here hand over probabilities, not logits; log-probabilities
differ from logits by a per-row constant, which softmax ignores, so `log_probs(probs)` is a
valid input to `fit_temperature` and `apply_temperature`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probe.analysis.metrics import IGNORE_INDEX

# float32 probabilities can underflow to 0; their log is clipped here instead of being -inf.
_LOG_FLOOR = float(np.log(np.finfo(np.float32).tiny))


def _labelled(scores: np.ndarray, gold: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    scores, gold = np.asarray(scores, dtype=np.float64), np.asarray(gold)
    if scores.ndim != 2 or gold.shape != (scores.shape[0],):
        raise ValueError(
            f"{what} needs scores (items, classes) and gold (items,); got {scores.shape} and "
            f"{gold.shape}"
        )
    keep = gold != IGNORE_INDEX
    if not keep.any():
        raise ValueError(f"{what} needs at least one labelled item; every gold id is -100")
    return scores[keep], gold[keep].astype(np.int64)


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's numbers: per confidence bin, its items, accuracy and confidence.

    edges: (bins + 1,) from 0 to 1; bin b holds confidences in (edges[b], edges[b+1]].
    counts: (bins,) items per bin; accuracy, confidence: (bins,), NaN where a bin is empty.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        """sum_b |B_b|/n * |acc(B_b) - conf(B_b)|: equals `expected_calibration_error`."""
        full = self.counts > 0
        gaps = np.abs(self.accuracy[full] - self.confidence[full])
        return float(np.sum(self.counts[full] / self.counts.sum() * gaps))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready lists (empty bins as None)."""

        def clean(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else round(float(v), 6) for v in values]

        return {
            "edges": [round(float(e), 6) for e in self.edges],
            "counts": [int(c) for c in self.counts],
            "accuracy": clean(self.accuracy),
            "confidence": clean(self.confidence),
        }


def reliability(probs: np.ndarray, gold: np.ndarray, n_bins: int = 15) -> Reliability:
    """Bin labelled items by confidence (max probability); per bin, accuracy and confidence."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    probs, gold = _labelled(probs, gold, "a reliability diagram")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == gold).astype(np.float64)
    # Bin b holds (b/n, (b+1)/n]; a confidence of exactly 0 joins the first bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / counts
        conf = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
    return Reliability(np.linspace(0.0, 1.0, n_bins + 1), counts, acc, conf)


# ECE item statistics hold each bin's summed confidence in integer millionths: item statistics
# travel as int64 (probe.results.items), and 1e-6 per word moves an ECE by far less than 0.01.
CONFIDENCE_UNIT = 10**6


def ece_item_stats(
    probs: np.ndarray, gold: np.ndarray, offsets: np.ndarray, n_bins: int = 15
) -> np.ndarray:
    """Per sentence, per confidence bin: labelled words, correct ones and summed confidence
    (in CONFIDENCE_UNIT): (sentences, 3 * n_bins) int64, bin b in columns 3b..3b+2.

    ECE is no sum of per-item scores, but it is a function of these per-bin sums (the bin
    of a word does not depend on the other words), so a bootstrap over sentences can
    recompute it exactly from them (`ece_from_sums`), as `PairedBootstrap` does for
    accuracy (its metric "ece"). The binning is `reliability`'s."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    bounds = np.asarray(offsets, dtype=np.int64)
    if probs.ndim != 2 or gold.shape != (probs.shape[0],) or bounds[-1] != len(gold):
        raise ValueError(
            f"ECE item statistics need probs (words, classes), gold (words,) and sentence "
            f"offsets ending at the word count; got {probs.shape}, {gold.shape}, {bounds[-1]}"
        )
    sentence = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    keep = gold != IGNORE_INDEX
    confidence = probs.max(axis=1)[keep]
    correct = (probs.argmax(axis=1) == gold)[keep]
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    cell = sentence[keep] * n_bins + bins
    size = (len(bounds) - 1) * n_bins
    stats = np.stack([
        np.bincount(cell, minlength=size),
        np.bincount(cell, weights=correct.astype(np.float64), minlength=size),
        np.bincount(cell, weights=np.rint(confidence * CONFIDENCE_UNIT), minlength=size),
    ], axis=1)  # fmt: skip
    return np.rint(stats).astype(np.int64).reshape(len(bounds) - 1, 3 * n_bins)


def ece_from_sums(sums: np.ndarray) -> np.ndarray:
    """ECE of summed `ece_item_stats` (..., 3 * bins): sum_b |correct_b - confidence_b| / n
    (= sum_b |B_b|/n * |acc_b - conf_b|); NaN where nothing is labelled."""
    sums = np.asarray(sums, dtype=np.float64)
    per_bin = sums.reshape(*sums.shape[:-1], -1, 3)
    counts, correct = per_bin[..., 0], per_bin[..., 1]
    confidence = per_bin[..., 2] / CONFIDENCE_UNIT
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(correct - confidence).sum(axis=-1) / counts.sum(axis=-1)  # type: ignore[no-any-return]


def log_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities (float64), floored at log(float32 tiny) so a 0 never becomes -inf."""
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(probs), _LOG_FLOOR)


def nll(probs: np.ndarray, gold: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold class over labelled items (natural log)."""
    probs, gold = _labelled(probs, gold, "NLL")
    return float(-np.mean(log_probs(probs[np.arange(len(gold)), gold])))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float64, row-wise."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits: np.ndarray, gold: np.ndarray, max_iter: int = 100) -> float:
    """The T > 0 minimising the mean NLL of softmax(logits / T) on labelled items (LBFGS).

    Optimised over log T, so T stays positive without a constraint; starts at T = 1.
    logits: (items, classes) logits or log-probabilities; gold: (items,), -100 skipped.
    """
    logits, gold = _labelled(logits, gold, "temperature scaling")
    z = torch.from_numpy(logits)
    y = torch.from_numpy(gold)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature fit diverged (T = {temperature})")
    return temperature

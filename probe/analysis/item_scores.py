"""Per-item sufficient statistics of a score: what a paired bootstrap resamples.

Every metric the toolkit reports is a function of counts summed over independent items
(sentences for word tasks, pairs for pair tasks): accuracy = correct / labelled, entity F1 and
XTREME's POS F1 = 2 * correct / (predicted + gold). Keeping those counts per item, rather than
the score alone, lets `probe.analysis.bootstrap` resample items and recompute the exact metric
of each resample, for two systems on the same items at once (a paired bootstrap), without
keeping predictions. `metric_from_sums(metric, stats.sum(0))` equals `score(...)[metric]`
(tests/unit/test_bootstrap.py checks it for every metric).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.analysis.metrics import IGNORE_INDEX, entity_counts, xtreme_pos_counts
from probe.errors import unknown_name

# The columns of each metric's per-item statistics.
ITEM_COLUMNS: dict[str, tuple[str, ...]] = {
    "accuracy": ("correct", "labelled"),
    "entity_f1": ("correct", "predicted", "gold"),
    "pos_f1": ("correct", "predicted", "gold"),
    # Structural probes' ratios (probe.analysis.structural computes their counts).
    "uuas": ("correct", "gold_edges"),
    "root_acc": ("correct", "sentences"),
}
# Metrics that are the ratio of their first column's sum to their second's.
RATIOS = ("accuracy", "uuas", "root_acc")


def item_stats(
    metric: str,
    pred: np.ndarray,
    gold: np.ndarray,
    *,
    offsets: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
) -> np.ndarray:
    """(items, columns) int64 counts of `metric` (ITEM_COLUMNS): one row per sentence when
    `offsets` (sentences + 1 word offsets) are given, else one row per predicted item."""
    if metric not in ITEM_COLUMNS:
        raise unknown_name("metric with per-item statistics", metric, tuple(ITEM_COLUMNS))
    if metric in RATIOS[1:]:
        raise ValueError(f"{metric!r} counts come from probe.analysis.structural, not labels")
    pred, gold = np.asarray(pred), np.asarray(gold)
    if metric == "accuracy":
        correct = ((pred == gold) & (gold != IGNORE_INDEX)).astype(np.int64)
        labelled = (gold != IGNORE_INDEX).astype(np.int64)
        if offsets is None:
            return np.stack([correct, labelled], axis=1)
        bounds = np.asarray(offsets)
        return np.stack([_sentence_sums(correct, bounds), _sentence_sums(labelled, bounds)], axis=1)
    if offsets is None or label_names is None:
        raise ValueError(
            f"metric {metric!r} counts whole sentences: pass offsets= and label_names="
        )
    counts = entity_counts if metric == "entity_f1" else xtreme_pos_counts
    return counts(pred, gold, np.asarray(offsets), label_names)


def _sentence_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum of `values` over each sentence offsets[i]:offsets[i+1] (empty sentences: 0)."""
    cumulative = np.concatenate([[0], np.cumsum(values)])
    return cumulative[offsets[1:]] - cumulative[offsets[:-1]]


def metric_from_sums(metric: str, sums: np.ndarray) -> np.ndarray:
    """The metric of summed statistics; `sums` is (..., columns), the result (...).

    Accuracy of no labelled item and F1 with nothing predicted nor gold are NaN here, never a
    number that looks meaningful (a resample can only draw them when every item is empty)."""
    sums = np.asarray(sums, dtype=np.float64)
    if metric == "ece":  # per-bin sums of probe.analysis.calibration.ece_item_stats
        from probe.analysis.calibration import ece_from_sums

        return ece_from_sums(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in RATIOS:
            return sums[..., 0] / sums[..., 1]  # type: ignore[no-any-return]
        if metric in ITEM_COLUMNS:
            # F1 = 2PR / (P + R) = 2 * correct / (predicted + gold); 0 when nothing is correct
            # but something was predicted or expected (seqeval's zero_division=0).
            return 2 * sums[..., 0] / (sums[..., 1] + sums[..., 2])  # type: ignore[no-any-return]
    raise unknown_name("metric with per-item statistics", metric, tuple(ITEM_COLUMNS))

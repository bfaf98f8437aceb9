"""Scores of predictions against gold labels: accuracy, entity F1 (seqeval), ECE, and `score`.

Everything here works on numpy arrays of label ids (and, for sequence metrics, the word
`offsets` that cut a flat word array into sentences), so experiments can score cached-feature
predictions without torch. Gold ids equal to `IGNORE_INDEX` (-100) mark words that carry no
label; the per-item metrics skip them.

Metric conventions (why each is what it is):

- `entity_f1` uses seqeval's default `f1_score` (no `mode="strict"`, no scheme): the
  conlleval-compatible scoring that XTREME and MasakhaNER report. In default mode an `I-X`
  that follows `O` or another type opens a new entity instead of being dropped, which is
  lenient to ill-formed probe output; strict IOB2 mode would discard such spans. Micro
  average over entity types, as XTREME does.
- POS: with one label per token, per-token F1 (micro precision = recall = F1 over tokens) is
  token accuracy, so `accuracy` is the POS score. XTREME's own UD-POS number is *not* that:
  its `run_tag.py` feeds raw UPOS tags to seqeval, which splits each tag into a fake prefix
  and type ("NOUN" -> prefix "N", type "OUN"; "SCONJ" -> single-token "S-CONJ") and merges
  runs of equal tags into one "entity", so one wrong tag inside a run costs the whole run.
  `xtreme_pos_f1` reproduces that (with the installed seqeval, whose tag splitting differs
  slightly from the 2020 release XTREME used) for comparisons with XTREME's tables (metric
  name "pos_f1"); it is not token accuracy and is usually below it.
- `expected_calibration_error`: Guo et al. (2017), 15 equal-width confidence bins over
  (0, 1], confidence = the max class probability, |accuracy - mean confidence| per bin
  weighted by the bin's share of items.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from probe.errors import unknown_name

IGNORE_INDEX = -100
METRICS: tuple[str, ...] = ("accuracy", "entity_f1", "pos_f1")


def _check_pair(pred: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gold = np.asarray(pred), np.asarray(gold)
    if pred.shape != gold.shape or pred.ndim != 1:
        raise ValueError(
            f"predicted and gold label ids must be 1-d arrays of equal length; got shapes "
            f"{pred.shape} and {gold.shape}"
        )
    return pred, gold


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    """Share of labelled items (gold != -100) whose predicted id equals the gold id."""
    pred, gold = _check_pair(pred, gold)
    keep = gold != IGNORE_INDEX
    if not keep.any():
        raise ValueError("accuracy needs at least one labelled item; every gold id is -100")
    return float(np.mean(pred[keep] == gold[keep]))


def tag_sequences(
    ids: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> list[list[str]]:
    """Cut flat label ids into per-sentence tag-name lists (the input seqeval expects).

    `offsets` has sentences+1 entries; sentence i is ids[offsets[i]:offsets[i+1]].
    """
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(ids):
        raise ValueError(
            f"offsets must run from 0 to the number of words ({len(ids)}); got "
            f"{offsets[:1].tolist()}..{offsets[-1:].tolist()} over {len(offsets)} entries"
        )
    if np.any(np.diff(offsets) < 0):
        raise ValueError(
            "offsets must be non-decreasing (sentence i spans offsets[i]:offsets[i+1])"
        )
    bad = (ids < 0) | (ids >= len(label_names))
    if bad.any():
        raise ValueError(
            f"label id {int(ids[bad][0])} is outside 0..{len(label_names) - 1} "
            f"({len(label_names)} label names); sequence metrics need every word labelled"
        )
    names = np.asarray(label_names, dtype=object)[ids]
    return [list(names[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _seqeval_scores(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> dict[str, float]:
    """seqeval's default-mode micro precision, recall and F1 over sentences."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    pred, gold = _check_pair(pred, gold)
    y_pred = tag_sequences(pred, offsets, label_names)
    y_true = tag_sequences(gold, offsets, label_names)
    with warnings.catch_warnings():
        # seqeval warns once per tag that lacks an IOB prefix (e.g. every UPOS tag).
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag", category=UserWarning)
        return {
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        }


def entity_scores(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (seqeval default mode) for IOB2 tags."""
    return _seqeval_scores(pred, gold, offsets, label_names)


def entity_f1(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> float:
    """Entity-level micro F1 (seqeval default `f1_score`) for IOB2 tags."""
    return entity_scores(pred, gold, offsets, label_names)["f1"]


def xtreme_pos_f1(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> float:
    """XTREME's UD-POS "F1": seqeval run on raw UPOS tags (see the module note on its quirk)."""
    return _seqeval_scores(pred, gold, offsets, label_names)["f1"]


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum over bins of |B|/n * |acc(B) - conf(B)|.

    Bins split (0, 1] into `n_bins` equal-width intervals (lo, hi]; an item's confidence is
    its max class probability and it counts as correct when that class is the gold one.
    Items with gold -100 are skipped.
    """
    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold)
    if probs.ndim != 2 or gold.shape != (probs.shape[0],):
        raise ValueError(
            "ECE needs probs (items, classes) and gold (items,); "
            f"got {probs.shape} and {gold.shape}"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    keep = gold != IGNORE_INDEX
    if not keep.any():
        raise ValueError("ECE needs at least one labelled item; every gold id is -100")
    probs, gold = probs[keep], gold[keep]
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == gold
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 joins the first bin.
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def score(
    task_metric: str,
    probs: np.ndarray,
    gold: np.ndarray,
    *,
    offsets: np.ndarray | None = None,
    label_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Score class probabilities with a task's metric; the dict always includes "ece".

    `task_metric` is a task's metric name: "accuracy" -> {"accuracy", "ece"};
    "entity_f1" -> {"entity_f1", "entity_precision", "entity_recall", "accuracy", "ece"}
    (token accuracy beside it as a diagnostic); "pos_f1" -> {"pos_f1", "accuracy", "ece"}.
    Sequence metrics need the word `offsets` and the `label_names` the ids index.
    Predictions are the argmax of `probs` (items, classes).
    """
    if task_metric not in METRICS:
        raise unknown_name("metric", task_metric, METRICS)
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    out = {"accuracy": accuracy(pred, gold)}
    if task_metric != "accuracy":
        if offsets is None or label_names is None:
            raise ValueError(
                f"metric {task_metric!r} scores whole sentences: pass offsets= (sentences+1 "
                "word offsets) and label_names= (the tag names the ids index)"
            )
        seq = _seqeval_scores(pred, np.asarray(gold), offsets, label_names)
        if task_metric == "entity_f1":
            out |= {
                "entity_f1": seq["f1"],
                "entity_precision": seq["precision"],
                "entity_recall": seq["recall"],
            }
        else:
            out["pos_f1"] = seq["f1"]
    out["ece"] = expected_calibration_error(probs, gold)
    return out

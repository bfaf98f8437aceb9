"""Scores of predictions against gold labels: accuracy, entity F1, XTREME POS F1, ECE, `score`.

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
- POS: `accuracy` (share of words with the right UPOS tag) is the POS headline. XTREME's
  UD-POS number is another quantity: its `run_tag.py` calls `seqeval.metrics.f1_score` on the
  raw UPOS tag sequences with seqeval 0.0.12, which reads each tag's first letter as an IOBES
  prefix and the text after the last "-" (for UPOS: the whole tag) as the chunk type.
  `xtreme_pos_f1` (metric "pos_f1") reimplements 0.0.12 exactly, without the installed
  seqeval: for UPOS a chunk is a maximal run of one tag, except that SCONJ and SYM (first
  letter "S", 0.0.12's single-token prefix) make one chunk per word; chunks never cross a
  sentence; micro F1 over the chunks of all sentences, so one wrong tag inside a run of
  NOUNs costs the whole run and the score is usually below accuracy. seqeval 1.x differs:
  it strips the first letter from the type, so CCONJ and SCONJ are one type "CONJ" there.
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
# What a summary prints beside a metric that is not its headline, so a reader knows which
# published numbers it compares with.
METRIC_NOTES: dict[str, str] = {
    "pos_f1": "XTREME's UD-POS F1 (seqeval 0.0.12 over runs of one tag), the quantity of "
    "XTREME's POS column (mBERT 70.3, DLFA's baseline); not per-word accuracy",
}


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


def _check_sentences(ids: np.ndarray, offsets: np.ndarray, n_labels: int) -> None:
    """Sequence metrics need offsets from 0 to the word count and every word labelled."""
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(ids):
        raise ValueError(
            f"offsets must run from 0 to the number of words ({len(ids)}); got "
            f"{offsets[:1].tolist()}..{offsets[-1:].tolist()} over {len(offsets)} entries"
        )
    if np.any(np.diff(offsets) < 0):
        raise ValueError(
            "offsets must be non-decreasing (sentence i spans offsets[i]:offsets[i+1])"
        )
    bad = (ids < 0) | (ids >= n_labels)
    if bad.any():
        raise ValueError(
            f"label id {int(ids[bad][0])} is outside 0..{n_labels - 1} "
            f"({n_labels} label names); sequence metrics need every word labelled"
        )


def tag_sequences(
    ids: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> list[list[str]]:
    """Cut flat label ids into per-sentence tag-name lists (the input seqeval expects).

    `offsets` has sentences+1 entries; sentence i is ids[offsets[i]:offsets[i+1]].
    """
    ids, offsets = np.asarray(ids), np.asarray(offsets)
    _check_sentences(ids, offsets, len(label_names))
    names = np.asarray(label_names, dtype=object)[ids]
    return [list(names[a:b]) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def entity_scores(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 (installed seqeval, default mode), IOB2."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    pred, gold = _check_pair(pred, gold)
    y_pred = tag_sequences(pred, offsets, label_names)
    y_true = tag_sequences(gold, offsets, label_names)
    with warnings.catch_warnings():
        # seqeval warns once per tag that lacks an IOB prefix (a task file's odd tag set).
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag", category=UserWarning)
        return {
            "precision": float(precision_score(y_true, y_pred, zero_division=0)),
            "recall": float(recall_score(y_true, y_pred, zero_division=0)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        }


def entity_counts(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> np.ndarray:
    """Per sentence, seqeval's (correct, predicted, gold) entity counts: (sentences, 3).

    The same entities seqeval's default-mode `f1_score` counts (its `get_entities` over the
    sentences, which puts an "O" after each, so no entity crosses a sentence): summed, they
    give `entity_scores`' micro precision, recall and F1, and a bootstrap over sentences can
    resample them (probe.analysis.item_scores)."""
    from seqeval.metrics.sequence_labeling import get_entities

    pred, gold = _check_pair(pred, gold)
    offsets = np.asarray(offsets)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag", category=UserWarning)
        true = set(get_entities(tag_sequences(gold, offsets, label_names)))
        found = set(get_entities(tag_sequences(pred, offsets, label_names)))
    n_sent = len(offsets) - 1
    starts = offsets[:-1] + np.arange(n_sent)  # sentence s begins at offsets[s] + s

    def per_sentence(entities: set[tuple[str, int, int]]) -> np.ndarray:
        first = np.fromiter((start for _, start, _ in entities), dtype=np.int64)
        sentence = np.searchsorted(starts, first, side="right") - 1
        return np.bincount(sentence, minlength=n_sent)[:n_sent]

    return np.stack([per_sentence(true & found), per_sentence(found), per_sentence(true)], axis=1)


def entity_f1(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> float:
    """Entity-level micro F1 (seqeval default `f1_score`) for IOB2 tags."""
    return entity_scores(pred, gold, offsets, label_names)["f1"]


# --- XTREME's POS F1: seqeval 0.0.12's get_entities on ids ---------------------------------

# 0.0.12 reads a tag's first character as its IOBES prefix. Codes for the characters its
# rules name; every other first letter (N of NOUN, V of VERB, ...) is _OTHER, which no rule
# names: such a tag neither ends nor starts a chunk except through a change of type.
_B, _I, _E, _S, _O, _DOT, _OTHER = range(7)
_PREFIX = {"B": _B, "I": _I, "E": _E, "S": _S, "O": _O, ".": _DOT}


def _tag_parts(label_names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each label's 0.0.12 prefix code and type: `tag[0]` and `tag.split("-")[-1]`."""
    empty = [i for i, name in enumerate(label_names) if not name]
    if empty:
        raise ValueError(f"label {empty[0]} has an empty name; POS F1 reads each tag's letters")
    prefix = np.array([_PREFIX.get(name[0], _OTHER) for name in label_names], dtype=np.int8)
    return prefix, [name.split("-")[-1] for name in label_names]


def _pos_chunks(
    ids: np.ndarray, offsets: np.ndarray, prefix: np.ndarray, type_id: np.ndarray, o_type: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0.0.12's chunks of the sentences, keyed by the stream position that closes each one.

    0.0.12 flattens sentences with an "O" after each one, appends one more "O", and walks the
    tags keeping the last chunk start; wherever `end_of_chunk(previous, current)` holds at
    position i it emits the chunk (previous type, last start, i - 1). So each position closes
    at most one chunk, and a chunk is known by its closing position. Here the walk is
    vectorised: the stream holds word j of sentence s at position j + s, `end`/`start` are
    0.0.12's two rule sets on every (previous, current) pair, and the last start before
    each position is a running maximum. Returns `end` (stream length,) and, valid where
    `end` holds, the chunk's type id and first position; gold and predicted chunks (same
    offsets, so the same stream) are equal where both end, with equal type and first.
    Vectorised because `score` runs per layer and language: 56 ms for XTREME's English
    UD-POS test set (85k words) against 1.0 s for the tag-by-tag loop.
    """
    n_sent = len(offsets) - 1
    length = len(ids) + n_sent + 1
    sentence = np.repeat(np.arange(n_sent), np.diff(offsets))
    pos = np.arange(len(ids)) + sentence
    p = np.full(length, _O, dtype=np.int8)  # separators and the final pad are "O" ...
    t = np.full(length, o_type, dtype=np.int64)  # ... of type "O"
    p[pos], t[pos] = prefix[ids], type_id[ids]
    # The walk starts from prev_tag "O", prev_type "" (type id 0 is reserved for "").
    pp = np.concatenate([[_O], p[:-1]])
    pt = np.concatenate([[0], t[:-1]])
    new_type = pt != t
    end = (
        np.isin(pp, (_E, _S))
        | (np.isin(pp, (_B, _I)) & np.isin(p, (_B, _S, _O)))
        | (~np.isin(pp, (_O, _DOT)) & new_type)
    )  # never at position 0, where prev_tag is "O"
    start = (
        np.isin(p, (_B, _S))
        | (np.isin(pp, (_E, _S, _O)) & np.isin(p, (_E, _I)))
        | (~np.isin(p, (_O, _DOT)) & new_type)
    )
    last_start = np.maximum.accumulate(np.where(start, np.arange(length), 0))
    first = np.concatenate([[0], last_start[:-1]])  # the last start at or before i - 1
    return end, pt, first


def _chunk_counts(
    offsets: np.ndarray, ends: tuple[np.ndarray, ...], g_first: np.ndarray, p_first: np.ndarray
) -> np.ndarray:
    """Count each (stream-length) chunk mask per sentence, by the sentence of its first word.

    In the 0.0.12 stream sentence s starts at position offsets[s] + s (one separator after
    each earlier sentence); a chunk belongs to the sentence its first position falls in. The
    correct and gold chunks are placed by the gold walk's first position, the predicted ones
    by the predicted walk's (equal where both hold)."""
    n_sent = len(offsets) - 1
    starts = offsets[:-1] + np.arange(n_sent)
    out = np.zeros((n_sent, len(ends)), dtype=np.int64)
    for column, (mask, first) in enumerate(zip(ends, (g_first, p_first, g_first), strict=True)):
        sentence = np.searchsorted(starts, first[mask], side="right") - 1
        out[:, column] = np.bincount(sentence, minlength=n_sent)[:n_sent]
    return out


def xtreme_pos_counts(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> np.ndarray:
    """Per sentence, seqeval 0.0.12's (correct, predicted, gold) chunk counts: (sentences, 3).

    Chunks never cross a sentence, so these sum to the counts `xtreme_pos_scores` divides, and
    a bootstrap over sentences can resample them (probe.analysis.item_scores).
    """
    pred, gold = _check_pair(pred, gold)
    offsets = np.asarray(offsets)
    _check_sentences(gold, offsets, len(label_names))
    _check_sentences(pred, offsets, len(label_names))
    prefix, types = _tag_parts(label_names)
    index = {"": 0, "O": 1}  # the walk's first prev_type, and the separators' type
    for name in types:
        index.setdefault(name, len(index))
    type_id = np.array([index[name] for name in types], dtype=np.int64)
    g_end, g_type, g_first = _pos_chunks(gold, offsets, prefix, type_id, index["O"])
    p_end, p_type, p_first = _pos_chunks(pred, offsets, prefix, type_id, index["O"])
    correct = g_end & p_end & (g_type == p_type) & (g_first == p_first)
    return _chunk_counts(offsets, (correct, p_end, g_end), g_first, p_first)


def xtreme_pos_scores(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> dict[str, float]:
    """seqeval 0.0.12's micro precision, recall and F1 of the tag sequences (XTREME UD-POS).

    Exactly 0.0.12's `f1_score(y_true, y_pred)` on the sentences' tag names (see the module
    note): chunks from `get_entities` on both sides, counted as sets; a side without chunks
    scores 0 (as 0.0.12 does, so empty input gives 0.0 everywhere).
    """
    correct, n_found, n_true = (
        int(c) for c in xtreme_pos_counts(pred, gold, offsets, label_names).sum(axis=0)
    )
    p = correct / n_found if n_found else 0.0
    r = correct / n_true if n_true else 0.0
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return {"precision": float(p), "recall": float(r), "f1": float(f1)}


def xtreme_pos_f1(
    pred: np.ndarray, gold: np.ndarray, offsets: np.ndarray, label_names: Sequence[str]
) -> float:
    """XTREME's UD-POS F1: seqeval 0.0.12's micro F1 over chunks of UPOS tags, not accuracy.

    A chunk is a maximal run of one tag within a sentence (SCONJ and SYM: one per word), its
    type the whole tag, so a CCONJ for a SCONJ is an error; see the module note.
    """
    return xtreme_pos_scores(pred, gold, offsets, label_names)["f1"]


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
    extra: Sequence[str] = (),
) -> dict[str, float]:
    """Score class probabilities with a task's metric (and its `extra` ones); always "ece".

    `task_metric` is the task's headline metric: "accuracy" -> {"accuracy", "ece"};
    "entity_f1" -> {"entity_f1", "entity_precision", "entity_recall", "accuracy", "ece"}
    (token accuracy beside it as a diagnostic); "pos_f1" -> {"pos_f1", "accuracy", "ece"}.
    `extra` (a task's `extra_metrics`, e.g. ("pos_f1",) for UPOS tasks) adds those metrics'
    keys beside the headline. "pos_f1" is `xtreme_pos_f1`, XTREME's seqeval-0.0.12 F1.
    Sequence metrics need the word `offsets` and the `label_names` the ids index.
    Predictions are the argmax of `probs` (items, classes).
    """
    wanted = dict.fromkeys((task_metric, *extra))
    for name in wanted:
        if name not in METRICS:
            raise unknown_name("metric", name, METRICS)
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    out = {"accuracy": accuracy(pred, gold)}
    if wanted.keys() - {"accuracy"}:
        if offsets is None or label_names is None:
            raise ValueError(
                f"metric {next(m for m in wanted if m != 'accuracy')!r} scores whole sentences: "
                "pass offsets= (sentences+1 word offsets) and label_names= (the tag names the "
                "ids index)"
            )
        gold = np.asarray(gold)
        if "entity_f1" in wanted:
            seq = entity_scores(pred, gold, offsets, label_names)
            out |= {
                "entity_f1": seq["f1"],
                "entity_precision": seq["precision"],
                "entity_recall": seq["recall"],
            }
        if "pos_f1" in wanted:
            out["pos_f1"] = xtreme_pos_f1(pred, gold, offsets, label_names)
    out["ece"] = expected_calibration_error(probs, gold)
    return out

"""Scores of structural probes (Hewitt & Manning 2019) against gold dependency trees.

A distance probe predicts a squared distance for every pair of words of a sentence, a depth
probe a squared norm per word; these functions turn the predictions and the gold tree (each
word's head as a sentence-local index, -1 for the root) into H&M's four numbers:

* `uuas`: undirected unlabelled attachment score of the minimum spanning tree of the
  predicted distances against the gold tree, both over the words that are not punctuation
  (H&M exclude it; here: UD relation `punct`), micro-averaged over the corpus's edges;
* `dspr`: Spearman correlation of each word's predicted distances to every word of its
  sentence with the gold tree distances, averaged within each sentence length, then over
  the lengths 5-50 (H&M's "DSpr.");
* `root_acc`: the share of sentences whose least-deep non-punctuation word is the root;
* `nspr`: Spearman correlation of predicted and gold depths per sentence, averaged within
  each length, then over the lengths 5-50 ("NSpr.").

Spearman is over every word (punctuation included), as in H&M's code; a sentence with a
constant gold row (two words) contributes NaN and is left out. `uuas` and `root_acc` are
ratios of per-sentence counts, so each comes with its `(correct, total)` counts per sentence
for the paired bootstrap (probe.analysis.item_scores); the two Spearman averages are not
sums over sentences and carry no interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

SPEARMAN_LENGTHS = (5, 50)  # sentence lengths the Spearman averages cover, both included


def tree_distances(heads: np.ndarray) -> np.ndarray:
    """(n, n) path lengths between every two words of a tree given by its heads."""
    heads = np.asarray(heads)
    n = len(heads)
    adjacent: list[list[int]] = [[] for _ in range(n)]
    for dep, head in enumerate(heads):
        if head >= 0:
            adjacent[dep].append(int(head))
            adjacent[int(head)].append(dep)
    out = np.full((n, n), -1, dtype=np.int64)
    for start in range(n):  # breadth first from every word: n is a sentence
        out[start, start] = 0
        frontier = [start]
        while frontier:
            nxt = []
            for node in frontier:
                for other in adjacent[node]:
                    if out[start, other] < 0:
                        out[start, other] = out[start, node] + 1
                        nxt.append(other)
            frontier = nxt
    if np.any(out < 0):
        raise ValueError("the heads do not form one tree: some words are not connected")
    return out


def tree_depths(heads: np.ndarray) -> np.ndarray:
    """(n,) each word's number of edges from the root (the root: 0)."""
    heads = np.asarray(heads)
    roots = np.flatnonzero(heads < 0)
    if len(roots) != 1:
        raise ValueError(f"a tree has one root; these heads have {len(roots)}")
    return tree_distances(heads)[roots[0]]


def spanning_edges(distances: np.ndarray) -> set[tuple[int, int]]:
    """The edges (i < j) of a minimum spanning tree of a full distance matrix (Prim's,
    ties to the lower index, as H&M's `prims_matrix_to_edges`)."""
    n = len(distances)
    if n < 2:
        return set()
    dist = np.asarray(distances, dtype=np.float64)
    inside = np.zeros(n, dtype=bool)
    inside[0] = True
    best = dist[0].copy()
    parent = np.zeros(n, dtype=np.int64)
    edges = set()
    for _ in range(n - 1):
        candidates = np.where(inside, np.inf, best)
        node = int(np.argmin(candidates))
        edges.add((min(node, int(parent[node])), max(node, int(parent[node]))))
        inside[node] = True
        closer = dist[node] < best
        best = np.where(closer, dist[node], best)
        parent = np.where(closer, node, parent)
    return edges


def uuas_counts(predicted: np.ndarray, gold: np.ndarray, keep: np.ndarray) -> tuple[int, int]:
    """(edges of the predicted MST also in the gold one, gold edges) over the kept words:
    both trees are spanning trees of the kept words (H&M take the gold one as the MST of the
    gold distances too, which is the tree itself when punctuation has no dependents)."""
    kept = np.flatnonzero(keep)
    if len(kept) < 2:
        return 0, 0
    sub = np.ix_(kept, kept)
    pred_edges = spanning_edges(np.asarray(predicted)[sub])
    gold_edges = spanning_edges(np.asarray(gold)[sub])
    return len(pred_edges & gold_edges), len(gold_edges)


def row_spearman(predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of `predicted` with the same row of `gold`
    ((n, m) each; NaN where either row is constant)."""
    a = rankdata(np.asarray(predicted, dtype=np.float64), axis=-1)
    b = rankdata(np.asarray(gold, dtype=np.float64), axis=-1)
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    return out


def length_averaged(values: Sequence[tuple[int, float]]) -> float:
    """The mean over sentence lengths in SPEARMAN_LENGTHS of the mean value per length
    ((length, value) pairs; NaN values left out; NaN when no length is in range)."""
    lo, hi = SPEARMAN_LENGTHS
    by_length: dict[int, list[float]] = {}
    for length, value in values:
        if lo <= length <= hi and not np.isnan(value):
            by_length.setdefault(length, []).append(value)
    if not by_length:
        return float("nan")
    return float(np.mean([np.mean(v) for v in by_length.values()]))


@dataclass(frozen=True)
class TreeScores:
    """One probe's scores on one split: the headline numbers and, for the two ratios, the
    per-sentence (correct, total) counts their intervals resample."""

    scores: dict[str, float]
    counts: dict[str, np.ndarray]  # metric -> (sentences, 2) int64


def distance_scores(
    predicted: Sequence[np.ndarray], heads: Sequence[np.ndarray], keep: Sequence[np.ndarray]
) -> TreeScores:
    """`uuas` and `dspr` of predicted (n, n) distances per sentence, with the gold trees'
    heads and the words UUAS keeps (not punctuation)."""
    counts = np.zeros((len(predicted), 2), dtype=np.int64)
    spearmans: list[tuple[int, float]] = []
    for i, (pred, head, kept) in enumerate(zip(predicted, heads, keep, strict=True)):
        gold = tree_distances(head)
        counts[i] = uuas_counts(pred, gold, kept)
        n = len(head)
        spearmans += [(n, float(r)) for r in row_spearman(pred, gold)]
    total = counts.sum(0)
    uuas = float(total[0] / total[1]) if total[1] else float("nan")
    return TreeScores({"uuas": uuas, "dspr": length_averaged(spearmans)}, {"uuas": counts})


def depth_scores(
    predicted: Sequence[np.ndarray], heads: Sequence[np.ndarray], keep: Sequence[np.ndarray]
) -> TreeScores:
    """`root_acc` and `nspr` of predicted (n,) depths per sentence (the root must be kept:
    a sentence whose root is punctuation, or that keeps no word, is not counted for
    root_acc)."""
    counts = np.zeros((len(predicted), 2), dtype=np.int64)
    spearmans: list[tuple[int, float]] = []
    for i, (pred, head, kept) in enumerate(zip(predicted, heads, keep, strict=True)):
        head, pred, kept = np.asarray(head), np.asarray(pred), np.asarray(kept, dtype=bool)
        root = int(np.flatnonzero(head < 0)[0])
        if kept.any() and kept[root]:
            candidates = np.where(kept, pred, np.inf)
            counts[i] = (int(np.argmin(candidates) == root), 1)
        gold = tree_depths(head)
        spearmans.append((len(head), float(row_spearman(pred[None], gold[None])[0])))
    total = counts.sum(0)
    root_acc = float(total[0] / total[1]) if total[1] else float("nan")
    return TreeScores({"root_acc": root_acc, "nspr": length_averaged(spearmans)},
                      {"root_acc": counts})  # fmt: skip

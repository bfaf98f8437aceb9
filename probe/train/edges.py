"""Edge probing's items: the (head, dependent) word pairs of UD trees, from a word split.

A `deprel-arc` split is cached as words (probe.extract.run.tree_metadata stores each word's
head); its items are the tree's arcs, one per non-root word, labelled with that word's
relation: the pair task of Tenney et al.'s edge probing, with both spans one word. The arcs
are built here from the shard's heads, so the cache stays the word cache every UD task has,
and `probe.train.splits` serves them as `PairData` (head side a, dependent side b) to the
pair heads of the registry.
"""

from __future__ import annotations

import numpy as np


def arc_rows(offsets: np.ndarray, heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(arcs, arc offsets): arcs (n_arcs, 2) the rows of each arc's head and dependent, in
    word order; arc offsets (sentences + 1,), sentence i's arcs at offsets[i]:offsets[i+1].

    `heads` are sentence-local indices, -1 for a root (which heads no arc of its own)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    heads = np.asarray(heads, dtype=np.int64)
    lengths = np.diff(offsets)
    starts = np.repeat(offsets[:-1], lengths)  # each word's sentence start
    dependents = np.flatnonzero(heads >= 0)
    arcs = np.stack([starts[dependents] + heads[dependents], dependents], axis=1)
    sentence = np.repeat(np.arange(len(lengths)), lengths)[dependents]
    counts = np.bincount(sentence, minlength=len(lengths))
    return arcs, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

"""One split as training data (`WordData`, `SequenceData`, `PairData`), checked on arrival.

A container holds one split's per-layer features, labels and (for words and sequences)
offsets, as numpy arrays straight from the feature cache, and is never copied whole; its
`.words()`, `.sentences()` and `.pairs()` methods return the views (`probe.train.views`)
that fix which layers a head reads.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from probe.train.config import LayerArrays, Layers
from probe.train.views import PairView, SentenceView, WordView


def _as_layers(features: LayerArrays, what: str) -> dict[int, np.ndarray]:
    """Normalise features to {layer id: (rows, hidden) array} without copying the data.

    Accepts a (layers, rows, hidden) array, a (rows, hidden) array (one layer, id 0), a
    sequence of (rows, hidden) arrays (ids 0..), or a {layer id: (rows, hidden)} mapping (one
    layer read at a time from the cache, keeping its real id).
    """
    if isinstance(features, Mapping):
        layers = {int(k): np.asarray(v) for k, v in features.items()}
    elif isinstance(features, np.ndarray):
        if features.ndim == 3:
            layers = {i: features[i] for i in range(features.shape[0])}
        elif features.ndim == 2:
            layers = {0: features}
        else:
            raise ValueError(
                f"{what} must be (layers, rows, hidden) or (rows, hidden); "
                f"got shape {features.shape}"
            )
    else:
        layers = {i: np.asarray(a) for i, a in enumerate(features)}
    if not layers:
        raise ValueError(f"{what} holds no layer")
    shapes = {a.shape for a in layers.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every layer of {what} must be one (rows, hidden) array; got {shapes}")
    return layers


def _check_offsets(offsets: np.ndarray, n_rows: int, what: str) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != n_rows:
        raise ValueError(
            f"{what} offsets must be 1-d, start at 0 and end at the row count {n_rows}; got "
            f"{len(offsets)} entries from {offsets[:1].tolist()} to {offsets[-1:].tolist()}"
        )
    if np.any(np.diff(offsets) < 0):
        raise ValueError(f"{what} offsets must be non-decreasing")
    return offsets


def _check_labels(labels: np.ndarray, n: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{what} labels must be {n} integer ids; got {labels.dtype} {labels.shape}"
        )
    return labels.astype(np.int64, copy=False)


def _select(layers: dict[int, np.ndarray], chosen: Layers) -> tuple[tuple[int, ...], bool]:
    """(layer ids, stacked?) for an int (no layer axis) or a sequence (stacked or split)."""
    ids: tuple[int, ...]
    if isinstance(chosen, int | np.integer):
        ids, stacked = (int(chosen),), False
    else:
        ids, stacked = tuple(int(i) for i in chosen), True
        if not ids:
            raise ValueError("select at least one layer")
    missing = [i for i in ids if i not in layers]
    if missing:
        raise ValueError(f"layer(s) {missing} not in this data; it holds layers {sorted(layers)}")
    return ids, stacked


class WordData:
    """One split of a word-level task: per-layer word features, word labels, sentence offsets.

    features: (layers, words, hidden), or (words, hidden) for one layer, or a list of or
        {layer id: array} mapping to (words, hidden) arrays; float16 is fine (kept as is).
    labels: (words,) int ids into the task's label names; -100 marks unscored words.
    offsets: (sentences + 1,) int; sentence i is rows offsets[i]:offsets[i+1].
    """

    def __init__(self, features: LayerArrays, labels: np.ndarray, offsets: np.ndarray) -> None:
        self.layers = _as_layers(features, "word features")
        self.n_words, self.hidden = next(iter(self.layers.values())).shape
        self.labels = _check_labels(labels, self.n_words, "word")
        self.offsets = _check_offsets(offsets, self.n_words, "word")

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return tuple(self.layers)

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    def words(self, layers: Layers) -> WordView:
        """Flat word batches for per-word heads (linear probe: an int; scalar mix: all ids)."""
        ids, stacked = _select(self.layers, layers)
        return WordView(self, ids, stacked)

    def sentences(self, layers: Layers, *, stack: bool = False) -> SentenceView:
        """Padded sentence batches with a mask, one label per word (sentence-structured heads)."""
        ids, stacked = _select(self.layers, layers)
        return SentenceView(self.layers, self.offsets, self.labels, "token", ids, stacked and stack)


class SequenceData:
    """Token features of whole sequences with one label per sequence.

    For sentence-level heads that need tokens (DLFA on a pair's joint encoding): features
    as in `WordData` over all tokens, offsets (sequences + 1,), labels (sequences,).
    """

    def __init__(self, features: LayerArrays, offsets: np.ndarray, labels: np.ndarray) -> None:
        self.layers = _as_layers(features, "token features")
        self.n_tokens, self.hidden = next(iter(self.layers.values())).shape
        self.offsets = _check_offsets(offsets, self.n_tokens, "sequence")
        self.labels = _check_labels(labels, len(self.offsets) - 1, "sequence")
        if np.any(np.diff(self.offsets) == 0):
            raise ValueError("every sequence needs at least one token; found an empty one")

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return tuple(self.layers)

    def sentences(self, layers: Layers, *, stack: bool = False) -> SentenceView:
        """Padded sequence batches with a mask and one label per sequence."""
        ids, stacked = _select(self.layers, layers)
        return SentenceView(
            self.layers, self.offsets, self.labels, "sequence", ids, stacked and stack
        )


class PairData:
    """One split of a sentence-pair task: each side's pooled per-layer vectors and pair labels.

    features_a, features_b: (layers, pairs, hidden) (or the other forms `WordData` takes),
    side A and side B mean-pooled from one joint encoding; labels: (pairs,).
    """

    def __init__(
        self, features_a: LayerArrays, features_b: LayerArrays, labels: np.ndarray
    ) -> None:
        self.layers_a = _as_layers(features_a, "side A features")
        self.layers_b = _as_layers(features_b, "side B features")
        if set(self.layers_a) != set(self.layers_b):
            raise ValueError(
                f"both sides need the same layers; A has {sorted(self.layers_a)}, "
                f"B has {sorted(self.layers_b)}"
            )
        shape_a = next(iter(self.layers_a.values())).shape
        shape_b = next(iter(self.layers_b.values())).shape
        if shape_a != shape_b:
            raise ValueError(f"side A is {shape_a} per layer but side B is {shape_b}")
        self.n_pairs, self.hidden = shape_a
        self.labels = _check_labels(labels, self.n_pairs, "pair")

    @property
    def layer_ids(self) -> tuple[int, ...]:
        return tuple(self.layers_a)

    def pairs(self, layers: Layers) -> PairView:
        """Pair batches (a, b) for pair heads: an int for one layer, ids for a stack."""
        ids, stacked = _select(self.layers_a, layers)
        return PairView(self, ids, stacked)

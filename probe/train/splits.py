"""Cached splits as training data: open, hold out a dev set, subset whole sentences, views.

Every experiment that trains heads on the cache (layers, grid, ...) reads splits this way, so
the source/dev/eval conventions of a task are applied in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.cache import SplitReader
from probe.data.holdout import holdout, premise_groups
from probe.data.subsets import sample_sentences
from probe.data.tasks import Task
from probe.train import PairData, SequenceData, WordData
from probe.train.edges import arc_rows


@dataclass
class CachedSplit:
    """A split's reader plus what every layer shares (labels, offsets), read once.

    `rows` (None = all) index the reader's full arrays; labels and offsets always describe
    the selected rows themselves; `items` (None = all) are the reader's sentences or pairs
    the split keeps (what `subset_ids` records). A pair's token view (`item_labels`) has
    offsets over its tokens but one label per pair.
    """

    reader: SplitReader
    labels: np.ndarray
    offsets: np.ndarray | None
    rows: np.ndarray | None = None
    items: np.ndarray | None = None
    item_labels: bool = False  # labels per item (a token view's pairs), not per row
    # Edge tasks (`Task.edges`): the (head, dependent) reader rows of every arc; labels and
    # offsets then describe arcs (per sentence) and `rows` index this array.
    arcs: np.ndarray | None = None

    @property
    def pairs(self) -> bool:
        """Items are pairs (pooled or as tokens): budgets count pairs, hold-outs keep
        premise groups together."""
        return self.offsets is None or self.item_labels


def opener(root: Path, key: str, task: Task) -> Callable[[str, str], CachedSplit]:
    def open_split(lang: str, split: str) -> CachedSplit:
        reader = SplitReader.open(root, key, task.name, lang, split)
        if task.edges:
            return edge_split(reader)
        tokens = task.level == "pair-tokens"
        offsets = reader.offsets if task.level == "word" or tokens else None
        return CachedSplit(reader, reader.labels.astype(np.int64), offsets, item_labels=tokens)

    return open_split


def edge_split(reader: SplitReader) -> CachedSplit:
    """A UD word split as edge-probing items (probe.train.edges): one per arc of each
    sentence's tree, labelled with its dependent's label, offsets per sentence."""
    arcs, offsets = arc_rows(reader.offsets, reader.heads)
    labels = reader.labels.astype(np.int64)[arcs[:, 1]]
    return CachedSplit(reader, labels, offsets, arcs=arcs)


def train_dev(
    task: Task,
    open_split: Callable[[str, str], CachedSplit],
    source: str,
    max_train_words: int | None,
    dev_fraction: float,
    seed: int,
) -> tuple[CachedSplit, CachedSplit]:
    """The source's training split and its dev split, or a seeded hold-out
    (`probe.data.holdout`) of its sentences or whole premise groups of pairs.

    `max_train_words` (pairs for pair tasks) keeps a seeded, genre-stratified random sample
    of whole sentences (`probe.data.subsets.sample_sentences`, seed `seed`): the sample
    extraction draws for a request with the same cap, so on a capped extraction this keeps
    everything, and on a full one it picks the same sentences.
    """
    train = open_split(source, task.training_split())
    if max_train_words:
        train = subset(train, sample_split(train, max_train_words, seed))
    if task.dev_split:
        dev = open_split(source, task.dev_split)
    else:
        what = "source pairs" if train.pairs else "source sentences"
        groups = premise_groups(item_strings(train, "text_a")) if train.pairs else None
        train_items, dev_items = holdout(n_items(train), dev_fraction, seed, what, groups)
        train, dev = subset(train, train_items), subset(train, dev_items)
    return train, dev


def train_caps(task: Task, max_train_words: int | None) -> tuple[tuple[str, int], ...]:
    """`ExtractRequest.split_caps` for a run that trains with `max_train_words`: extraction
    then encodes only the sample `train_dev` keeps (pass the same seed as the request's)."""
    return ((task.training_split(), max_train_words),) if max_train_words else ()


def sample_split(split: CachedSplit, budget: int, seed: int) -> np.ndarray:
    """Local item indices of the split's seeded sample of at most `budget` words (pairs)."""
    sizes = None if split.pairs or split.offsets is None else np.diff(split.offsets)
    if split.arcs is not None:  # the words of each sentence, as extraction sampled them
        words = np.diff(split.reader.offsets)
        sizes = words if split.items is None else words[split.items]
    return sample_sentences(item_strings(split, "sentence_ids"), budget, seed, sizes)


def item_strings(split: CachedSplit, name: str) -> list[str]:
    """A per-item string dataset (`sentence_ids`, `text_a`) of the items the split keeps."""
    every = split.reader.strings(name)
    return every if split.items is None else [every[i] for i in split.items]


def subset_ids(split: CachedSplit) -> list[str]:
    """The sentence (pair) ids a split keeps, in file order: what subsets.json records."""
    return item_strings(split, "sentence_ids")


def n_items(split: CachedSplit) -> int:
    return len(split.offsets) - 1 if split.offsets is not None else len(split.labels)


def subset(split: CachedSplit, items: np.ndarray) -> CachedSplit:
    """Keep whole sentences (word tasks) or pairs; `rows` index the reader's full arrays and
    labels/offsets always describe the subset itself."""
    if split.offsets is None:
        local = items
        offsets = None
    else:
        starts, stops = split.offsets[items], split.offsets[items + 1]
        local = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
        offsets = np.concatenate([[0], np.cumsum(stops - starts)]).astype(np.int64)
    rows = local if split.rows is None else split.rows[local]
    kept = items if split.items is None else split.items[items]
    labels = split.labels[items] if split.item_labels else split.labels[local]
    return CachedSplit(split.reader, labels, offsets, rows, kept, split.item_labels, split.arcs)


def layer_array(split: CachedSplit, layer: int, name: str | None = None) -> np.ndarray:
    data = split.reader.layer(layer, name)
    return data if split.rows is None else data[split.rows]


def as_data(
    task: Task, split: CachedSplit, layers: list[int], labels: np.ndarray | None = None
) -> Any:
    y = split.labels if labels is None else labels
    if split.arcs is not None:  # edge probing: head side a, dependent side b
        arcs = split.arcs if split.rows is None else split.arcs[split.rows]
        every = {layer: split.reader.layer(layer) for layer in layers}
        heads = {layer: every[layer][arcs[:, 0]] for layer in layers}
        return PairData(heads, {layer: every[layer][arcs[:, 1]] for layer in layers}, y)
    if task.level == "pair-tokens":
        assert split.offsets is not None, "token views always carry offsets"
        return SequenceData({layer: layer_array(split, layer) for layer in layers}, split.offsets,
                            y)  # fmt: skip
    if task.level == "word":
        assert split.offsets is not None, "word splits always carry offsets"
        feats = {layer: layer_array(split, layer) for layer in layers}
        return WordData(feats, y, split.offsets)
    a = {layer: layer_array(split, layer, "sentence_features") for layer in layers}
    b = {layer: layer_array(split, layer, "sentence_features_b") for layer in layers}
    return PairData(a, b, y)


def as_view(task: Task, data: Any, layers: int | list[int]) -> Any:
    return data.words(layers) if task.probe_level == "word" else data.pairs(layers)

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
from probe.data.holdout import holdout
from probe.data.tasks import Task
from probe.train import PairData, WordData


@dataclass
class CachedSplit:
    """A split's reader plus what every layer shares (labels, offsets), read once.

    `rows` (None = all) index the reader's full arrays; labels and offsets always describe
    the selected rows themselves.
    """

    reader: SplitReader
    labels: np.ndarray
    offsets: np.ndarray | None
    rows: np.ndarray | None = None


def opener(root: Path, key: str, task: Task) -> Callable[[str, str], CachedSplit]:
    def open_split(lang: str, split: str) -> CachedSplit:
        reader = SplitReader.open(root, key, task.name, lang, split)
        offsets = reader.offsets if task.level == "word" else None
        return CachedSplit(reader, reader.labels.astype(np.int64), offsets)

    return open_split


def train_dev(
    task: Task,
    open_split: Callable[[str, str], CachedSplit],
    source: str,
    max_train_words: int | None,
    dev_fraction: float,
    seed: int,
) -> tuple[CachedSplit, CachedSplit]:
    """The source's training split (capped at whole sentences) and its dev split, or a seeded
    hold-out (`probe.data.holdout`) of its sentences or pairs."""
    train = open_split(source, task.train_split)
    if max_train_words and train.offsets is not None:
        keep = int(np.searchsorted(train.offsets, max_train_words, side="right")) - 1
        train = subset(train, np.arange(max(1, keep)))
    elif max_train_words:
        train = subset(train, np.arange(min(n_items(train), max_train_words)))
    if task.dev_split:
        dev = open_split(source, task.dev_split)
    else:
        what = "source sentences" if train.offsets is not None else "source pairs"
        train_items, dev_items = holdout(n_items(train), dev_fraction, seed, what)
        train, dev = subset(train, train_items), subset(train, dev_items)
    return train, dev


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
    return CachedSplit(split.reader, split.labels[local], offsets, rows)


def layer_array(split: CachedSplit, layer: int, name: str | None = None) -> np.ndarray:
    data = split.reader.layer(layer, name)
    return data if split.rows is None else data[split.rows]


def as_data(
    task: Task, split: CachedSplit, layers: list[int], labels: np.ndarray | None = None
) -> Any:
    y = split.labels if labels is None else labels
    if task.level == "word":
        assert split.offsets is not None, "word splits always carry offsets"
        feats = {layer: layer_array(split, layer) for layer in layers}
        return WordData(feats, y, split.offsets)
    a = {layer: layer_array(split, layer, "sentence_features") for layer in layers}
    b = {layer: layer_array(split, layer, "sentence_features_b") for layer in layers}
    return PairData(a, b, y)


def as_view(task: Task, data: Any, layers: int | list[int]) -> Any:
    return data.words(layers) if task.level == "word" else data.pairs(layers)

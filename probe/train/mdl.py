"""MDL probing: the online code length of a split's labels given one layer's cached features.

`online_code` follows Voita & Titov (2020) as their release runs it
(lena-voita/description-length-probing, control_tasks/run_experiment.py and regimen.py):

* the training examples are put in one seeded random order (`seed`);
* timesteps at 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25, 50 and 100 % of them
  (`probe.analysis.mdl.VOITA_FRACTIONS`); the first block is sent with the uniform code;
* for each next block a *fresh* probe (re-initialised, as their loop builds `probe_class(args)`
  anew per portion) is trained on everything before the block, early-stopped on the loss of
  the whole standard dev set with its best-dev-loss weights restored, and the block is sent
  with that probe's code, sum of -log2 p(y | x).

Where this differs, and why: the probe is whatever `make_head` builds (Voita & Titov's
control-task runs used Hewitt & Liang's MLP; `probe layers` passes its linear probe, so code
length and accuracy describe the same probe); training is `probe.train.fit` (AdamW, dev-loss
patience, `config`) rather than Adam with a plateau schedule. For word tasks the blocks are cut
on whole sentences: a sentence's words are ordered together and each timestep, a fraction of
the labelled *words*, moves to the nearest sentence boundary (`sentence_block_ends`); their
release also shuffles and cuts sentences, but by sentence count. Unlabelled words (-100) are
carried along and cost nothing. Pair tasks cut on pairs.

Batches: with the default 2048-word batch every probe up to 2048 words takes one optimiser
step per epoch, and even the 10k-word one only five, so they stop far from their optimum: a
longer code that measures the recipe, not the layer. Each block's batch is therefore shrunk to
give at least `_MIN_STEPS` steps per epoch (never below `_MIN_BATCH` items, never above
`config.batch_size`); the epoch cap and patience stay `config`'s. Measured on me5-small layer
12, English POS, 20,390 training words: 24.1 kbits with the plain batch, 22.5 / 18.7 / 18.65 /
18.8 kbits at 3 / 30 / 50 / 100 steps per epoch, so 30.

Speed: the split is reordered once per call (one copy of the layer); every prefix and block is
a view of it. All 13 layers of that sample (10 probes each, dev = 15.8k words) take 24 s on
2 CPU cores with the linear probe and the default `TrainConfig`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from torch import nn

from probe.analysis.mdl import VOITA_FRACTIONS, OnlineCode, codelength, sentence_block_ends
from probe.analysis.metrics import IGNORE_INDEX
from probe.errors import ProbeError
from probe.train.config import TrainConfig
from probe.train.data import PairData, WordData
from probe.train.loop import DEFAULT_TRAINING, fit, predict_proba
from probe.train.views import Feed

log = logging.getLogger(__name__)

# Fewest optimiser steps per epoch a block's probe gets, and the smallest batch that buys them
# (see the module docstring).
_MIN_STEPS = 30
_MIN_BATCH = 32

Split = WordData | PairData


def online_code(
    train: Split,
    dev: Split,
    n_classes: int,
    make_head: Callable[[], nn.Module],
    config: TrainConfig = DEFAULT_TRAINING,
    seed: int = 0,
    *,
    layer: int | None = None,
    fractions: Sequence[float] = VOITA_FRACTIONS,
) -> OnlineCode:
    """The online code length of `train`'s labels given its features at `layer`.

    train, dev: one split each (`WordData` for word tasks, `PairData` for pair tasks), as
        `probe.train.splits.as_data(task, split, [layer])` builds them; dev early-stops every
        block's probe and is never transmitted.
    n_classes: K, the task's label count (the uniform code is log2 K bits per label).
    make_head: a zero-argument factory of a fresh head (`lambda: LinearProbe(hidden, K)`),
        called once per block inside `fit`'s seeded RNG.
    config: how each probe trains (its seed initialises the probes); seed: orders examples.
    layer: the layer to read; None means the only layer the split holds.
    """
    if type(train) is not type(dev) or not isinstance(train, WordData | PairData):
        raise ProbeError(f"online_code needs train and dev of one kind (WordData or PairData); "
                         f"got {type(train).__name__} and {type(dev).__name__}")  # fmt: skip
    if n_classes < 2:
        raise ProbeError(f"MDL needs at least two classes, got n_classes={n_classes}")
    chosen = _layer(train, layer)
    _layer(dev, chosen)
    labels = train.labels
    labelled = labels[labels != IGNORE_INDEX]
    if labelled.size and (labelled.min() < 0 or labelled.max() >= n_classes):
        raise ProbeError(f"train labels span {labelled.min()}..{labelled.max()}, outside the "
                         f"{n_classes} classes given")  # fmt: skip
    began = time.perf_counter()
    ordered = _Ordered.of(train, chosen, seed)
    ends = sentence_block_ends(ordered.sizes, fractions)  # in sentences (pairs)
    dev_feed = _feed(dev, chosen)
    later: list[float] = []
    for i in range(len(ends) - 1):
        prefix, block = ordered.part(0, ends[i]), ordered.part(ends[i], ends[i + 1])
        n_rows = _rows(prefix)
        steps_batch = max(_MIN_BATCH, math.ceil(n_rows / _MIN_STEPS))
        block_config = replace(config, batch_size=min(config.batch_size, steps_batch))
        result = fit(make_head, _feed(prefix, chosen), dev_feed, block_config)
        probs = predict_proba(result.head, _feed(block, chosen))
        later.append(codelength(probs, block.labels))
        log.debug("MDL layer %d block %d: trained on %d rows (%d epochs), %.1f bits for %d rows",
                  chosen, i + 2, n_rows, result.epochs_run, later[-1], _rows(block))  # fmt: skip
    code = OnlineCode.from_blocks([ordered.labelled_ends[e] for e in ends], later, n_classes)
    log.info("MDL layer %d: online %.2f kbits, uniform %.2f kbits, compression %.2f, %.1fs",
             chosen, code.online_kbits, code.uniform_kbits, code.compression,
             time.perf_counter() - began)  # fmt: skip
    return code


def _layer(split: Split, layer: int | None) -> int:
    ids = split.layer_ids
    if layer is None:
        if len(ids) != 1:
            raise ProbeError(f"the split holds layers {list(ids)}; pass layer= to choose one")
        return ids[0]
    if layer not in ids:
        raise ProbeError(f"layer {layer} is not in the split; it holds layers {list(ids)}")
    return layer


def _feed(split: Split, layer: int) -> Feed:
    return split.words(layer) if isinstance(split, WordData) else split.pairs(layer)


def _rows(split: Split) -> int:
    return split.n_words if isinstance(split, WordData) else split.n_pairs


class _Ordered:
    """One layer of a split in transmission order: sentences (pairs) permuted once, so each
    prefix and block is a slice (a view) of these arrays.

    sizes: labelled items per sentence (pair); labelled_ends[k]: labelled items in the first k.
    """

    def __init__(self, split: Split, layer: int, order: np.ndarray) -> None:
        self.kind = type(split)
        if isinstance(split, WordData):
            offsets = split.offsets
            lengths = np.diff(offsets)[order]
            starts = offsets[:-1][order]
            new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            # Row r of the new order is word (r - new start) of its sentence's old start.
            rows = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
            self.features = np.take(split.layers[layer], rows, axis=0)
            self.features_b: np.ndarray | None = None
            self.labels = split.labels[rows]
            self.offsets = new_offsets
        else:
            self.features = np.take(split.layers_a[layer], order, axis=0)
            self.features_b = np.take(split.layers_b[layer], order, axis=0)
            self.labels = split.labels[order]
            self.offsets = np.arange(len(order) + 1, dtype=np.int64)
        self.layer = layer
        counted = np.concatenate([[0], np.cumsum(self.labels != IGNORE_INDEX)])
        self.sizes = counted[self.offsets[1:]] - counted[self.offsets[:-1]]
        self.labelled_ends = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @classmethod
    def of(cls, split: Split, layer: int, seed: int) -> _Ordered:
        n = split.n_sentences if isinstance(split, WordData) else split.n_pairs
        return cls(split, layer, np.random.default_rng(seed).permutation(n))

    def part(self, start: int, stop: int) -> Split:
        """Sentences (pairs) [start, stop) as a split of their own, holding views."""
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        labels = self.labels[a:b]
        if self.kind is WordData:
            offsets = self.offsets[start : stop + 1] - a
            return WordData({self.layer: self.features[a:b]}, labels, offsets)
        assert self.features_b is not None
        return PairData({self.layer: self.features[a:b]}, {self.layer: self.features_b[a:b]},
                        labels)  # fmt: skip

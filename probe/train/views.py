"""Views of a split laid out for one head: the `Feed` protocol, `Batch`, and how batches are cut.

A view (`WordData.words(...)`, `.sentences(...)`, `PairData.pairs(...)`) fixes which layers a
head reads and how they are laid out, and is what `fit` and `predict_proba` consume. The loop
calls `head(*batch.inputs)`; what `inputs` holds is decided by the view:

    view                                   inputs                          labels
    WordData.words(7)                      x (B, H)                        (B,)
    WordData.words((0, ..., 12))           x (B, k, H)  layers stacked     (B,)
    WordData.sentences((12, 8))            h12 (B, T, H), h8 (B, T, H),    (B, T), -100 at
                                           mask (B, T) bool                padding
    WordData.sentences(layers, stack=True) x (B, T, k, H), mask (B, T)     (B, T)
    SequenceData.sentences((12, 8))        as WordData.sentences           (B,) one per sequence
    PairData.pairs(7)                      a (B, H), b (B, H)              (B,)
    PairData.pairs((0, ..., 12))           a (B, k, H), b (B, k, H)        (B,)

An int selects one layer with no layer axis; a sequence selects layers in the order given.
Heads return logits shaped like the labels plus a class axis; labels of -100 (padding, or
words without a label) are ignored by the loss.

Data stay numpy until a batch is cut: each batch gathers its rows, moves them to the device
(pinned, non-blocking on CUDA) and only then becomes float32, so a float16 cache is never
copied whole.

`batch_size` counts words (tokens) for word and sentence views, whatever the label level:
a sentence batch takes whole sentences of similar length until it holds about that many
padded positions, so one learning rate behaves alike across views; it counts pairs for pair
views.
Stacked inputs are views of layer-first memory (not contiguous), which makes a scalar mix
one matrix-vector product; a head that needs contiguous memory calls `.contiguous()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from probe.analysis.metrics import IGNORE_INDEX

if TYPE_CHECKING:  # data.py imports this module to build its views
    from probe.train.data import PairData, WordData


@dataclass(frozen=True)
class Batch:
    """One mini-batch on the device: the head's positional inputs and the labels to score.

    mask: (B, T) bool marking real tokens of a padded sentence batch (also the last entry
    of `inputs`), None for flat batches; `predict_proba` uses it to drop padded positions.
    """

    inputs: tuple[Tensor, ...]
    labels: Tensor
    mask: Tensor | None = None
    # Data-order indices of the items this batch predicts (after the mask), when the view
    # reorders items (length-sorted sentence batches); None means "next in data order".
    items: np.ndarray | None = None


@runtime_checkable
class Feed(Protocol):
    """A view of one split laid out for one head: what `fit` and `predict_proba` consume."""

    @property
    def n_items(self) -> int:
        """Rows `predict_proba` returns: words, pairs or sequences."""
        ...

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None, device: torch.device
    ) -> Iterator[Batch]:
        """Mini-batches in data order (generator None) or shuffled by the generator."""
        ...


def _to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """numpy -> tensor on `device`; float16 becomes float32 there, per batch."""
    t = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t.float() if t.is_floating_point() else t


def _order(n: int, generator: torch.Generator | None) -> np.ndarray:
    if generator is None:
        return np.arange(n)
    return torch.randperm(n, generator=generator).numpy()


def _row_batches(
    n: int, batch_size: int, generator: torch.Generator | None
) -> Iterator[np.ndarray]:
    """Row indices per batch, sorted within a batch for memory locality (a set is a set)."""
    order = _order(n, generator)
    for start in range(0, n, batch_size):
        yield np.sort(order[start : start + batch_size])


def _gather(layers: dict[int, np.ndarray], ids: tuple[int, ...], rows: np.ndarray) -> np.ndarray:
    """The chosen rows of the chosen layers as one (k, rows, H) array, layer axis first.

    Layer-first keeps each layer's rows one contiguous block: filling it is k plain gathers,
    and a scalar mix over a layer-first buffer is one matrix-vector product.
    """
    first = layers[ids[0]]
    out = np.empty((len(ids), len(rows), first.shape[1]), dtype=first.dtype)
    for j, i in enumerate(ids):
        # Rows are in range by construction; mode="clip" lets numpy write into `out` unbuffered.
        np.take(layers[i], rows, axis=0, out=out[j], mode="clip")
    return out


def _layer_tensors(stack: np.ndarray, stacked: bool, device: torch.device) -> tuple[Tensor, ...]:
    """(k, ..., H) numpy -> one (..., k, H) tensor (a view, layer axis moved) or k (..., H)."""
    t = _to_device(stack, device)
    return (t.movedim(0, -2),) if stacked else tuple(t.unbind(0))


@dataclass(frozen=True)
class WordView:
    """Flat word mini-batches: inputs (x,) with x (B, H) or (B, k, H); labels (B,)."""

    data: WordData
    layers: tuple[int, ...]
    stacked: bool

    @property
    def n_items(self) -> int:
        return self.data.n_words

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None, device: torch.device
    ) -> Iterator[Batch]:
        for rows in _row_batches(self.data.n_words, batch_size, generator):
            stack = _gather(self.data.layers, self.layers, rows)
            yield Batch(
                _layer_tensors(stack, self.stacked, device),
                _to_device(self.data.labels[rows], device),
            )


@dataclass(frozen=True)
class PairView:
    """Pair mini-batches: inputs (a, b), each (B, H) or (B, k, H); labels (B,)."""

    data: PairData
    layers: tuple[int, ...]
    stacked: bool

    @property
    def n_items(self) -> int:
        return self.data.n_pairs

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None, device: torch.device
    ) -> Iterator[Batch]:
        for rows in _row_batches(self.data.n_pairs, batch_size, generator):
            # Unstacked means one layer, so either way each side is a single tensor.
            (a,) = _layer_tensors(
                _gather(self.data.layers_a, self.layers, rows), self.stacked, device
            )
            (b,) = _layer_tensors(
                _gather(self.data.layers_b, self.layers, rows), self.stacked, device
            )
            yield Batch(
                (a, b),
                _to_device(self.data.labels[rows], device),
            )


@dataclass(frozen=True, eq=False)
class SentenceView:
    """Padded sentence mini-batches with a (B, T) bool mask of real tokens.

    inputs: one (B, T, H) tensor per chosen layer then the mask, or with `stack` one
    (B, T, k, H) tensor then the mask. labels: (B, T) with -100 at padding ("token"
    labels) or (B,) ("sequence" labels). Empty sentences are skipped: they hold no word.
    """

    layers_by_id: dict[int, np.ndarray] = field(repr=False)
    offsets: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    label_level: Literal["token", "sequence"]
    layers: tuple[int, ...]
    stacked: bool

    @property
    def n_items(self) -> int:
        return int(self.offsets[-1]) if self.label_level == "token" else len(self.offsets) - 1

    def _groups(self, batch_size: int, generator: torch.Generator | None) -> Iterator[np.ndarray]:
        """Sentence ids per batch: whole sentences, about `batch_size` padded positions each.

        Sentences of similar length share a batch, so little compute goes to padding (a
        random batch of UD sentences is mostly padding): for prediction all sentences are
        sorted by length; for training the shuffled order is cut into pools of ~50
        batches, each pool sorted by length and cut, and the batches shuffled again. A batch
        closes before its sentences times its longest sentence would pass `batch_size`
        (a sentence longer than that is a batch of its own), so a large prediction batch
        never pads many short sentences to the longest one.
        """
        lengths = np.diff(self.offsets)
        if generator is None:
            pools = [np.argsort(lengths, kind="stable")]
        else:
            order = _order(len(lengths), generator)
            pool_id = (np.cumsum(lengths[order]) - lengths[order]) // (batch_size * 50)
            pools = [p[np.argsort(lengths[p], kind="stable")]
                     for p in np.split(order, np.flatnonzero(np.diff(pool_id)) + 1)]  # fmt: skip
        groups: list[np.ndarray] = []
        for pool in pools:
            pool = pool[lengths[pool] > 0]
            start = 0
            for i, width in enumerate(lengths[pool].tolist()):  # ascending: width is the max
                if i > start and (i - start + 1) * width > batch_size:
                    groups.append(pool[start:i])
                    start = i
            if start < len(pool):
                groups.append(pool[start:])
        if generator is not None:
            groups = [groups[i] for i in torch.randperm(len(groups), generator=generator)]
        yield from groups

    def batches(
        self, batch_size: int, *, generator: torch.Generator | None, device: torch.device
    ) -> Iterator[Batch]:
        for sent in self._groups(batch_size, generator):
            start, length = self.offsets[sent], self.offsets[sent + 1] - self.offsets[sent]
            width = int(length.max())
            mask = np.arange(width)[None, :] < length[:, None]  # (B, T)
            rows = (start[:, None] + np.arange(width)[None, :])[mask]  # real words, row-major
            # A layer named twice (the grid's (last, last) baseline) is gathered once and
            # handed out as the same tensor, which lets DLFA skip a gate that cannot act.
            unique = tuple(dict.fromkeys(self.layers))
            words = _gather(self.layers_by_id, unique, rows)  # (k, real words, H)
            padded = np.zeros((len(words), len(sent), width, words.shape[-1]), dtype=words.dtype)
            padded[:, mask] = words
            if self.label_level == "token":
                labels = np.full((len(sent), width), IGNORE_INDEX, dtype=np.int64)
                labels[mask] = self.labels[rows]
            else:
                labels = self.labels[sent]
            mask_t = _to_device(mask, device)
            tensors = _layer_tensors(padded, self.stacked, device)
            if not self.stacked and unique != self.layers:
                tensors = tuple(tensors[unique.index(i)] for i in self.layers)
            elif unique != self.layers:
                (stack,) = tensors  # (B, T, k, H): repeat layers along the layer axis
                tensors = (stack[:, :, [unique.index(i) for i in self.layers]],)
            yield Batch(
                (*tensors, mask_t),
                _to_device(labels, device),
                mask_t,
                rows if self.label_level == "token" else sent,
            )

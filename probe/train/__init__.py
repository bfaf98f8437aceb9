"""One training loop for every head on cached features: data views, batches, `fit`, `predict_proba`.

Data arrive as numpy arrays from the feature cache and stay numpy until a batch is cut:
each batch gathers its rows, moves them to the device (pinned, non-blocking on CUDA) and
only then becomes float32, so a float16 cache is never copied whole.

A data container (`WordData`, `PairData`, `SequenceData`) holds one split. A *view* of it
(`.words(...)`, `.sentences(...)`, `.pairs(...)`) fixes which layers a head reads and how they
are laid out, and is what `fit` and `predict_proba` consume. The loop calls
`head(*batch.inputs)`; what `inputs` holds is decided by the view:

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

`batch_size` counts words (tokens) for word and sentence views, whatever the label level:
a sentence batch takes whole sentences of similar length until it holds about that many
padded positions, so one learning rate behaves alike across views; it counts pairs for pair
views.
Stacked inputs are views of layer-first memory (not contiguous), which makes a scalar mix
one matrix-vector product; a head that needs contiguous memory calls `.contiguous()`.

Early stopping watches the dev *loss* (mean cross-entropy over labelled dev items), not the
task metric: the loss is smooth and defined the same way for every head and task, whereas
entity F1 on a small dev set moves in coarse steps and says nothing about confidence; and
restoring the lowest-loss weights gives the best-calibrated probabilities, which matters
because every score also reports ECE.

Determinism: `fit` runs inside a forked RNG seeded with `config.seed` (so the caller's global
RNG is untouched), shuffles with its own `torch.Generator`, and enables
`torch.use_deterministic_algorithms` (warn-only) for its duration. Pass the head as a
zero-argument factory (`fit(lambda: LinearProbe(384, 17), ...)`) to have its initialisation
seeded too; a head passed as a module keeps the initialisation it was built with.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.analysis.metrics import IGNORE_INDEX
from probe.errors import ProbeError
from probe.runtime.precision import autocast, cpu_threads, pick_compute_dtype

log = logging.getLogger(__name__)

LayerArrays = np.ndarray | Sequence[np.ndarray] | Mapping[int, np.ndarray]
EVAL_BATCH = 1024  # see TrainConfig.eval_batch_size
Layers = int | Sequence[int]


# --- configuration and results ------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """How one head is trained. Defaults fit a linear probe on 25k words in 1-3 s on one CPU."""

    lr: float = 1e-2
    batch_size: int = 2048  # words (word and sentence views) or pairs (pair views) per step
    max_epochs: int = 30
    patience: int = 3  # epochs without a dev-loss improvement of min_delta before stopping
    weight_decay: float = 0.0  # AdamW decoupled decay on weight matrices only
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    min_delta: float = 1e-4
    # Items (words, padded positions or pairs) per evaluation batch. Small on purpose: a
    # batch whose tensors fit in the CPU caches and below the allocator's mmap threshold ran
    # 2-6x faster than 8192 (DLFA dev loss 8.5 vs 53 ms, scalar-mix prediction 80 vs 330 ms
    # on 25k words, one thread); a GPU run gains from larger ones.
    eval_batch_size: int = EVAL_BATCH
    # Intra-op CPU threads while fitting (restored afterwards); None keeps torch's setting.
    # 1 by default: probe heads are small, so OpenMP start-up and, worse, threads spinning on
    # a busy or shared machine cost more than they save (on a loaded 2-core box a probe ran
    # ~50x slower with 2 threads than with 1). Raise it for a large head on an idle CPU.
    threads: int | None = 1
    # "constant" keeps `lr`; "linear" lowers it each epoch, lr * (1 - (epoch - 1) / max_epochs),
    # so a fixed epoch budget ends converged instead of cut off mid-descent.
    schedule: Literal["constant", "linear"] = "constant"
    # Matrix products of the head: "float32", "bfloat16", or "auto" = bfloat16 where the
    # hardware runs it natively (CUDA, CPUs with AVX512-BF16/AMX), else float32. Weights,
    # optimizer state and the loss stay float32. DLFA trains with "auto" (its bottleneck
    # matmuls dominate; ~1.3x faster epochs on an AVX512-BF16 CPU, same dev accuracy);
    # a linear probe's one small matmul gains nothing, so the default stays exact.
    precision: Literal["auto", "float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ProbeError(
                    f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}"
                )
        if not self.lr > 0:
            raise ProbeError(f"TrainConfig.lr must be positive, got {self.lr}")
        if self.patience < 1:
            raise ProbeError(f"TrainConfig.patience must be at least 1, got {self.patience}")
        if self.threads is not None and self.threads < 1:
            raise ProbeError(f"TrainConfig.threads must be at least 1 or None, got {self.threads}")
        if self.weight_decay < 0 or self.min_delta < 0:
            raise ProbeError("TrainConfig.weight_decay and min_delta must be non-negative")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ProbeError(
                f"TrainConfig.precision must be 'auto', 'float32' or 'bfloat16', "
                f"got {self.precision!r}"
            )
        if self.schedule not in ("constant", "linear"):
            raise ProbeError(
                f"TrainConfig.schedule must be 'constant' or 'linear', got {self.schedule!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ProbeError(
                f"TrainConfig.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}"
            )


@dataclass(frozen=True)
class EpochLog:
    """One epoch's numbers: mean train loss, and dev loss/accuracy when a dev set was given."""

    epoch: int
    train_loss: float
    dev_loss: float | None
    dev_accuracy: float | None
    seconds: float


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What `fit` did. `head` holds the trained head with the best dev-loss weights restored."""

    head: nn.Module
    best_epoch: int  # 1-based; the last epoch when there was no dev set
    epochs_run: int
    best_dev_loss: float | None
    stopped_early: bool
    seconds: float
    device: str
    history: tuple[EpochLog, ...] = field(default_factory=tuple)


# --- data ---------------------------------------------------------------------------------


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


# --- the loop -----------------------------------------------------------------------------


def resolve_device(spec: str) -> torch.device:
    """Map "auto" to CUDA when present, else CPU; "cuda" without a GPU is an error, no fallback."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cuda" and not torch.cuda.is_available():
        raise ProbeError("device 'cuda' was asked for but no GPU is visible; use 'auto' or 'cpu'")
    return torch.device(spec)


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed a forked RNG and switch on deterministic algorithms, restoring both afterwards."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
        # cuBLAS needs this for deterministic matmuls; read when the handle is created.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    was_on = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        if devices:
            torch.manual_seed(seed)  # CPU and CUDA generators
        else:
            torch.default_generator.manual_seed(seed)  # leave CUDA's RNG alone on a CPU run
        _set_deterministic(True, warn_only=True)
        try:
            yield
        finally:
            _set_deterministic(was_on, warn_only=was_warn)


def _set_deterministic(mode: bool, *, warn_only: bool) -> None:
    """`torch.use_deterministic_algorithms` without its first-call import of torch._inductor.

    The public function also sets a flag of the inductor compiler, importing it to do so: 2-4
    s per process on a 2-core CPU, more than a whole linear probe, paid again by every grid
    worker. `fit` never compiles, so only the eager flag matters; set it directly when
    inductor is not loaded (if it is, the public call costs nothing and keeps both in step).
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        setter(mode, warn_only=warn_only)


def _loss_sum(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy over labelled items and their count (labels -100 are skipped)."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"head returned logits {tuple(logits.shape)} for labels {tuple(labels.shape)}; "
            "logits must be the label shape plus a class axis (is the head right for this view?)"
        )
    flat = logits.reshape(-1, logits.shape[-1]).float()
    target = labels.reshape(-1)
    loss = F.cross_entropy(flat, target, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, (target != IGNORE_INDEX).sum()


def _head_device(head: nn.Module) -> torch.device:
    param = next(head.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def evaluate(
    head: nn.Module, data: Feed, *, batch_size: int = EVAL_BATCH, precision: str = "float32"
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the labelled items of `data`, in eval mode."""
    device = _head_device(head)
    compute = pick_compute_dtype(precision, device)
    was_training = head.training
    head.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = torch.zeros((), device=device, dtype=torch.int64)
    try:
        with torch.inference_mode(), autocast(device, compute):
            for batch in data.batches(batch_size, generator=None, device=device):
                logits = head(*batch.inputs)
                batch_loss, batch_count = _loss_sum(logits, batch.labels)
                loss += batch_loss
                count += batch_count
                keep = batch.labels != IGNORE_INDEX
                correct += (logits.argmax(-1)[keep] == batch.labels[keep]).sum()
    finally:
        head.train(was_training)
    total = int(count)
    if total == 0:
        raise ValueError("cannot evaluate: the data has no labelled item (every label is -100)")
    return float(loss) / total, int(correct) / total


def predict_proba(
    head: nn.Module, data: Feed, *, batch_size: int = EVAL_BATCH, precision: str = "float32"
) -> np.ndarray:
    """Class probabilities per item, (n_items, classes) float32, in data order.

    Items are words for word and token-labelled sentence views (padding dropped), pairs for
    pair views, sequences for sequence views. Runs on the head's device, in eval mode, with
    matrix products in `precision` ("auto" as in `TrainConfig`).
    """
    device = _head_device(head)
    compute = pick_compute_dtype(precision, device)
    was_training = head.training
    head.eval()
    chunks: list[Tensor] = []
    items: list[np.ndarray] = []
    try:
        with torch.inference_mode(), autocast(device, compute):
            for batch in data.batches(batch_size, generator=None, device=device):
                logits = head(*batch.inputs)
                if batch.mask is not None and logits.dim() == batch.mask.dim() + 1:
                    logits = logits[batch.mask]  # real tokens, row-major
                chunks.append(torch.softmax(logits.float(), dim=-1).cpu())
                if batch.items is not None:
                    items.append(batch.items)
    finally:
        head.train(was_training)
    if not chunks:
        raise ValueError("cannot predict: the data holds no item")
    probs = torch.cat(chunks).numpy()
    if items:  # the view reordered items (length-sorted batches): put them back
        order = np.concatenate(items)
        if len(order) != len(probs):
            raise RuntimeError(f"{len(order)} item indices for {len(probs)} predictions")
        restored = np.empty_like(probs)
        restored[order] = probs
        probs = restored
    if len(probs) != data.n_items:
        raise RuntimeError(f"predicted {len(probs)} rows for {data.n_items} items")
    return probs


def _optimizer(head: nn.Module, config: TrainConfig) -> AdamW:
    """AdamW; weight decay on matrices only (not biases, mix scalars or gamma)."""
    params = [p for p in head.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the head has no trainable parameter")
    groups = [
        ([p for p in params if p.dim() >= 2], config.weight_decay),
        ([p for p in params if p.dim() < 2], 0.0),
    ]
    return AdamW([(ps, decay) for ps, decay in groups if ps], lr=config.lr)


class AdamW:
    """The update of `torch.optim.AdamW` (its single-tensor path, amsgrad off), written out.

    Why not torch.optim: building any torch optimizer imports torch._dynamo, 2-3 s per
    process on a 2-core CPU, paid by every `probe layers` run and again by every grid worker
    (longer than most probes take to train). The arithmetic is torch's own, op for op, so
    training gives the same numbers bit for bit (tests/test_heads_train.py checks it).

    groups: (parameters, weight decay) pairs; betas and eps are AdamW's defaults.
    """

    def __init__(
        self,
        groups: Sequence[tuple[Sequence[Tensor], float]],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.groups = [(list(params), float(decay)) for params, decay in groups]
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.state: dict[Tensor, tuple[Tensor, Tensor, Tensor]] = {}

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        lr, beta1, beta2 = self.lr, self.beta1, self.beta2
        for params, decay in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                if p not in self.state:  # as torch: a float32 step count, zero moments
                    self.state[p] = (
                        torch.tensor(0.0, dtype=torch.float32),
                        torch.zeros_like(p, memory_format=torch.preserve_format),
                        torch.zeros_like(p, memory_format=torch.preserve_format),
                    )
                step_t, exp_avg, exp_avg_sq = self.state[p]
                step_t += 1
                if decay != 0:
                    p.mul_(1 - lr * decay)
                grad = p.grad
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)


def fit(
    head: nn.Module | Callable[[], nn.Module],
    train: Feed,
    dev: Feed | None,
    config: TrainConfig = TrainConfig(),
) -> TrainResult:
    """Train `head` on `train` with AdamW, early-stopping on `dev` loss; best weights restored.

    head: a module, or a zero-argument factory built inside the seeded RNG (so its
        initialisation depends on `config.seed` alone). The trained head is `result.head`
        and stays on the training device.
    train, dev: views (`data.words(layer)`, `data.sentences(...)`, `pairs.pairs(...)`).
        Without dev, trains `max_epochs` epochs and keeps the last weights.
    """
    for name, feed in (("train", train), ("dev", dev)):
        if feed is not None and not isinstance(feed, Feed):
            raise TypeError(
                f"{name} must be a data view such as data.words(layer), data.sentences(layers) "
                f"or pairs.pairs(layer); got {type(feed).__name__}"
            )
    device = resolve_device(config.device)
    began = time.perf_counter()
    compute = pick_compute_dtype(config.precision, device)
    with _seeded(config.seed, device), cpu_threads(config.threads):
        if not isinstance(head, nn.Module):
            head = head()
        head.to(device)
        optimizer = _optimizer(head, config)
        generator = torch.Generator().manual_seed(config.seed)
        best_loss, best_epoch, best_state, bad_epochs = math.inf, 0, None, 0
        history: list[EpochLog] = []
        stopped_early = False
        for epoch in range(1, config.max_epochs + 1):
            t0 = time.perf_counter()
            head.train()
            if config.schedule == "linear":
                optimizer.lr = config.lr * (1 - (epoch - 1) / config.max_epochs)
            total = torch.zeros((), device=device, dtype=torch.float64)
            count = torch.zeros((), device=device, dtype=torch.int64)
            for batch in train.batches(config.batch_size, generator=generator, device=device):
                # One autocast region per step: autocast caches its bf16 copies of the weights
                # until the region ends, so a region around the loop would train stale copies.
                with autocast(device, compute):
                    loss_sum, n = _loss_sum(head(*batch.inputs), batch.labels)
                optimizer.zero_grad()
                (loss_sum / n.clamp(min=1)).backward()
                optimizer.step()
                total += loss_sum.detach()
                count += n
            train_loss = float(total) / max(int(count), 1)
            dev_loss = dev_acc = None
            if dev is not None:
                dev_loss, dev_acc = evaluate(head, dev, batch_size=config.eval_batch_size,
                                             precision=config.precision)  # fmt: skip
            history.append(EpochLog(epoch, train_loss, dev_loss, dev_acc, time.perf_counter() - t0))
            log.debug("epoch %d: train loss %.4f, dev loss %s, dev acc %s",
                      epoch, train_loss, dev_loss, dev_acc)  # fmt: skip
            if dev_loss is None:
                best_epoch = epoch
                continue
            if dev_loss < best_loss - config.min_delta:
                best_loss, best_epoch, bad_epochs = dev_loss, epoch, 0
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            else:
                bad_epochs += 1
                if bad_epochs >= config.patience:
                    stopped_early = True
                    break
        if best_state is not None:
            head.load_state_dict(best_state)
    result = TrainResult(
        head=head,
        best_epoch=best_epoch,
        epochs_run=len(history),
        best_dev_loss=None if dev is None else best_loss,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - began,
        device=str(device),
        history=tuple(history),
    )
    log.info(
        "trained %s on %s: best epoch %d of %d, dev loss %s, %.2fs",
        type(head).__name__, device, best_epoch, len(history),
        f"{best_loss:.4f}" if dev is not None else "n/a", result.seconds,
    )  # fmt: skip
    return result

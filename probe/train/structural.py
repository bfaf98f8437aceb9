"""Training structural probes (probe.heads.structural) on one cached layer with gold trees.

Not `fit`: its loss is cross-entropy over labels, a structural probe's is H&M's L1 between
predicted and gold tree distances (or depths) per sentence. What `fit` guarantees is kept
here by reusing its parts: the seeded, deterministic RNG fork (`loop._seeded`), the AdamW
written out (`make_optimizer`), the thread limit, early stopping on dev loss with the best
weights restored, and a `TrainResult`.

Batches are whole sentences, length-sorted into batches of at most `batch_size` words (the
padded (length, length) gold matrices stay small), built once per split; each epoch visits
them in a seeded random order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from probe.analysis.structural import tree_depths, tree_distances
from probe.heads.structural import StructuralProbe, structural_loss
from probe.runtime.device import resolve_device
from probe.runtime.threads import limit_threads
from probe.train.config import EpochLog, TrainConfig, TrainResult
from probe.train.loop import EarlyStopping, _seeded
from probe.train.optim import make_optimizer

log = logging.getLogger(__name__)

Batch = tuple[np.ndarray, Tensor, Tensor, Tensor]  # sentence indices, vectors, gold, mask


@dataclass
class TreeData:
    """One split for a structural probe: one layer's word vectors (words, hidden), sentence
    offsets, and each word's head as a sentence-local index (-1 for the root)."""

    features: np.ndarray
    offsets: np.ndarray
    heads: np.ndarray
    _gold: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.features) != len(self.heads) or self.offsets[-1] != len(self.heads):
            raise ValueError(f"{len(self.features)} vectors, {len(self.heads)} heads and "
                             f"offsets to {self.offsets[-1]} must agree")  # fmt: skip

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def hidden(self) -> int:
        return int(self.features.shape[1])

    def sentence_heads(self) -> list[np.ndarray]:
        return [self.heads[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def gold(self, kind: str) -> list[np.ndarray]:
        """Each sentence's gold distances (n, n) or depths (n,), computed once."""
        if kind not in self._gold:
            make = tree_distances if kind == "distance" else tree_depths
            self._gold[kind] = [make(h) for h in self.sentence_heads()]
        return self._gold[kind]


def _batches(data: TreeData, kind: str, batch_words: int) -> list[Batch]:
    """(sentence indices, x, gold, mask) padded tensors, length-sorted, in sentence order of
    each batch; every sentence in exactly one batch."""
    lengths = np.diff(data.offsets)
    order = np.argsort(lengths, kind="stable")
    groups: list[list[int]] = [[]]
    for i in order:  # ascending lengths: sentence i is its batch's longest so far
        if groups[-1] and int(lengths[i]) * (len(groups[-1]) + 1) > batch_words:
            groups.append([])
        groups[-1].append(int(i))
    gold = data.gold(kind)
    out = []
    for group in groups:
        if not group:
            continue
        n = int(lengths[group].max())
        x = np.zeros((len(group), n, data.hidden), dtype=np.float32)
        target = np.zeros((len(group), n, n) if kind == "distance" else (len(group), n),
                          dtype=np.float32)  # fmt: skip
        mask = np.zeros((len(group), n), dtype=np.float32)
        for row, i in enumerate(group):
            a, b = int(data.offsets[i]), int(data.offsets[i + 1])
            x[row, : b - a] = data.features[a:b]
            mask[row, : b - a] = 1
            if kind == "distance":
                target[row, : b - a, : b - a] = gold[i]
            else:
                target[row, : b - a] = gold[i]
        out.append((np.asarray(group), torch.from_numpy(x), torch.from_numpy(target),
                    torch.from_numpy(mask)))  # fmt: skip
    return out


def fit_structural(
    kind: str, train: TreeData, dev: TreeData, rank: int, config: TrainConfig
) -> TrainResult:
    """Train a `kind` probe of `rank` on `train`, early-stopping on `dev`'s loss."""
    device = resolve_device(config.device)
    began = time.perf_counter()
    train_batches = _batches(train, kind, config.batch_size)
    dev_batches = _batches(dev, kind, config.batch_size)
    with _seeded(config.seed, device), limit_threads(config.threads):
        probe = StructuralProbe(train.hidden, rank, kind).to(device)
        optimizer = make_optimizer(probe, config)
        rng = np.random.default_rng(config.seed)
        stopping = EarlyStopping(config.patience, config.min_delta)
        history: list[EpochLog] = []
        for epoch in range(1, config.max_epochs + 1):
            t0 = time.perf_counter()
            probe.train()
            total = 0.0
            for index in rng.permutation(len(train_batches)):
                _, x, gold, mask = train_batches[index]
                x, gold, mask = x.to(device), gold.to(device), mask.to(device)
                loss = structural_loss(probe(x, mask), gold, mask)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(x)
            dev_loss = _loss(probe, dev_batches, device)
            history.append(EpochLog(epoch, total / train.n_sentences, dev_loss, None,
                                    time.perf_counter() - t0))  # fmt: skip
            if stopping.update(epoch, dev_loss, probe):
                break
        stopping.restore(probe)
    best_epoch, best_loss = stopping.best_epoch, stopping.best_loss
    result = TrainResult(probe, best_epoch, len(history), best_loss, stopping.stopped,
                         time.perf_counter() - began, str(device), tuple(history))  # fmt: skip
    log.info("trained a %s probe (rank %d): best epoch %d of %d, dev loss %.4f, %.1fs", kind,
             rank, best_epoch, len(history), best_loss, result.seconds)  # fmt: skip
    return result


def _loss(probe: StructuralProbe, batches: list[Batch], device: torch.device) -> float:
    """Mean per-sentence loss over the batches, in eval mode."""
    probe.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for _, x, gold, mask in batches:
            x, gold, mask = x.to(device), gold.to(device), mask.to(device)
            total += float(structural_loss(probe(x, mask), gold, mask)) * len(x)
            count += len(x)
    probe.train()
    return total / max(count, 1)


def predict_structural(
    probe: StructuralProbe, data: TreeData, batch_words: int = 4096
) -> list[np.ndarray]:
    """Each sentence's predicted squared distances (n, n) or depths (n,), in sentence order."""
    device = next(probe.parameters()).device
    out: list[np.ndarray | None] = [None] * data.n_sentences
    lengths = np.diff(data.offsets)
    probe.eval()
    with torch.inference_mode():
        for group, x, _, mask in _batches(data, probe.kind, batch_words):
            predicted = probe(x.to(device), mask.to(device)).cpu().numpy()
            for row, i in enumerate(group):
                n = int(lengths[i])
                out[i] = predicted[row, :n, :n] if probe.kind == "distance" else predicted[row, :n]
    return [p for p in out if p is not None]

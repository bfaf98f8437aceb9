"""The training loop: `fit` (early stopping, seeded, deterministic), `evaluate`, `predict_proba`.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probe.analysis.metrics import IGNORE_INDEX
from probe.runtime.device import resolve_device
from probe.runtime.precision import autocast, pick_compute_dtype
from probe.runtime.threads import limit_threads
from probe.train.config import EVAL_BATCH, EpochLog, TrainConfig, TrainResult
from probe.train.optim import make_optimizer
from probe.train.views import Feed

log = logging.getLogger(__name__)

DEFAULT_TRAINING = TrainConfig()  # `fit`'s default, one frozen instance


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


def evaluate(head: nn.Module, data: Feed, *, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the labelled items of `data`, in eval mode, in
    float32 whatever precision trained the head (so dev losses compare across devices)."""
    device = _head_device(head)
    was_training = head.training
    head.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = torch.zeros((), device=device, dtype=torch.int64)
    try:
        with torch.inference_mode():
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


def predict_proba(head: nn.Module, data: Feed, *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Class probabilities per item, (n_items, classes) float32, in data order.

    Items are words for word and token-labelled sentence views (padding dropped), pairs for
    pair views, sequences for sequence views. Runs on the head's device, in eval mode, in
    float32 whatever precision trained the head: every reported number is an fp32 evaluation.
    """
    device = _head_device(head)
    was_training = head.training
    head.eval()
    chunks: list[Tensor] = []
    items: list[np.ndarray] = []
    try:
        with torch.inference_mode():
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


class EarlyStopping:
    """Early stopping on a dev loss, shared by every training loop over cached features.

    An epoch improves when its loss beats the best by more than `min_delta`: its weights are
    kept (a copy) and the patience count restarts; `patience` epochs in a row without an
    improvement stop training. `restore` puts the best weights back."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.bad = math.inf, 0, 0
        self.best_state: dict[str, Tensor] | None = None
        self.stopped = False

    def update(self, epoch: int, loss: float, module: nn.Module) -> bool:
        """Record one epoch's dev loss; True when training should stop."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad = loss, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.bad += 1
            self.stopped = self.bad >= self.patience
        return self.stopped

    def restore(self, module: nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def fit(
    head: nn.Module | Callable[[], nn.Module],
    train: Feed,
    dev: Feed | None,
    config: TrainConfig = DEFAULT_TRAINING,
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
    with _seeded(config.seed, device), limit_threads(config.threads):
        if not isinstance(head, nn.Module):
            head = head()
        head.to(device)
        optimizer = make_optimizer(head, config)
        generator = torch.Generator().manual_seed(config.seed)
        stopping = EarlyStopping(config.patience, config.min_delta)
        history: list[EpochLog] = []
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
                dev_loss, dev_acc = evaluate(head, dev, batch_size=config.eval_batch_size)
            history.append(EpochLog(epoch, train_loss, dev_loss, dev_acc, time.perf_counter() - t0))
            log.debug("epoch %d: train loss %.4f, dev loss %s, dev acc %s",
                      epoch, train_loss, dev_loss, dev_acc)  # fmt: skip
            if dev_loss is None:
                stopping.best_epoch = epoch  # no dev: the last epoch is the one kept
                continue
            if stopping.update(epoch, dev_loss, head):
                break
        stopping.restore(head)
    best_epoch, best_loss = stopping.best_epoch, stopping.best_loss
    result = TrainResult(
        head=head,
        best_epoch=best_epoch,
        epochs_run=len(history),
        best_dev_loss=None if dev is None else best_loss,
        stopped_early=stopping.stopped,
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

"""How a head is trained (`TrainConfig`) and what training returns (`EpochLog`, `TrainResult`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from torch import nn

from probe.errors import ProbeError

LayerArrays = np.ndarray | Sequence[np.ndarray] | Mapping[int, np.ndarray]
EVAL_BATCH = 1024  # see TrainConfig.eval_batch_size
Layers = int | Sequence[int]


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

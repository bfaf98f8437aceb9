"""The optimiser `fit` uses: AdamW written out (no torch.optim), decay on matrices only."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from probe.train.config import TrainConfig


def make_optimizer(head: nn.Module, config: TrainConfig) -> AdamW:
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

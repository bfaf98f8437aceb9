"""Multi-task heads: one shared body, one output layer per task, for word and pair tasks.

Intermediate-task training (`probe intermediate`) trains a body on task A and then on the
target task. Only the body carries over: every task keeps its own classifier, so tasks with
different label sets and levels (word tagging, sentence pairs) can share one body.

A body reads k layers of each token, `layers` = k tensors (B, T, H) plus a bool mask (B, T),
and returns (B, T, D). Word tasks feed it padded sentences; pair tasks feed each side's
pooled vector as a one-token sentence, so the same body serves both:

    body    layers read         what it learns                       D
    mlp     one layer           Linear(H, D) + ReLU                  --width
    mix     several layers      scalar mix (Tenney et al.) + MLP     --width
    dlfa    (last, k)           the AIF gate of the DLFA head        H

The bodies are built by name through `probe.heads.registry.BODIES`, which also says which
layers each one reads.

A `TaskHead` is a body plus one task's dropout and linear classifier: exactly what `train.fit`
trains for one task. With the `dlfa` body a `TaskHead` is built in the same order as
`DLFAHead` (AIF, dropout, classifier), so from one seed the two start from the same weights
and a run without intermediate tasks reproduces the grid's DLFA cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from probe.errors import ProbeError
from probe.heads.dlfa import AIF
from probe.heads.linear import pair_features
from probe.heads.scalar_mix import ScalarMix

Level = Literal["word", "pair"]


class Body(nn.Module):
    """The shared part: k layers of each token -> one D-dimensional vector per token."""

    out_features: int

    def forward(self, layers: Sequence[Tensor], mask: Tensor) -> Tensor:  # pragma: no cover
        """layers: k tensors (B, T, H); mask: bool (B, T) -> (B, T, out_features)."""
        raise NotImplementedError


class MLPBody(Body):
    """Linear(H, D) + ReLU on one layer: a learned projection every task reads through."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(hidden, width)
        self.out_features = width

    def forward(self, layers: Sequence[Tensor], mask: Tensor) -> Tensor:
        """layers: one tensor (B, T, H); mask unused (each token on its own) -> (B, T, D)."""
        if len(layers) != 1:
            raise ValueError(f"the mlp body reads one layer, got {len(layers)}")
        return torch.relu(self.project(layers[0]))


class MixBody(Body):
    """A scalar mix of k layers, then Linear(H, D) + ReLU: tasks share which layers they read."""

    def __init__(self, hidden: int, width: int, layer_ids: Sequence[int]) -> None:
        super().__init__()
        self.mix = ScalarMix(len(layer_ids), layer_ids=layer_ids)
        self.project = nn.Linear(hidden, width)
        self.out_features = width

    def forward(self, layers: Sequence[Tensor], mask: Tensor) -> Tensor:
        """layers: k tensors (B, T, H) in layer_ids order; mask unused -> (B, T, D)."""
        return torch.relu(self.project(self.mix(torch.stack(tuple(layers), dim=-2))))


class FusionBody(Body):
    """DLFA's AIF module: the gate that mixes the last layer with layer k, per token."""

    def __init__(self, hidden: int, reduction: int = 4) -> None:
        super().__init__()
        self.aif = AIF(hidden, reduction)
        self.out_features = hidden

    def forward(self, layers: Sequence[Tensor], mask: Tensor) -> Tensor:
        """layers: (h_last, h_k), each (B, T, H); mask: bool (B, T) -> fused Z (B, T, H)."""
        if len(layers) != 2:
            raise ValueError(f"the dlfa body reads (last, k), got {len(layers)} layer(s)")
        fused, _ = self.aif(layers[0], layers[1], mask)
        return fused


class TaskHead(nn.Module):
    """A body plus one task's dropout and linear classifier.

    Word tasks: inputs (h_1, ..., h_k, mask) from `WordData.sentences(layers)`, each h
    (B, T, H), mask (B, T) -> logits (B, T, C).
    Pair tasks: inputs (a, b) from `PairData.pairs(layers)`, each (B, k, H) -> each side goes
    through the body as a one-token sentence, then the classifier reads the matching
    features [za; zb; |za - zb|; za * zb] -> logits (B, C).
    """

    def __init__(self, body: Body, n_classes: int, level: Level, dropout: float = 0.1) -> None:
        super().__init__()
        if level not in ("word", "pair"):
            raise ProbeError(f"a task head serves word or pair tasks, not {level!r} tasks")
        self.body = body
        self.level = level
        self.dropout = nn.Dropout(dropout)
        width = body.out_features * (4 if level == "pair" else 1)
        self.classifier = nn.Linear(width, n_classes)

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.level == "word":
            *layers, mask = inputs
            z = self.body(layers, mask.to(torch.bool))
        else:
            a, b = inputs
            z = pair_features(self._pooled(a), self._pooled(b))
        return self.classifier(self.dropout(z))

    def _pooled(self, side: Tensor) -> Tensor:
        """(B, k, H) pooled layers of one side -> (B, D) through the body as one token."""
        layers = [x.unsqueeze(1) for x in side.unbind(-2)]  # k x (B, 1, H)
        mask = torch.ones(side.shape[0], 1, dtype=torch.bool, device=side.device)
        return self.body(layers, mask)[:, 0]


class MultiTaskHead(nn.Module):
    """Several task heads around one body, for mixed batches: `forward(task_index, *inputs)`.

    Every batch belongs to one task; its first input is a 0-d integer tensor naming it (an
    index into `names`), which `MixedFeed` puts there. The body is shared by all heads.
    """

    def __init__(self, heads: dict[str, TaskHead]) -> None:
        super().__init__()
        bodies = {id(h.body) for h in heads.values()}
        if len(bodies) != 1:
            raise ValueError(f"every task head must share one body; got {len(bodies)} bodies")
        self.names = tuple(heads)
        self.heads = nn.ModuleDict(heads)

    @property
    def body(self) -> Body:
        head = self.heads[self.names[0]]
        assert isinstance(head, TaskHead)
        return head.body

    def forward(self, task: Tensor, *inputs: Tensor) -> Tensor:
        """task: 0-d int tensor (index into names); inputs: that task's view -> its logits."""
        return self.heads[self.names[int(task)]](*inputs)

"""Hewitt & Manning's (2019) structural probes: one linear map B of a layer's word vectors.

The distance probe reads a tree metric off the squared distances of the mapped vectors,
d(i, j) = ||B(h_i - h_j)||^2, trained towards the gold tree's path lengths; the depth probe
reads each word's depth off its squared norm ||B h_i||^2. Both are a single (hidden, rank)
matrix, initialised uniformly in ±0.05 as in H&M's code, so a probe's capacity is its rank.
The pairwise distances are computed as |a|^2 + |b|^2 - 2 a.b rather than from every
difference vector, so a batch costs (sentences, length, length) memory, not times the rank.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probe.heads.registry import STRUCTURAL_PROBES


class StructuralProbe(nn.Module):
    """A distance or depth probe of rank `rank` over `hidden`-dimensional word vectors.

    forward(x, mask) with x (sentences, length, hidden) and mask (sentences, length):
    distance probes return (sentences, length, length) squared distances, depth probes
    (sentences, length) squared norms; padded positions are 0.
    """

    def __init__(self, hidden: int, rank: int, kind: str = "distance") -> None:
        super().__init__()
        if kind not in STRUCTURAL_PROBES:
            raise ValueError(
                f"probe kind must be one of {', '.join(STRUCTURAL_PROBES)}, not {kind!r}"
            )
        if rank < 1:
            raise ValueError(f"probe rank must be at least 1, not {rank}")
        self.kind = kind
        self.proj = nn.Parameter(torch.empty(hidden, rank).uniform_(-0.05, 0.05))

    @property
    def rank(self) -> int:
        return int(self.proj.shape[1])

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        mapped = (x.float() @ self.proj) * mask.unsqueeze(-1)
        norms = (mapped * mapped).sum(-1)
        if self.kind == "depth":
            return norms
        gram = mapped @ mapped.transpose(1, 2)
        distances = (norms.unsqueeze(2) + norms.unsqueeze(1) - 2 * gram).clamp_min(0.0)
        pair_mask = mask.unsqueeze(2) * mask.unsqueeze(1)
        return distances * pair_mask


def structural_loss(predicted: Tensor, gold: Tensor, mask: Tensor) -> Tensor:
    """H&M's L1 loss: per sentence the mean absolute error over its word pairs (distance)
    or words (depth), i.e. normalised by length^2 or length, then the mean over sentences."""
    lengths = mask.sum(-1).clamp_min(1.0)
    error = (predicted - gold).abs()
    if predicted.dim() == 3:
        per_sentence = error.sum((1, 2)) / lengths**2
    else:
        per_sentence = error.sum(1) / lengths
    return per_sentence.mean()

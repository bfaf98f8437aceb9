"""The linear probe: softmax regression on one layer's features, for words or sentence pairs.

A probe is deliberately one `nn.Linear`: what it can read off a layer is linearly decodable
information, which is the question layer-wise probing asks. The softmax lives in the loss
(`train.fit`) and in `train.predict_proba`; `forward` returns logits.

Sentence pairs (XNLI, PAWS-X) arrive as two pooled vectors a and b per pair. The classifier
input is [a; b; |a - b|; a * b] (`pair_features`), the standard matching features of frozen
sentence-pair probing (InferSent, Conneau et al. 2017; SentEval): a plain linear map of [a; b]
cannot express agreement between the two sides, and the last two terms make "how similar
are a and b" linearly available without adding hidden layers.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def pair_features(a: Tensor, b: Tensor) -> Tensor:
    """[a; b; |a - b|; a * b] along the last axis: (..., H) and (..., H) -> (..., 4H)."""
    if a.shape != b.shape:
        raise ValueError(
            f"pair sides must have equal shapes; got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return torch.cat((a, b, (a - b).abs(), a * b), dim=-1)


class LinearProbe(nn.Module):
    """Softmax regression on one layer: logits = x W^T + c, applied per word (or per token)."""

    def __init__(self, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(hidden, n_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-item logits.

        x: (batch, hidden) from a word view, or (batch, max_len, hidden) from a sentence view.
        mask: (batch, max_len) bool, accepted so the probe also runs on padded sentence
            batches; it is unused because every token is classified on its own (the training
            loop drops padded positions through the -100 labels).
        Returns (batch, n_classes) or (batch, max_len, n_classes).
        """
        return self.classifier(x)


class PairLinearProbe(nn.Module):
    """Softmax regression on the matching features [a; b; |a - b|; a * b] of a sentence pair."""

    def __init__(self, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(4 * hidden, n_classes)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-pair logits.

        a: (batch, hidden), side A's pooled vector; b: (batch, hidden), side B's.
        Returns (batch, n_classes).
        """
        return self.classifier(pair_features(a, b))

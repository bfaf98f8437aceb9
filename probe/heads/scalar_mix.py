"""Scalar mix over all layers (Tenney et al. 2019; AllenNLP `ScalarMix`) and its probes.

mixed = gamma * sum_l s_l h_l with s = softmax(w): one learned scalar per layer plus a global
scale. Trained jointly with a linear classifier on the mixed vector, the weights s say which
layers the task draws on, and their centre of gravity E_s[l] = sum_l l * s_l summarises where
in the stack that is (Tenney et al.'s "BERT rediscovers the classical NLP pipeline").
AllenNLP's optional layer norm of each layer is left out: it changes what the weights mean
(each layer's scale no longer counts), and probing papers report the plain form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from probe.heads.linear import pair_features


class ScalarMix(nn.Module):
    """gamma * sum_l softmax(w)_l h_l over a stacked layer axis."""

    def __init__(self, n_layers: int, *, layer_ids: Sequence[int] | None = None) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"a scalar mix needs at least one layer, got n_layers={n_layers}")
        ids = tuple(range(n_layers)) if layer_ids is None else tuple(layer_ids)
        if len(ids) != n_layers:
            raise ValueError(f"layer_ids has {len(ids)} entries for n_layers={n_layers}")
        self.layer_ids = ids  # the model layer each mixed slot holds (0 = embeddings)
        self.scalars = nn.Parameter(torch.zeros(n_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def reset_parameters(self) -> None:
        """Uniform weights (all scalars 0) and gamma 1, AllenNLP's initialisation."""
        with torch.no_grad():
            self.scalars.zero_()
            self.gamma.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        """Mix the layer axis away.

        x: (..., n_layers, hidden), layers stacked on the second-to-last axis. Fastest when
            x is a view of layer-first memory, as `train`'s stacked views yield (the mix
            is then one matrix-vector product instead of a strided reduction).
        Returns (..., hidden).
        """
        if x.shape[-2] != self.scalars.numel():
            raise ValueError(
                f"expected {self.scalars.numel()} layers on axis -2, got shape {tuple(x.shape)}; "
                "feed a view that selects the layers this mix was built for"
            )
        s = torch.softmax(self.scalars, dim=0)
        return self.gamma * torch.einsum("...lh,l->...h", x, s)

    @property
    def weights(self) -> Tensor:
        """The normalised layer weights s, shape (n_layers,), detached on the CPU."""
        return torch.softmax(self.scalars.detach(), dim=0).cpu()

    @property
    def centre_of_gravity(self) -> float:
        """E_s[l] = sum_l layer_ids[l] * s_l: the expected layer the task reads from."""
        ids = torch.tensor(self.layer_ids, dtype=self.weights.dtype)
        return float((ids * self.weights).sum())


class _MixThenLinear(nn.Module):
    """A scalar mix feeding a linear classifier; subclasses say what the classifier reads."""

    def __init__(
        self, n_layers: int, in_features: int, n_classes: int, layer_ids: Sequence[int] | None
    ) -> None:
        super().__init__()
        self.mix = ScalarMix(n_layers, layer_ids=layer_ids)
        self.classifier = nn.Linear(in_features, n_classes)

    @property
    def weights(self) -> Tensor:
        """The normalised layer weights, shape (n_layers,)."""
        return self.mix.weights

    @property
    def centre_of_gravity(self) -> float:
        """Sum of layer id times weight (see `ScalarMix.centre_of_gravity`)."""
        return self.mix.centre_of_gravity


class ScalarMixProbe(_MixThenLinear):
    """A scalar mix of all layers followed by a linear classifier, per word (or token)."""

    def __init__(
        self,
        n_layers: int,
        hidden: int,
        n_classes: int,
        *,
        layer_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(n_layers, hidden, n_classes, layer_ids)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-item logits.

        x: (batch, n_layers, hidden) from a stacked word view, or
            (batch, max_len, n_layers, hidden) from a stacked sentence view.
        mask: (batch, max_len) bool; unused (each token is classified on its own).
        Returns (batch, n_classes) or (batch, max_len, n_classes).
        """
        return self.classifier(self.mix(x))


class PairScalarMixProbe(_MixThenLinear):
    """One scalar mix shared by both sides of a pair, then a linear map of the matching features.

    The mix is shared because both sides come from the same (joint) encoding: the question
    is which layers the task reads, not which layers each side reads.
    """

    def __init__(
        self,
        n_layers: int,
        hidden: int,
        n_classes: int,
        *,
        layer_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(n_layers, 4 * hidden, n_classes, layer_ids)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Per-pair logits.

        a, b: (batch, n_layers, hidden), each side's pooled vectors with layers stacked.
        Returns (batch, n_classes).
        """
        return self.classifier(pair_features(self.mix(a), self.mix(b)))

"""The DLFA head: AIF gated fusion of the last layer with one lower layer, and its concat baseline.

DLFA (Chen et al. 2022, arXiv 2205.08497) fuses mBERT's last layer with one lower
layer k through an attention module (AIF) and classifies the fused features. The
paper's full text was not available, so AIF follows the attentional feature fusion
template (Dai et al. 2021) that its abstract matches; every choice the paper leaves
open is a constructor parameter, and docs/dlfa.md says why each default was chosen.

All modules take the same three tensors, ``h_last`` and ``h_k`` of shape
(batch, len, hidden) and a boolean ``mask`` (batch, len) that is True on real
tokens. Padding never changes a real token's output: padded positions are zeroed
on entry (so NaN or inf there cannot leak through a ``0 * x``), every pooling is
masked, and batch normalisation, when asked for, sees real tokens only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probe.errors import unknown_name

NORMS = ("layer", "batch", "none")
GLOBAL_POOLS = ("mean", "max")
SENTENCE_POOLS = ("mean", "max", "first")
LEVELS = ("token", "sentence")


def _choose(kind: str, value: str, known: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``known``; otherwise raise the registry-style error."""
    if value not in known:
        raise unknown_name(kind, value, known)
    return value


def _check_inputs(h_last: Tensor, h_k: Tensor, mask: Tensor) -> Tensor:
    """Validate the shared call signature and return the mask as bool (B, T).

    A sentence with no real token would make every masked pooling return a silent
    zero (or -inf) vector, so it is refused here rather than averaged over nothing.
    """
    if h_last.dim() != 3 or h_last.shape != h_k.shape:
        raise ValueError(
            f"h_last and h_k must both be (batch, len, hidden); got {tuple(h_last.shape)} "
            f"and {tuple(h_k.shape)}. Pad both layers of a batch to the same length."
        )
    if mask.shape != h_last.shape[:2]:
        raise ValueError(
            f"mask must be (batch, len) = {tuple(h_last.shape[:2])}; got {tuple(mask.shape)}."
        )
    mask = mask.to(torch.bool)
    if not bool(mask.any(dim=1).all()):
        raise ValueError("mask has a sentence with no real token; drop empty sentences upstream.")
    return mask


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` (B, T, H) over the real tokens of ``mask`` (B, T) -> (B, H)."""
    keep = mask.unsqueeze(-1)
    total = torch.where(keep, x, torch.zeros_like(x)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(x.dtype)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Element-wise max of ``x`` (B, T, H) over the real tokens of ``mask`` (B, T) -> (B, H)."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def pool(x: Tensor, mask: Tensor, how: str) -> Tensor:
    """Pool ``x`` (B, T, H) over real tokens -> (B, H): "mean", "max" or "first" (position 0)."""
    if how == "mean":
        return masked_mean(x, mask)
    if how == "max":
        return masked_max(x, mask)
    if how == "first":
        return x[:, 0]
    raise unknown_name("pooling", how, SENTENCE_POOLS)


def gate_mean(gate: Tensor, mask: Tensor) -> float:
    """Mean of a gate M (B, T, H) over real tokens and features: the share taken from H_last.

    Above 0.5 the head leans on the last layer, below 0.5 on layer k; this is the
    number analyses report per layer pair.
    """
    return float(masked_mean(gate.detach(), mask.to(torch.bool)).mean())


class _MaskedNorm(nn.Module):
    """LayerNorm, BatchNorm or nothing over the last dim, computing statistics on real rows only.

    LayerNorm is per token, so padding cannot reach it. BatchNorm pools statistics
    across rows, so it is fed only the rows the mask keeps; padded rows come out zero.
    """

    def __init__(self, size: int, norm: str) -> None:
        super().__init__()
        self.kind = _choose("norm", norm, NORMS)
        if norm == "layer":
            self.norm: nn.Module = nn.LayerNorm(size)
        elif norm == "batch":
            self.norm = nn.BatchNorm1d(size)
        else:
            self.norm = nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, S), mask (B, T) -> (B, T, S)."""
        if self.kind != "batch":
            return self.norm(x)
        out = x.new_zeros(x.shape)
        out[mask] = self.norm(x[mask])
        return out


class _Bottleneck(nn.Module):
    """SENet-style Linear(h, h/r) -> norm -> ReLU -> Linear(h/r, h), giving gate logits.

    With ``zero_init`` the expanding Linear starts at zero, so the logits are 0 and
    M = sigmoid(0) = 0.5 exactly: training starts from the plain average of the two
    layers and neither layer is favoured by the random seed.
    """

    def __init__(self, hidden: int, reduction: int, norm: str, zero_init: bool) -> None:
        super().__init__()
        inner = max(1, hidden // reduction)
        self.squeeze = nn.Linear(hidden, inner)
        self.norm = _MaskedNorm(inner, norm)
        self.expand = nn.Linear(inner, hidden)
        if zero_init:
            nn.init.zeros_(self.expand.weight)
            nn.init.zeros_(self.expand.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, T, H), mask (B, T) -> gate logits (B, T, H)."""
        return self.expand(torch.relu(self.norm(self.squeeze(x), mask)))


class AIF(nn.Module):
    """Attention-based fusion of H_last and H_k with an element-wise gate M.

    X = H_last + H_k feeds a global branch (X pooled over the sentence's real
    tokens, bottleneck, broadcast back over tokens) and a local branch (the same
    bottleneck per token); M = sigmoid(global + local), Z = M*H_last + (1-M)*H_k.
    The global branch lets the sentence as a whole shift the mix (a language or a
    domain may want more of the lower layer); the local branch lets each token and
    each feature choose.
    """

    def __init__(
        self,
        hidden: int,
        reduction: int = 4,
        norm: str = "layer",
        global_pool: str = "mean",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if reduction < 1 or hidden < 1:
            raise ValueError(f"hidden and reduction must be >= 1; got {hidden} and {reduction}.")
        self.global_pool = _choose("global pooling", global_pool, GLOBAL_POOLS)
        self.global_branch = _Bottleneck(hidden, reduction, norm, zero_init)
        self.local_branch = _Bottleneck(hidden, reduction, norm, zero_init)

    def forward(self, h_last: Tensor, h_k: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Fuse two layers of one batch.

        h_last, h_k: (B, T, H); mask: bool (B, T), True on real tokens.
        Returns (Z, M), both (B, T, H). Rows at padded positions are finite but
        meaningless; read them through the mask.
        """
        mask = _check_inputs(h_last, h_k, mask)
        keep = mask.unsqueeze(-1)
        # Each pass over a (B, T, H) tensor costs about as much as the bottleneck matmuls on
        # a CPU, so the element-wise work is kept to the fewest passes: padding is zeroed
        # once (a broadcast `where`), the mean pool is a plain sum of the zeroed x, and the
        # mix is one fused `addcmul`.
        h_last = torch.where(keep, h_last, 0.0)
        h_k = torch.where(keep, h_k, 0.0)
        x = h_last + h_k
        if self.global_pool == "mean":  # x is zero at padding: a plain sum is the masked sum
            pooled = x.sum(dim=1) / mask.sum(dim=1, keepdim=True).to(x.dtype)
        else:
            pooled = pool(x, mask, self.global_pool)
        sentence = torch.ones_like(mask[:, :1])  # (B, 1): each pooled row is real
        logits = self.local_branch(x, mask) + self.global_branch(pooled.unsqueeze(1), sentence)
        # float32 from here on: under bf16 autocast the branches return bfloat16, and the
        # element-wise mix of a bf16 gate with float32 layers runs ~2x slower than float32.
        gate = torch.sigmoid(logits.float())
        # M*H_last + (1-M)*H_k = H_k + M*(H_last - H_k); exactly H when both layers are H.
        return torch.addcmul(h_k, gate, h_last - h_k), gate


class DLFAHead(nn.Module):
    """AIF fusion followed by dropout and a linear classifier, per token or per sentence."""

    def __init__(
        self,
        hidden: int,
        num_labels: int,
        reduction: int = 4,
        norm: str = "layer",
        dropout: float = 0.1,
        level: str = "token",
        global_pool: str = "mean",
        sentence_pool: str = "mean",
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        self.level = _choose("level", level, LEVELS)
        self.sentence_pool = _choose("sentence pooling", sentence_pool, SENTENCE_POOLS)
        self.aif = AIF(hidden, reduction, norm, global_pool, zero_init)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(
        self, h_last: Tensor, h_k: Tensor, mask: Tensor, return_gate: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Classify the fused features.

        h_last, h_k: (B, T, H); mask: bool (B, T).
        Returns logits (B, T, labels) at token level or (B, labels) at sentence
        level; with ``return_gate`` also the gate M (B, T, H) for analyses.
        """
        if h_k is h_last and not return_gate:
            # Both inputs are one layer (the grid's baseline): Z = H + M*(H - H) = H whatever
            # the gate, so it is skipped; the output is bit for bit the gated one.
            mask = _check_inputs(h_last, h_k, mask)
            z = torch.where(mask.unsqueeze(-1), h_last, 0.0)
        else:
            z, gate = self.aif(h_last, h_k, mask)
        if self.level == "sentence":
            z = pool(z, mask.to(torch.bool), self.sentence_pool)
        logits = self.classifier(self.dropout(z))
        return (logits, gate) if return_gate else logits


class SelfGatedHead(DLFAHead):
    """The grid's equal-capacity control: the last layer alone through DLFA's gated head.

    The same modules as DLFAHead (AIF and classifier: the same parameter count), but the gate
    is computed from H_last alone and scales it: Z = 2 * M * H_last (M = sigmoid(global +
    local) from X = H_last). With the gate fixed at its zero-init value 0.5, Z = H_last and the
    head is the last layer's linear classifier, so DLFA(k, L) over this control is a gain of
    the lower layer, not of a bigger, nonlinear head. The second input is ignored (the grid
    passes the last layer twice)."""

    def forward(
        self, h_last: Tensor, h_k: Tensor, mask: Tensor, return_gate: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        scaled, gate = self.aif(h_last, torch.zeros_like(h_last), mask)  # M * H_last
        z = 2 * scaled
        if self.level == "sentence":
            z = pool(z, mask.to(torch.bool), self.sentence_pool)
        logits = self.classifier(self.dropout(z))
        return (logits, gate) if return_gate else logits


class ConcatHead(nn.Module):
    """The grid's ``--head concat`` baseline: a linear classifier on [H_last; H_k].

    It sees the same two layers with the same call signature as DLFAHead, so a
    gain of DLFA over it is a gain of the gate, not of having two layers.
    """

    def __init__(
        self,
        hidden: int,
        num_labels: int,
        dropout: float = 0.1,
        level: str = "token",
        sentence_pool: str = "mean",
    ) -> None:
        super().__init__()
        self.level = _choose("level", level, LEVELS)
        self.sentence_pool = _choose("sentence pooling", sentence_pool, SENTENCE_POOLS)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, num_labels)

    def forward(self, h_last: Tensor, h_k: Tensor, mask: Tensor) -> Tensor:
        """h_last, h_k: (B, T, H); mask: bool (B, T) -> logits (B, T, labels) or (B, labels)."""
        mask = _check_inputs(h_last, h_k, mask)
        keep = mask.unsqueeze(-1)
        z = torch.where(keep, torch.cat([h_last, h_k], dim=-1), 0.0)
        if self.level == "sentence":
            z = pool(z, mask, self.sentence_pool)
        return self.classifier(self.dropout(z))

"""Head and body families by name (`HEADS`, `BODIES`): what each builds and which layers it reads.

Experiments name a head ("linear", "scalar_mix", "dlfa", "concat") or a multi-task body
("mlp", "mix", "dlfa") and build it here, so a new family member is one entry, and an unknown
name fails with "did you mean" from `probe.registry`. The builders import the torch modules
when called, so the registries themselves load without torch: the CLI can read their names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from probe.errors import ProbeError
from probe.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from probe.heads.multitask import Body

Reads = Literal["one", "all", "pair", "last"]
ViewName = Literal["words", "sentences", "pairs"]
# How a pair's token view is classified: "first" the fused [CLS] (<s>) row, as BERT's and
# XTREME's pair classifiers read it and the DLFA paper does; "mean" the masked mean over
# every token of the pair (docs/dlfa.md).
PAIR_POOLS = ("first", "mean")
# Hewitt & Manning's structural probes (probe.heads.structural): a squared distance per word
# pair (tree distance) or a squared norm per word (tree depth).
STRUCTURAL_PROBES = ("distance", "depth")


@dataclass(frozen=True)
class HeadKind:
    """One head family: the layers it reads, the data view per task level, how it is built.

    reads: "one" = one layer; "all" = every layer stacked (a scalar mix); "pair" = two
        layers in the order (last, k), as DLFA and its concat baseline take them; "last" =
        the last layer alone through the pair call (the grid's equal-capacity control).
    views: task level -> the view method of `WordData`/`PairData`/`SequenceData` the head
        consumes; its keys are the levels the head serves ("pair-tokens": a pair's token
        view, classified from one row of the fused tokens, `PAIR_POOLS`).
    make: (level, hidden, n_classes, n_layers, reduction, pool) -> a fresh module.
    has_gate: the head can report its fusion gate (`probe.heads.dlfa.gate_mean`).
    """

    name: str
    reads: Reads
    views: Mapping[str, ViewName]
    make: Callable[[str, int, int, int, int, str], nn.Module] = field(repr=False)
    has_gate: bool = False

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.views)

    def build(
        self, level: str, hidden: int, n_classes: int, *, n_layers: int = 1, reduction: int = 4,
        pool: str = "first",
    ) -> nn.Module:  # fmt: skip
        """A fresh head for `level` tasks (n_layers: the stack a scalar mix reads; pool: how
        a pair's token view becomes one vector, `PAIR_POOLS`)."""
        if pool not in PAIR_POOLS:
            raise ProbeError(f"pair pooling must be one of {', '.join(PAIR_POOLS)}, not {pool!r}")
        return self.make(self._served(level), hidden, n_classes, n_layers, reduction, pool)

    def view(self, level: str, data: Any, layers: int | Sequence[int]) -> Any:
        """The view of `data` (a `WordData` or `PairData`) this head reads `layers` through."""
        return getattr(data, self.views[self._served(level)])(layers)

    def _served(self, level: str) -> str:
        if level not in self.views:
            raise ProbeError(
                f"the {self.name} head serves {' and '.join(self.levels)} tasks, "
                f"not {level!r} tasks"
            )
        return level


@dataclass(frozen=True)
class BodyKind:
    """One shared body of multi-task heads (`probe.heads.multitask`).

    pick: (last layer, --layer or None) -> the layers read, in the order the body reads them.
    make: (hidden, layers, width, reduction) -> a fresh `Body`.
    """

    name: str
    pick: Callable[[int, int | None], tuple[int, ...]] = field(repr=False)
    make: Callable[[int, Sequence[int], int, int], Body] = field(repr=False)

    def layers(self, n_layers: int, layer: int | None) -> tuple[int, ...]:
        """The model layers this body reads for a model of `n_layers` (0 = embeddings)."""
        last = n_layers - 1
        if layer is not None and not 0 <= layer <= last:
            raise ProbeError(f"--layer {layer} is outside 0..{last} (0 = embeddings)")
        return self.pick(last, layer)

    def build(
        self, hidden: int, layers: Sequence[int], width: int = 256, reduction: int = 4
    ) -> Body:
        """A fresh body for features of size `hidden` reading `layers` (from `layers()`)."""
        return self.make(hidden, layers, width, reduction)


# --- heads ----------------------------------------------------------------------------------


def _linear(
    level: str, hidden: int, n_classes: int, n_layers: int, reduction: int, pool: str
) -> nn.Module:
    from probe.heads.linear import LinearProbe, PairLinearProbe

    if level == "pair":
        return PairLinearProbe(hidden, n_classes)
    return LinearProbe(hidden, n_classes)


def _scalar_mix(
    level: str, hidden: int, n_classes: int, n_layers: int, reduction: int, pool: str
) -> nn.Module:
    from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMixProbe

    if level == "pair":
        return PairScalarMixProbe(n_layers, hidden, n_classes)
    return ScalarMixProbe(n_layers, hidden, n_classes)


def _fused_level(level: str, pool: str) -> tuple[str, str]:
    """The fusion heads' (level, sentence_pool): per token for word tasks; for a pair's token
    view, fused per token (the gate's global branch pooled over the whole pair), then one
    row of the fused tokens classified."""
    return ("sentence", pool) if level == "pair-tokens" else ("token", "mean")


def _dlfa(
    level: str, hidden: int, n_classes: int, n_layers: int, reduction: int, pool: str
) -> nn.Module:
    from probe.heads.dlfa import DLFAHead

    head_level, sentence_pool = _fused_level(level, pool)
    return DLFAHead(hidden, n_classes, reduction=reduction, level=head_level,
                    sentence_pool=sentence_pool)  # fmt: skip


def _gated_last(
    level: str, hidden: int, n_classes: int, n_layers: int, reduction: int, pool: str
) -> nn.Module:
    from probe.heads.dlfa import SelfGatedHead

    head_level, sentence_pool = _fused_level(level, pool)
    return SelfGatedHead(hidden, n_classes, reduction=reduction, level=head_level,
                         sentence_pool=sentence_pool)  # fmt: skip


def _concat(
    level: str, hidden: int, n_classes: int, n_layers: int, reduction: int, pool: str
) -> nn.Module:
    from probe.heads.dlfa import ConcatHead

    head_level, sentence_pool = _fused_level(level, pool)
    return ConcatHead(hidden, n_classes, level=head_level, sentence_pool=sentence_pool)


HEADS: Registry[HeadKind] = Registry("head")
HEADS.register("linear", HeadKind("linear", "one", {"word": "words", "pair": "pairs"}, _linear))
HEADS.register(
    "scalar_mix", HeadKind("scalar_mix", "all", {"word": "words", "pair": "pairs"}, _scalar_mix)
)
_TOKENS: dict[str, ViewName] = {"word": "sentences", "pair-tokens": "sentences"}
HEADS.register("dlfa", HeadKind("dlfa", "pair", _TOKENS, _dlfa, has_gate=True))
HEADS.register("concat", HeadKind("concat", "pair", _TOKENS, _concat))
HEADS.register("gated-last", HeadKind("gated-last", "last", _TOKENS, _gated_last, has_gate=True))


def pair_heads() -> tuple[str, ...]:
    """The heads that fuse two layers (last, k): the `probe grid --head` choices."""
    return tuple(name for name, kind in HEADS.items() if kind.reads == "pair")


# --- bodies ---------------------------------------------------------------------------------


def _mlp_layers(last: int, layer: int | None) -> tuple[int, ...]:
    """One layer: `layer`, by default the last."""
    return (last if layer is None else layer,)


def _mix_layers(last: int, layer: int | None) -> tuple[int, ...]:
    """Every layer from `layer` (default 0) to the last."""
    return tuple(range(0 if layer is None else layer, last + 1))


def _fusion_layers(last: int, layer: int | None) -> tuple[int, ...]:
    """(last, k) with k = `layer`, by default last - 1; k may not be the last layer itself."""
    k = last - 1 if layer is None else layer
    if k == last:
        raise ProbeError(f"the dlfa body fuses the last layer ({last}) with a lower one; got {k}")
    return (last, k)


def _mlp_body(hidden: int, layers: Sequence[int], width: int, reduction: int) -> Body:
    from probe.heads.multitask import MLPBody

    return MLPBody(hidden, width)


def _mix_body(hidden: int, layers: Sequence[int], width: int, reduction: int) -> Body:
    from probe.heads.multitask import MixBody

    return MixBody(hidden, width, layers)


def _fusion_body(hidden: int, layers: Sequence[int], width: int, reduction: int) -> Body:
    from probe.heads.multitask import FusionBody

    return FusionBody(hidden, reduction)


BODIES: Registry[BodyKind] = Registry("body")
BODIES.register("mlp", BodyKind("mlp", _mlp_layers, _mlp_body))
BODIES.register("mix", BodyKind("mix", _mix_layers, _mix_body))
BODIES.register("dlfa", BodyKind("dlfa", _fusion_layers, _fusion_body))

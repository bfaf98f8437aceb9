"""The two heads the domain-shift and calibration experiments compare, on word-level caches.

A linear probe on one layer, and DLFA fusing the last layer with a lower layer k (the
`probe grid` head). Training data may pool several cached splits (several languages), so
splits are concatenated into one `WordData` here. Choosing k ("best") trains DLFA for every
lower layer and keeps the lowest source-dev loss: the dev set is the only data a zero-shot
user may look at.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from probe.errors import ProbeError
from probe.heads.registry import HEADS, HeadKind
from probe.train import TrainConfig, TrainResult, WordData, fit, predict_proba
from probe.train.splits import CachedSplit, layer_array

log = logging.getLogger(__name__)

FuseLayer = int | Literal["best"] | None

# How DLFA heads train, in `probe grid` and wherever DLFA is compared with a probe: small
# batches and a linearly decaying rate, so eight epochs end converged on the source dev set
# (at lr 2e-3 and a flat rate, 30 epochs still left the dev loss falling: an arbitrary cut;
# 8 epochs reach the dev loss of 10, 6 do not: docs/dlfa.md).
# Its matrix products run in bfloat16 where the hardware does it natively (TrainConfig).
DLFA_TRAINING = TrainConfig(
    lr=1e-2, batch_size=512, max_epochs=8, schedule="linear", precision="auto"
)


@dataclass(frozen=True)
class HeadSpec:
    """Which head reads which layers: `linear` on `layer`, or `dlfa` on (last, layer).

    kind: a `probe.heads.registry.HEADS` name whose head reads one layer or a (last, k) pair.
    """

    kind: str
    layer: int  # the probed layer (one-layer heads) or the lower fused layer k (pair heads)
    last: int = -1  # pair heads only: the last layer

    def __post_init__(self) -> None:
        if self.head.reads == "all":
            raise ProbeError(
                f"a HeadSpec names one layer or a (last, k) pair; {self.kind!r} reads every layer"
            )

    @classmethod
    def linear(cls, layer: int) -> HeadSpec:
        return cls("linear", layer)

    @classmethod
    def dlfa(cls, k: int, last: int) -> HeadSpec:
        return cls("dlfa", k, last)

    @property
    def head(self) -> HeadKind:
        return HEADS.get(self.kind)

    @property
    def _pair(self) -> bool:
        return self.head.reads == "pair"

    @property
    def name(self) -> str:
        """The `layer` column of result rows: '3' for a probe, '3,6' for DLFA (k, last)."""
        return f"{self.layer},{self.last}" if self._pair else str(self.layer)

    @property
    def layers(self) -> list[int]:
        return sorted({self.layer, self.last}) if self._pair else [self.layer]

    def view(self, data: WordData) -> Any:
        """Flat words for a probe; padded sentences (h_last, h_k, mask) for DLFA."""
        layers = (self.last, self.layer) if self._pair else self.layer
        return self.head.view("word", data, layers)

    def build(self, hidden: int, n_classes: int, reduction: int) -> Any:
        return self.head.build("word", hidden, n_classes, reduction=reduction)


def word_data(splits: Sequence[CachedSplit], layers: Sequence[int]) -> WordData:
    """One `WordData` over the given layers of one or more word-level splits, concatenated."""
    if not splits:
        raise ValueError("word_data needs at least one split")
    if any(s.offsets is None for s in splits):
        raise ProbeError("these experiments need word-level (token) features")
    if len(splits) == 1:
        (only,) = splits
        feats = {layer: layer_array(only, layer) for layer in layers}
        return WordData(feats, only.labels, only.offsets)  # type: ignore[arg-type]
    feats = {layer: np.concatenate([layer_array(s, layer) for s in splits]) for layer in layers}
    labels = np.concatenate([s.labels for s in splits])
    offsets, base = [np.zeros(1, dtype=np.int64)], 0
    for s in splits:
        assert s.offsets is not None
        offsets.append(s.offsets[1:] + base)
        base += int(s.offsets[-1])
    return WordData(feats, labels, np.concatenate(offsets))


def n_words(splits: Sequence[CachedSplit]) -> int:
    return int(sum(len(s.labels) for s in splits))


def train_head(
    spec: HeadSpec,
    train: Sequence[CachedSplit],
    dev: Sequence[CachedSplit],
    n_classes: int,
    config: TrainConfig,
    reduction: int = 4,
) -> TrainResult:
    """Fit one head on (pooled) training splits, early-stopping on the (pooled) dev splits."""
    tr, dv = word_data(train, spec.layers), word_data(dev, spec.layers)
    hidden = tr.hidden
    return fit(
        lambda: spec.build(hidden, n_classes, reduction), spec.view(tr), spec.view(dv), config
    )


def predict(spec: HeadSpec, head: Any, splits: Sequence[CachedSplit]) -> np.ndarray:
    """Class probabilities (words, classes) for every word of the splits, in row order."""
    return predict_proba(head, spec.view(word_data(splits, spec.layers)))


def resolve_fuse_layer(fuse_layer: FuseLayer, n_layers: int) -> FuseLayer:
    """Check a given k against the model (0 <= k < last); 'best' and None pass through."""
    if fuse_layer is None or fuse_layer == "best":
        return fuse_layer
    last = n_layers - 1
    if not isinstance(fuse_layer, int) or not 0 <= fuse_layer < last:
        raise ProbeError(
            f"--fuse-layer must be a layer below the last one (0..{last - 1}), 'best' or "
            f"'none'; got {fuse_layer!r}"
        )
    return fuse_layer


def fit_dlfa(
    fuse_layer: int | Literal["best"],
    n_layers: int,
    train: Sequence[CachedSplit],
    dev: Sequence[CachedSplit],
    n_classes: int,
    config: TrainConfig,
    reduction: int = 4,
) -> tuple[HeadSpec, TrainResult, dict[int, float]]:
    """DLFA on (last, k): k as given, or 'best' by dev loss over every lower layer.

    Returns the chosen spec, its training result, and the dev loss of every k tried.
    """
    last = n_layers - 1
    candidates = range(last) if fuse_layer == "best" else [int(fuse_layer)]
    best: tuple[HeadSpec, TrainResult] | None = None
    dev_loss: dict[int, float] = {}
    for k in candidates:
        spec = HeadSpec.dlfa(k, last)
        result = train_head(spec, train, dev, n_classes, config, reduction)
        dev_loss[k] = float(result.best_dev_loss if result.best_dev_loss is not None else np.nan)
        if best is None or dev_loss[k] < dev_loss[best[0].layer]:
            best = (spec, result)
    assert best is not None
    if fuse_layer == "best":
        log.info(
            "DLFA: k=%d has the lowest dev loss (%s)",
            best[0].layer,
            ", ".join(f"k={k}: {v:.4f}" for k, v in dev_loss.items()),
        )
    return best[0], best[1], dev_loss


# --- one recipe per comparison -------------------------------------------------------------------

# The recipes a domain-shift or calibration run trains every head with (`--recipe`): DLFA's
# (the default: the fused head's own, so a probe beside it is not handicapped by a recipe
# tuned for another head) or the linear probe's (`TrainConfig()`: 30 epochs, flat rate, fp32).
RECIPES: dict[str, TrainConfig] = {"dlfa": DLFA_TRAINING, "probe": TrainConfig()}

# The TrainConfig fields that make a recipe (seed, device, threads and the evaluation batch
# change no trained head's recipe).
RECIPE_FIELDS = ("lr", "batch_size", "max_epochs", "patience", "weight_decay", "min_delta",
                 "schedule", "precision")  # fmt: skip


def recipe_differences(a: TrainConfig, b: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (a's value, b's)} for every recipe field where two heads' training differs;
    {} when they train alike."""
    return {name: (getattr(a, name), getattr(b, name)) for name in RECIPE_FIELDS
            if getattr(a, name) != getattr(b, name)}  # fmt: skip


def recipe_text(config: TrainConfig) -> str:
    """A recipe in words: `8 epochs, lr 0.01 decaying linearly, batch 512, precision auto`."""
    rate = "decaying linearly" if config.schedule == "linear" else "constant"
    return (f"{config.max_epochs} epochs (patience {config.patience}), lr {config.lr:g} {rate}, "
            f"batch {config.batch_size}, weight decay {config.weight_decay:g}, "
            f"precision {config.precision}")  # fmt: skip


def recipe_line(probes: TrainConfig, dlfa: TrainConfig) -> str:
    """The summary's line on how the compared heads trained: one recipe, or exactly which
    fields differ. Dropout is part of a head, not of its recipe: DLFA's own 0.1 after its
    gate is said either way (a linear probe has none)."""
    head_dropout = "dropout: DLFA's head has its own (0.1, after the fusion), a linear probe none"
    differ = recipe_differences(probes, dlfa)
    if not differ:
        return f"recipe: every head (probes and DLFA) trains alike: {recipe_text(probes)}; " + (
            head_dropout
        )
    fields = ", ".join(f"{k} {a} (probes) vs {b} (DLFA)" for k, (a, b) in differ.items())
    return f"recipes differ, so head differences mix head and recipe: {fields}; {head_dropout}"

"""The compute dtypes a run actually used, resolved from "auto", for settings.json.

Why: "precision: auto" names a rule, not a dtype: the same command trains in bfloat16 on a
GPU and in float32 on most CPUs. settings.json records what the rule picked on this machine
for each stage that has one (extraction, head training, DLFA, fine-tuning), and that every
evaluation (dev losses, scores, probabilities) runs in float32.
"""

from __future__ import annotations

from typing import Any

from probe.runtime.device import resolve_device
from probe.runtime.precision import pick_compute_dtype
from probe.train import TrainConfig

EVALUATION_DTYPE = "float32"


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def compute_dtypes(config: Any, extraction: str | None = None) -> dict[str, str]:
    """Stage -> dtype: `extract` (the cache spec's), each TrainConfig field of the config
    (`train`, `dlfa_train`, ...), `finetune` for a config with its own precision and device
    (the encoder trained under autocast), and `evaluate`, always float32."""
    out: dict[str, str] = {}
    if extraction:
        out["extract"] = extraction
    for name in ("train", "dlfa_train"):
        train = getattr(config, name, None)
        if isinstance(train, TrainConfig):
            out[name] = _name(pick_compute_dtype(train.precision, resolve_device(train.device)))
    tuned = getattr(config, "finetune", config)  # intermediate --finetune nests its config
    precision, device = getattr(tuned, "precision", None), getattr(tuned, "device", None)
    if isinstance(precision, str) and isinstance(device, str):
        dtype = pick_compute_dtype(precision, resolve_device(device), finetune=True)
        out["finetune"] = _name(dtype)
    out["evaluate"] = EVALUATION_DTYPE
    return out

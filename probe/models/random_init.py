"""Random-weights twins: a model's architecture and tokenizer with every weight drawn anew.

The control of NeuroX's `--random_weights` and Holmes' `rand-weights`: whatever a probe
reads off a randomly initialised encoder comes from the architecture, the tokenizer and the
probe itself, not from pretraining. The twin is built from the trained model's config with
`AutoModel.from_config` and re-initialised by the model's own `init_weights` (BERT: normal
with `initializer_range` for linear and embedding weights, ones and zeros for LayerNorm)
under `torch.manual_seed(seed)`, on the CPU, so one seed gives the same weights on every
machine and device. transformers is imported only inside the function that builds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from probe.errors import ProbeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Part of what a twin's cache key hashes: bump it if the way a twin is drawn ever changes
# (another init, another order of draws), so caches of the old draw are not read back.
RANDOM_INIT_VERSION = 1


def check_seed(seed: int | None) -> None:
    """A random-weights seed is None (the trained weights) or a non-negative integer."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ProbeError(f"random-weights seed must be a non-negative integer, not {seed!r}")


def random_slug(slug: str, seed: int | None) -> str:
    """The readable name of a twin's caches and results: `minilm` -> `minilm+random0`."""
    return slug if seed is None else f"{slug}+random{seed}"


def random_encoder(path: Path, seed: int, **kwargs: Any) -> PreTrainedModel:
    """The model at `path` with the same config and every weight re-initialised with `seed`.

    Drawn on the CPU inside a forked RNG, so the caller's random state is untouched and the
    draw does not depend on the device it later runs on. `kwargs` go to the model class
    (`add_pooling_layer=False`); a class that takes none of them is built without them.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    check_seed(seed)
    config = AutoConfig.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = AutoModel.from_config(config, **kwargs)
        except TypeError:
            model = AutoModel.from_config(config)
        # from_config has initialised every module already; drawing once more from the seed
        # makes the weights a function of (config, seed) alone, whatever from_config drew.
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "_is_hf_initialized"):
                module._is_hf_initialized = False  # newer transformers skip flagged modules
        model.init_weights()
    return cast("PreTrainedModel", model)

"""Loading a resolved model: the encoder in eval mode and its fast tokenizer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from probe.errors import ProbeError
from probe.models.random_init import random_encoder

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from probe.models.aliases import ModelRef


def load_encoder(
    ref: ModelRef, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load the encoder in eval mode with a fast tokenizer (needed for word alignment).

    A ref with `random_weights` gets its random-weights twin: the same config and
    tokenizer, every weight re-drawn with that seed (`probe.models.random_init`); extraction,
    fine-tuning and every other caller of this function see the same twin.
    """
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    if not getattr(tokenizer, "is_fast", False):
        raise ProbeError(
            f"model {ref.name!r} has no fast tokenizer (tokenizer.json); subword-to-word "
            "alignment needs one. Convert it with transformers' convert_slow_tokenizer."
        )
    kwargs: dict[str, Any] = {"add_pooling_layer": False}
    if ref.random_weights is not None:
        model = random_encoder(ref.path, ref.random_weights, **kwargs)
    else:
        try:
            model = AutoModel.from_pretrained(ref.path, **kwargs)
        except TypeError:
            model = AutoModel.from_pretrained(ref.path)
    model.eval().to(device)
    return cast("PreTrainedModel", model), cast("PreTrainedTokenizerFast", tokenizer)


def _quiet_transformers() -> None:
    """Loading reports list unused pooler weights; they are noise for feature extraction."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

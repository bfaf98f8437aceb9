"""The encoder's forward pass: prepared batches in, every layer's pooled rows out.

Subword vectors of every hidden state are pooled to rows (probe.extract.pooling). On the
CPU they go straight into the block's feature buffer, layers in parallel; on a GPU they are
pooled on the device, only the kept positions of each layer are copied back, and a
`RowSink` scatters them into the block on a thread of its own while the next batch runs
(`submit`, then `drain`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from probe.errors import ProbeError
from probe.extract.batching import PreparedBatch
from probe.extract.pooling import BatchIndex, CpuPooler, pool_layer
from probe.extract.rows import RowSink
from probe.extract.windows import UnitBuilder
from probe.runtime.faults import fault_point
from probe.runtime.precision import autocast

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)


class Encoder:
    """The model, its tokenizer (as `units`, the builder of its inputs) and precision."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerFast,
        device: torch.device,
        compute_dtype: torch.dtype,
        max_length: int,
        window_stride: int | None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.compute_dtype = compute_dtype
        limit = _position_limit(model)
        if max_length > limit:
            log.info(
                "max_length %d exceeds the model's %d positions; using %d", max_length, limit, limit
            )
        self.units = UnitBuilder(tokenizer, min(max_length, limit), window_stride)
        config = model.config
        self.n_layers = int(config.num_hidden_layers) + 1
        self.hidden = int(config.hidden_size)
        self.rows = RowSink(device)
        self.cpu_pooler = CpuPooler() if device.type == "cpu" else None

    @property
    def max_length(self) -> int:
        """The window length actually used (the request, capped at the model's positions)."""
        return self.units.max_length

    @property
    def stride(self) -> int:
        return self.units.stride

    def run(self, batch: PreparedBatch, out: np.ndarray) -> None:
        """Run one prepared batch; its pooled rows are in `out` (layers, rows, hidden) on return."""
        self.submit(batch, out)
        self.drain()

    def drain(self) -> None:
        """Wait until every submitted batch's rows are in its `out` (before writing a block)."""
        self.rows.drain()

    @torch.inference_mode()
    def submit(self, batch: PreparedBatch, out: np.ndarray) -> None:
        """Run one prepared batch; its pooled rows reach `out` (layers, rows, hidden) by
        `drain()` (on the CPU, on return). `out` must not be read or reused before that."""
        states = self._forward(batch.input_ids, batch.mask, batch.types)
        if self.cpu_pooler is not None:
            self.cpu_pooler.pool(states, batch, out)
            return
        # On the device: only the kept positions of each layer are pooled (stacking every
        # hidden state first would copy all tokens of all layers, padding included), into
        # one staging tensor of the storage dtype, then one transfer; the scatter into `out`
        # runs on the row thread.
        index = BatchIndex(batch, self.device)
        store_dtype = torch.from_numpy(out[:0]).dtype
        staged = self.rows.stage((len(states), len(batch.rows), self.hidden), store_dtype)
        for layer, state in enumerate(states):
            staged[layer].copy_(pool_layer(state, index))
        self.rows.submit(staged, batch.rows, out)

    def _forward(
        self, input_ids: np.ndarray, mask: np.ndarray, types: np.ndarray
    ) -> tuple[torch.Tensor, ...]:
        """Every hidden state of one batch, each (windows, width, hidden), embeddings first."""
        dev = self.device
        pin = dev.type == "cuda"
        kwargs: dict[str, Any] = {
            "input_ids": _to(input_ids, dev, pin),
            "attention_mask": _to(mask, dev, pin),
            "output_hidden_states": True,
            "return_dict": True,
        }
        if "token_type_ids" in self.tokenizer.model_input_names:
            kwargs["token_type_ids"] = _to(types, dev, pin)
        fault_point("forward")
        with autocast(dev, self.compute_dtype):
            outputs = self.model(**kwargs)
        states = outputs.hidden_states
        if len(states) != self.n_layers:
            raise ProbeError(
                f"model returned {len(states)} hidden states, expected {self.n_layers}"
            )
        return tuple(states)


def _to(array: np.ndarray, device: torch.device, pin: bool) -> torch.Tensor:
    """A compact integer array as an int64 tensor on `device` (widened after the copy)."""
    tensor = torch.from_numpy(array)
    if pin:
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device, torch.int64)


def _position_limit(model: PreTrainedModel) -> int:
    config = model.config
    limit = int(getattr(config, "max_position_embeddings", 512))
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= 2  # positions start after the padding index
    return limit

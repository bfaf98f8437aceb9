"""How tensor ops run: the compute dtype a precision name picks, the autocast context that
uses it, and oneDNN's kernel caches.

Extraction and head training share one rule: bfloat16 on CUDA devices that support it and on
CPUs whose oneDNN runs it natively (AVX512-BF16, AMX), float32 elsewhere. Fine-tuning keeps
its own rule (see `pick_compute_dtype`). Storage and master weights never change precision;
only the matrix products inside the context do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

from probe.errors import ProbeError

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
# Fine-tuning trains the encoder itself under autocast; float16 there would need a loss
# scaler, which it does not have.
FINETUNE_PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_compute_dtype(
    requested: str, device: torch.device, *, finetune: bool = False
) -> torch.dtype:
    """The dtype of the matrix products for a precision name on this device.

    "auto": bf16 where the hardware does it natively (CUDA, or fp16 on CUDA without bf16;
    CPUs with AVX512-BF16/AMX), else fp32. With `finetune` (the encoder is trained):
    only FINETUNE_PRECISIONS, and "auto" is bf16 on any CUDA device and fp32 on every CPU,
    whatever its bf16 support: the rule fine-tuning has always had, so its numbers stay.
    """
    allowed = FINETUNE_PRECISIONS if finetune else PRECISIONS
    if requested not in allowed:
        raise ProbeError(f"precision must be one of {', '.join(allowed)}, not {requested!r}")
    if requested != "auto":
        return getattr(torch, requested)
    if finetune:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """torch.autocast for a reduced dtype; a no-op context for float32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# ideep (PyTorch's oneDNN wrapper) and oneDNN keep compiled kernels per input shape in caches
# of up to 1024 entries, each holding a copy of the weights in the kernel's layout.
# Extraction meets a new shape with almost every batch (rows x width vary), so with the
# default capacity its resident memory grew by ~1.7 KB per word until the caches filled
# (+160 MB from 6k to 12k UD sentences with MiniLM; more for larger models). 16 entries hold
# the few shapes of one batch's layers: as fast as the default, and flat memory (measured:
# 1317 vs 1314 MB peak at 6k and 12k sentences; capacity 1 rebuilt a kernel at every linear
# layer and was 10-15% slower, 64 grew again). Head training repeats its shapes every epoch
# and keeps the default.
KERNEL_CACHE_VARIABLES = ("LRU_CACHE_CAPACITY", "ONEDNN_PRIMITIVE_CACHE_CAPACITY")
EXTRACTION_KERNEL_CACHE = 16


@contextmanager
def small_kernel_caches(capacity: int = EXTRACTION_KERNEL_CACHE) -> Iterator[None]:
    """Cap the per-shape kernel caches for a run that starts inside this block.

    Both libraries read their capacity from the environment once, at their first use in the
    process, so this takes effect only when no oneDNN kernel has run yet (a fresh
    `probe extract`); afterwards it changes nothing. A capacity the user set is kept. The
    environment is restored on exit, so worker processes started later (grid, layers)
    get the default caches their training wants.
    """
    saved = {name: os.environ.get(name) for name in KERNEL_CACHE_VARIABLES}
    for name in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, str(capacity))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

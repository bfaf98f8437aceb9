"""How tensor ops run: where bfloat16 is native, the autocast context that uses it, torch's
CPU thread count and oneDNN's kernel caches.

Extraction and head training share one rule: bfloat16 on CUDA devices that support it and on
CPUs whose oneDNN runs it natively (AVX512-BF16, AMX), float32 elsewhere. Storage and master
weights never change precision; only the matrix products inside the context do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_compute_dtype(requested: str, device: torch.device) -> torch.dtype:
    """bf16 where the hardware does it natively (CUDA, CPUs with AVX512-BF16/AMX), else fp32."""
    if requested != "auto":
        return getattr(torch, requested)
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


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block (process-wide), then restore it;
    None keeps it. Cheap when nothing changes, so it can wrap every batch of a hot loop."""
    before = torch.get_num_threads()
    change = n is not None and n != before
    if n is not None and change:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


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

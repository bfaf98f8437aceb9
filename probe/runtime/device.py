"""The one device resolver: `--device` (auto, cpu, cuda, cuda:1, ...) to a torch device.

Extraction, training and fine-tuning all take the same spec, so "auto" and a missing GPU
mean the same everywhere; under torchrun each rank takes its own GPU (cuda:LOCAL_RANK).
"""

from __future__ import annotations

import torch

from probe.errors import ProbeError
from probe.runtime.ranks import Rank

#: The specs that make sense under a multi-process launch (and the CLI's short list).
DEVICE_SPECS: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(spec: str, rank: Rank | None = None) -> torch.device:
    """The device `spec` names for this process.

    "auto" is CUDA when torch sees a GPU, else the CPU; any "cuda..." without CUDA is an
    error rather than a silent CPU run. In a distributed run (`rank.distributed`) every rank
    uses cuda:LOCAL_RANK (made the current device), so only auto, cuda and cpu are allowed.
    """
    if rank is None or not rank.distributed:
        if spec == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if spec.startswith("cuda") and not torch.cuda.is_available():
            raise _no_gpu(spec)
        return torch.device(spec)
    if spec not in DEVICE_SPECS:
        raise ProbeError(
            f"--device {spec} names one device, but under torchrun every rank picks its own "
            "(cuda:LOCAL_RANK): pass --device auto, cuda or cpu"
        )
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise _no_gpu(spec)
    if rank.local_rank >= count:
        raise ProbeError(
            f"LOCAL_RANK {rank.local_rank} has no GPU: this node shows {count}; start at most "
            f"{count} processes per node (torchrun --nproc_per_node {count})"
        )
    chosen = torch.device("cuda", rank.local_rank)
    torch.cuda.set_device(chosen)
    return chosen


def _no_gpu(spec: str) -> ProbeError:
    """No fallback to the CPU: a run asked for a GPU should not silently take hours."""
    return ProbeError(
        f"--device {spec} was asked for, but torch sees no CUDA device (no GPU is visible); "
        "use auto or cpu"
    )

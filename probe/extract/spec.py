"""What an extraction is asked: the numbers (spec), the data (request), the speed (options),
the places (paths), each its own frozen value.

Only `ExtractSpec` (with the model's file identity and the concrete compute dtype) decides
the cache key; a request names data inside that key, and options and paths never change a
cached number, so they can differ between runs (another device, a larger batch, another
cache root) without touching what is read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from probe.cache import CacheSpec, default_cache_root
from probe.data.tasks import default_data_dir
from probe.errors import ProbeError
from probe.runtime.precision import PRECISIONS

if TYPE_CHECKING:
    from probe.models import ModelRef

Pooling = Literal["first", "mean", "last"]
POOLINGS: tuple[str, ...] = ("first", "mean", "last")
STORAGE_DTYPES: tuple[str, ...] = ("float16", "float32")
COMPUTE_DTYPES: tuple[str, ...] = PRECISIONS
OVERWRITE: tuple[str, ...] = ("never", "missing", "always")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ProbeError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


@dataclass(frozen=True)
class ExtractSpec:
    """Everything that changes the cached numbers: with the model's file identity and the
    concrete compute dtype it becomes the `CacheSpec` whose hash is the cache key."""

    model: str  # alias, hub id or local directory
    pooling: Pooling = "first"  # subwords to a word (word tasks; sentence tasks: mean)
    dtype: str = "float16"  # storage dtype
    compute_dtype: str = "auto"  # forward precision; "auto" resolves on the device
    max_length: int = 512
    window_stride: int | None = None  # step between overlapping windows; None = half a window

    def __post_init__(self) -> None:
        _check("pooling", self.pooling, POOLINGS)
        _check("dtype", self.dtype, STORAGE_DTYPES)
        _check("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        if self.max_length < 8:
            raise ProbeError(f"max_length must be at least 8, not {self.max_length}")

    def cache_spec(self, ref: ModelRef, compute_dtype: str) -> CacheSpec:
        """The hashed spec once the model is resolved and "auto" precision is decided."""
        return CacheSpec(
            model_identity=ref.identity,
            pooling=self.pooling,
            max_length=self.max_length,
            window_stride=self.window_stride or 0,
            dtype=self.dtype,
            compute_dtype=compute_dtype,
            slug=ref.slug,
        )


@dataclass(frozen=True)
class ExtractRequest:
    """Which data to extract under a spec: a task's languages and splits.

    `max_sentences` is part of the data's identity (each shard's source hash), not of the key.
    """

    task: str
    langs: tuple[str, ...] = ("all",)
    splits: tuple[str, ...] | None = None  # None: the splits a zero-shot run from `source` needs
    source: str | None = None
    max_sentences: int | None = None  # cap per split (first N records)


@dataclass(frozen=True)
class ExtractOptions:
    """How fast and how eagerly: never part of the cache key or of a run's identity."""

    device: str = "auto"
    batch_tokens: int | None = None  # None: 4096 on CPU, 32768 on CUDA
    shard_rows: int = 2_000_000  # words (or pairs) per shard file
    block_bytes: int = 256 << 20  # feature bytes computed between two writes
    overwrite: str = "missing"  # never | missing | always

    def __post_init__(self) -> None:
        _check("overwrite", self.overwrite, OVERWRITE)


@dataclass(frozen=True)
class CachePaths:
    """Where the cache lives and where task data is read from (None: the HF hub).

    Taken as given; `resolve` is the one place the environment fills in what is missing.
    """

    cache_root: Path = Path("cache")
    data_dir: Path | None = None

    @classmethod
    def resolve(cls, cache_dir: Path | None = None, data_dir: Path | None = None) -> CachePaths:
        """`--cache-dir` beats $PROBE_CACHE, which beats ./cache; `--data-dir` beats
        $PROBE_DATA (neither: the hub)."""
        return cls(default_cache_root(cache_dir), default_data_dir(data_dir))

    def require_data_dir(self, command: str) -> Path:
        """The data directory, or the error that says how to give one."""
        if self.data_dir is None:
            raise ProbeError(
                f"{command}: no data directory: pass --data-dir or set PROBE_DATA (reading "
                "from the HF hub is available through probe.data.sources.hub when online)"
            )
        return self.data_dir

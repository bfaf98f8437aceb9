"""What an extraction is asked: the numbers (spec), the data (request), the speed (options),
the places (paths), each its own frozen value.

Only `ExtractSpec` (with the model's file identity and the concrete compute dtype) decides
the cache key; a request names data inside that key, and options and paths never change a
cached number, so they can differ between runs (another device, a larger batch, another
cache root) without touching what is read back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from probe.cache import CacheSpec, default_cache_root
from probe.data.tasks import default_data_dir
from probe.errors import ProbeError
from probe.models import ModelRef
from probe.models.random_init import RANDOM_INIT_VERSION, check_seed
from probe.runtime.precision import PRECISIONS

# How a word's subwords become its vector. `first-content` is the first piece that is not a
# bare word-boundary marker (SentencePiece's "▁" alone, which is most zh/ja words' first
# piece with me5/XLM-R), the marker only where the word has nothing else; with WordPiece it
# is `first`, bit for bit. It is the default everywhere; `first` is XTREME's choice.
Pooling = Literal["first-content", "first", "mean", "last"]
POOLINGS: tuple[str, ...] = ("first-content", "first", "mean", "last")
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
    pooling: Pooling = "first-content"  # subwords to a word (word tasks; sentence tasks: mean)
    dtype: str = "float16"  # storage dtype
    compute_dtype: str = "auto"  # forward precision; "auto" resolves on the device
    max_length: int = 512
    window_stride: int | None = None  # step between overlapping windows; None = half a window
    # The seed of the model's random-weights twin (same config and tokenizer, every weight
    # re-drawn: probe.models.random_init); None: the trained weights. Its own cache key.
    random_weights: int | None = None

    def __post_init__(self) -> None:
        _check("pooling", self.pooling, POOLINGS)
        _check("dtype", self.dtype, STORAGE_DTYPES)
        _check("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        if self.max_length < 8:
            raise ProbeError(f"max_length must be at least 8, not {self.max_length}")
        check_seed(self.random_weights)

    def cache_spec(self, ref: ModelRef, compute_dtype: str) -> CacheSpec:
        """The hashed spec once the model is resolved and "auto" precision is decided."""
        if ref.random_weights != self.random_weights:
            raise ProbeError(
                f"model {ref.name!r} was resolved with random_weights={ref.random_weights} but "
                f"the spec asks random_weights={self.random_weights}; pass the spec's "
                "random_weights to resolve_model"
            )
        twin = self.random_weights is not None
        return CacheSpec(
            model_identity=ref.identity,
            pooling=self.pooling,
            max_length=self.max_length,
            window_stride=self.window_stride or 0,
            dtype=self.dtype,
            compute_dtype=compute_dtype,
            random_weights=self.random_weights,
            random_init_version=RANDOM_INIT_VERSION if twin else None,
            slug=ref.slug,
        )

    def settings(self) -> dict[str, Any]:
        """The spec as a run's settings.json records it (`extract`): every field, but
        `random_weights` only for a twin, so the settings (and the results directory hashed
        from them) of a trained model's run are what they were before twins existed."""
        fields = asdict(self)
        if self.random_weights is None:
            del fields["random_weights"]
        return fields


def random_twin(spec: ExtractSpec, seed: int = 0) -> ExtractSpec:
    """The same extraction of the model's random-weights twin (seed `seed`): same config,
    tokenizer, pooling and precision, every weight re-drawn; its cache key is its own.

    What a command that shows a model beside its random baseline extracts second, e.g.
    `probe layers`' per-layer scores of the trained model and of `random_twin(spec)`.
    """
    return replace(spec, random_weights=seed)


@dataclass(frozen=True)
class ExtractRequest:
    """Which data to extract under a spec: a task's languages and splits.

    `max_sentences`, `split_caps` and `max_eval_sentences` are part of the data's identity
    (each shard's source hash), not of the key. All are seeded random samples of whole
    records, stratified by genre (`probe.data.subsets`), drawn with `seed`: `max_sentences`
    records per split, then `max_eval_sentences` of each evaluation split, then
    each `(split, budget)` of `split_caps` keeps at most `budget` words (pairs for pair tasks)
    of that split in the language that trains (`source`; every language when it is None),
    the very sample `probe.train.splits.train_dev` draws with the same budget and seed, so a
    capped run never encodes a whole training split.
    """

    task: str
    langs: tuple[str, ...] = ("all",)
    splits: tuple[str, ...] | None = None  # None: the splits a zero-shot run from `source` needs
    source: str | None = None
    max_sentences: int | None = None  # cap per split (a seeded sample of N records)
    split_caps: tuple[tuple[str, int], ...] = ()  # (split, words or pairs) of the source
    seed: int = 0  # the seed of every sample above
    treebanks: tuple[str, ...] = ()  # UD picks, e.g. ("en_ewt+en_gum", "cs_pdt"); () = default
    # Every language's evaluation split keeps a seeded sample of at most this many records (a
    # CPU budget; XNLI's and PAWS-X's row-aligned translations keep the same rows everywhere).
    max_eval_sentences: int | None = None
    # Skip evaluation splits whose labels are all hidden (PAWS-X's XTREME test files but de
    # and zh): nothing scores them, and a token view costs ~0.6 MB a pair to cache.
    scored_only: bool = False


@dataclass(frozen=True)
class ExtractOptions:
    """How fast and how eagerly: never part of the cache key or of a run's identity."""

    device: str = "auto"
    batch_tokens: int | None = None  # None: 4096 on CPU, 32768 on CUDA
    # words (or pairs) per shard file; a token view's: tokens, token_length per pair
    shard_rows: int = 2_000_000
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

"""The cache key: every input that changes the cached numbers, hashed as canonical JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from probe.cache import schema
from probe.errors import ProbeError


@dataclass(frozen=True)
class CacheSpec:
    """Every input that changes the cached numbers; its hash is the cache key.

    The key must stay byte-identical for the same inputs (existing caches are found by it):
    sha256 of the JSON of every field but `slug`, keys sorted, first 16 hex digits.
    `random_weights` (the seed of a random-weights twin, `probe.models.random_init`) and
    `random_init_version` are hashed only for a twin, so every trained model's key is the
    one it had before twins existed, and a twin's key is never a trained model's.
    """

    model_identity: str  # sha256 of weights, config and tokenizer files
    pooling: str  # first-content | first | mean | last (word tasks); sentences: the task's
    max_length: int
    window_stride: int
    dtype: str  # storage dtype
    compute_dtype: str  # float32 | bfloat16 | float16
    format_version: int = schema.FORMAT_VERSION
    extractor_version: int = field(default_factory=lambda: schema.EXTRACTOR_VERSION)
    random_weights: int | None = None  # seed of a re-initialised twin; None: trained weights
    random_init_version: int | None = None  # how the twin was drawn; set with random_weights
    slug: str = field(default="model", compare=False)  # readable prefix only, not hashed

    def __post_init__(self) -> None:
        if (self.random_weights is None) != (self.random_init_version is None):
            raise ProbeError("a cache spec sets random_weights and random_init_version together")

    def key(self) -> str:
        payload = {k: v for k, v in asdict(self).items() if k != "slug"}
        if self.random_weights is None:  # trained weights: the key of before twins existed
            del payload["random_weights"], payload["random_init_version"]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.slug}-{digest[:16]}"

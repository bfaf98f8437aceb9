"""The cache key: every input that changes the cached numbers, hashed as canonical JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from probe.cache import schema


@dataclass(frozen=True)
class CacheSpec:
    """Every input that changes the cached numbers; its hash is the cache key.

    The key must stay byte-identical for the same inputs (existing caches are found by it):
    sha256 of the JSON of every field but `slug`, keys sorted, first 16 hex digits.
    """

    model_identity: str  # sha256 of weights, config and tokenizer files
    pooling: str  # first-content | first | mean | last (word tasks); sentences: the task's
    max_length: int
    window_stride: int
    dtype: str  # storage dtype
    compute_dtype: str  # float32 | bfloat16 | float16
    format_version: int = schema.FORMAT_VERSION
    extractor_version: int = field(default_factory=lambda: schema.EXTRACTOR_VERSION)
    slug: str = field(default="model", compare=False)  # readable prefix only, not hashed

    def key(self) -> str:
        payload = {k: v for k, v in asdict(self).items() if k != "slug"}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.slug}-{digest[:16]}"

"""Extraction: run the encoder once over task data and write every layer to the cache.

`ensure_cached(spec, requests, options, paths)` makes the requested splits complete under
the one cache key `spec` gives and returns the `CacheHandle` that experiments read by.
Modules: `spec` (what is asked), `plan` (splits and shards), `windows` and `batching`
(tokens in), `encoder` (layers out), `blocks` (bounded work between them), `background`
(writer and prefetch threads), `run` (ensure_cached), `handle` (reports and the handle).
"""

from __future__ import annotations

from probe.extract.encoder import Encoder
from probe.extract.handle import CacheHandle, ExtractReport, ShardReport
from probe.extract.run import ensure_cached
from probe.extract.spec import CachePaths, ExtractOptions, ExtractRequest, ExtractSpec

__all__ = [
    "CacheHandle",
    "CachePaths",
    "Encoder",
    "ExtractOptions",
    "ExtractReport",
    "ExtractRequest",
    "ExtractSpec",
    "ShardReport",
    "ensure_cached",
]

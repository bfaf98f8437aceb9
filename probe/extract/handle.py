"""What an extraction returns: per-shard reports and the handle experiments read the cache by.

A `CacheHandle` is paths and strings only, so it pickles into pool workers, which open the
splits they need themselves; one handle is one cache key.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe._version import __version__
from probe.cache import CacheSpec, SplitReader, open_shard, split_shard_paths
from probe.extract.spec import ExtractSpec

log = logging.getLogger(__name__)


@dataclass
class ShardReport:
    """One shard: rows are words for word-level tasks, pairs for sentence-level ones."""

    path: Path
    rows: int
    seconds: float
    skipped: bool
    tokens: int = 0
    pad_tokens: int = 0
    source_hash: str = ""  # identity of the data the shard was (or is to be) built from
    rank: int = 0  # which rank of a distributed run extracted it


@dataclass
class ExtractReport:
    key: str
    cache_dir: Path
    device: str
    compute_dtype: str
    shards: list[ShardReport] = field(default_factory=list)
    world_size: int = 1  # ranks that shared the work (torchrun / accelerate launch)
    rank: int = 0  # the rank that returned this report (every rank gets the merged list)
    wall_seconds: float = 0.0  # from the first shard to the last rank finishing

    @property
    def extracted(self) -> list[ShardReport]:
        return [s for s in self.shards if not s.skipped]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.extracted)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.extracted)

    @property
    def padding_waste(self) -> float:
        tokens = sum(s.tokens for s in self.extracted)
        return sum(s.pad_tokens for s in self.extracted) / tokens if tokens else 0.0


@dataclass(frozen=True)
class CacheHandle:
    """The cache one `ensure_cached` call made complete: its key and root, the spec asked
    and the spec hashed, and the report naming every shard of the requests (extracted now
    or reused)."""

    key: str
    root: Path
    spec: ExtractSpec
    cache_spec: CacheSpec
    report: ExtractReport

    @property
    def directory(self) -> Path:
        return self.root / self.key

    def languages(self, task: str, source: str | None = None) -> tuple[str, ...]:
        """The languages with shards of `task`, `source` first, the rest sorted."""
        shards = self.report.shards
        langs = {s.path.parent.name for s in shards if s.path.parent.parent.name == task}
        return tuple(sorted(langs, key=lambda x: (x != source, x)))

    @functools.cached_property
    def n_layers(self) -> int:
        """Hidden states per row (embeddings included), read off the first shard."""
        with open_shard(self.report.shards[0].path) as shard:
            return shard.n_layers

    def open(self, task: str, lang: str, split: str) -> SplitReader:
        return SplitReader.open(self.root, self.key, task, lang, split)

    def labelled(self, task: str, lang: str, split: str) -> bool:
        """Whether every row of the split has a label (a hidden-label split is not scored,
        nor one left out of the cache for it: `ExtractRequest.scored_only`)."""
        if not split_shard_paths(self.root, self.key, task, lang, split):
            log.info("%s/%s/%s is not cached (its labels are hidden): not scored", task, lang,
                     split)  # fmt: skip
            return False
        with self.open(task, lang, split) as reader:
            labelled = not np.any(reader.labels < 0)
        if not labelled:
            log.warning("%s/%s/%s has unlabelled rows: not scored", task, lang, split)
        return labelled

    def identity(self) -> dict[str, Any]:
        """The cached features a run reads: cache key, each shard's source hash, toolkit
        version (a journal of saved jobs is reused only for the same identity)."""
        report = self.report
        shards = {s.path.relative_to(report.cache_dir).as_posix(): s.source_hash
                  for s in report.shards}  # fmt: skip
        return {"key": self.key, "shards": shards, "version": __version__}

    def settings(self) -> dict[str, Any]:
        """What a run's settings record about the cache it read: model, key, and the spec
        asked (never the device or the cache root, which change no number); a random-weights
        twin's also `random_weights: {"seed": N}`."""
        out = {"model": self.spec.model, "cache_key": self.key, "extract": self.spec.settings()}
        if self.spec.random_weights is not None:
            out["random_weights"] = {"seed": self.spec.random_weights}
        return out

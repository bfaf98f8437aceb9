"""The HDF5 layer cache: cache keys, atomic shard writing, and the reader notebooks use.

Layout (docs/cache-format.md): `<root>/<model-key>/<task>/<lang>/<split>[-NNNNN].h5`.
Feature datasets are stored contiguously as (layers, rows, hidden), so one layer for every
row is one contiguous read; each layer's checksum (xxh3_64; CRC32 in format-1 shards) is
kept in the attrs so corruption is caught.

Modules: `schema` (versions, names, paths, attribute encoding, checksums), `key` (CacheSpec),
`manifest` (spec.json, manifest.json), `writer` (ShardWriter, the shard lock), `reader`
(Shard, SplitReader), `inventory` (`probe cache ...`). Needs only h5py and numpy. Tests that
monkeypatch a name patch it in the module that defines it (`writer.shard_lock`,
`schema.EXTRACTOR_VERSION`), where callers look it up.
"""

from __future__ import annotations

from probe.cache.key import CacheSpec
from probe.cache.manifest import read_manifest, update_manifest, write_spec
from probe.cache.reader import Shard, SplitReader, open_shard, shard_is_current
from probe.cache.schema import (
    FORMAT_VERSION,
    SENTENCE_FEATURES,
    WORD_FEATURES,
    base_attrs,
    default_cache_root,
    shard_path,
    split_shard_paths,
)
from probe.cache.writer import ShardWriter, remove_stale_temporaries, shard_lock, write_error

__all__ = [
    "FORMAT_VERSION",
    "SENTENCE_FEATURES",
    "WORD_FEATURES",
    "CacheSpec",
    "Shard",
    "ShardWriter",
    "SplitReader",
    "base_attrs",
    "default_cache_root",
    "open_shard",
    "read_manifest",
    "remove_stale_temporaries",
    "shard_is_current",
    "shard_lock",
    "shard_path",
    "split_shard_paths",
    "update_manifest",
    "write_error",
    "write_spec",
]

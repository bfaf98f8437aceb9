"""What a shard is on disk: versions, dataset names, paths, attribute encoding, checksums."""

from __future__ import annotations

import contextlib
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import xxhash

from probe._version import __version__

# 2: checksums are xxh3_64 (attr `checksum`), no longer CRC32. Format 1 shards still open.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
# The version of the code that computes the cached numbers (tokenising, windowing, word
# alignment, pooling, the forward's precision handling). It is part of every cache key, so
# shards written by older extraction code are never reused: bump it with any change that can
# alter a written feature, label or offset (docs/cache-format.md, "When to bump a version").
# Read it as `schema.EXTRACTOR_VERSION` (at call time), so a test can set it.
EXTRACTOR_VERSION = 2
WORD_FEATURES = ("features",)
# Per-row arrays of word shards streamed with the features: each word's type key as the
# model sees it (probe.data.alignment.WordPieces.type_keys), for control tasks.
WORD_ROW_ARRAYS = {"word_types": "int64"}
# Per-row arrays of a pair's token view (level "pair-tokens"): each token's segment, 0 for
# text a, 1 for text b, -1 for a special token ([CLS], [SEP], <s>, </s>).
TOKEN_ROW_ARRAYS = {"segments": "int8"}
SENTENCE_FEATURES = ("sentence_features", "sentence_features_b")
STR = h5py.string_dtype(encoding="utf-8")


def default_cache_root(explicit: Path | None = None) -> Path:
    """`--cache-dir` beats PROBE_CACHE, which beats ./cache."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get("PROBE_CACHE", "cache"))


def shard_path(
    root: Path, key: str, task: str, lang: str, split: str, index: int | None = None
) -> Path:
    """`<root>/<key>/<task>/<lang>/<split>.h5`, or `<split>-NNNNN.h5` for piece `index`."""
    name = f"{split}.h5" if index is None else f"{split}-{index:05d}.h5"
    return root / key / task / lang / name


def split_shard_paths(root: Path, key: str, task: str, lang: str, split: str) -> list[Path]:
    """The shard files of one split, in order (a single `<split>.h5` or numbered pieces)."""
    directory = root / key / task / lang
    single = directory / f"{split}.h5"
    if single.exists():
        return [single]
    return sorted(directory.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9].h5"))


def base_attrs(**extra: Any) -> dict[str, Any]:
    """Attrs every shard carries, whatever wrote it."""
    return {
        "format_version": FORMAT_VERSION,
        "extractor_version": EXTRACTOR_VERSION,
        "toolkit_version": __version__,
        **extra,
    }


def rebuild_hint(path: Path) -> str:
    """The fix every unreadable-shard error ends with."""
    return (
        f"Check the cache with `probe cache verify`; rebuild this shard with "
        f"`probe cache rm {path}` and rerun the command (complete shards are reused)."
    )


def encode_attr(value: Any) -> Any:
    """Lists of strings stay native HDF5 string arrays (plain h5py reads them); dicts are JSON."""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=STR)
    return value


def decode_attr(value: Any) -> Any:
    """The Python value `encode_attr` stored (JSON back to dicts and lists, numpy to Python)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(ValueError):
            return json.loads(value)
    if isinstance(value, np.ndarray):
        items = value.tolist()
        return [v.decode() if isinstance(v, bytes) else v for v in items]
    if isinstance(value, np.generic):
        return value.item()
    return value


# The checksum new shards carry, named in their `checksum` attribute. xxh3_64 runs at about
# 28 GB/s on one core where zlib's CRC32 runs at 3 (benchmarks/README.md): at GPU rates
# CRC32 alone would take a core per 60,000 mBERT words/s. A shard without the attribute
# was written with CRC32 (format 1) and is verified with it.
CHECKSUM = "xxh3_64"
LEGACY_CHECKSUM = "crc32"
CHECKSUMS = ("xxh3_64", "crc32")


class Digest(Protocol):
    """A running checksum: fed buffers in order, read once at the end."""

    def update(self, data: Any) -> None: ...

    def intdigest(self) -> int: ...


class _Crc32:
    """zlib's CRC32 behind the `Digest` interface (xxhash's objects already have it)."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Any) -> None:
        self._value = zlib.crc32(data, self._value)

    def intdigest(self) -> int:
        return self._value


def new_digest(algorithm: str) -> Digest:
    """A running checksum of `algorithm` (one of CHECKSUMS)."""
    if algorithm == "xxh3_64":
        return xxhash.xxh3_64()
    if algorithm == "crc32":
        return _Crc32()
    raise ValueError(f"unknown checksum {algorithm!r}; known: {', '.join(CHECKSUMS)}")


def checksum(data: Any, algorithm: str) -> int:
    """The checksum of one buffer (C-contiguous bytes) under `algorithm`."""
    if algorithm == "xxh3_64":
        return int(xxhash.xxh3_64_intdigest(data))
    if algorithm == "crc32":
        return zlib.crc32(data)
    raise ValueError(f"unknown checksum {algorithm!r}; known: {', '.join(CHECKSUMS)}")


def array_checksum(array: np.ndarray, algorithm: str) -> int:
    """The checksum of an array's bytes in C order."""
    return checksum(np.ascontiguousarray(array).data, algorithm)


def shard_checksum(attrs: dict[str, Any]) -> str:
    """The algorithm a shard's checksums were computed with (decoded attrs)."""
    return str(attrs.get("checksum", LEGACY_CHECKSUM))


def attrs_checksum(items: Iterable[tuple[str, Any]], algorithm: str) -> int:
    """Checksum of every attribute but `checksums`, as decoded: HDF5 keeps many attributes in
    a heap without checksums of its own, and a flipped bit there must not go unnoticed."""
    decoded = {k: decode_attr(v) for k, v in items if k != "checksums"}
    return checksum(json.dumps(decoded, sort_keys=True, default=str).encode(), algorithm)


def strings_checksum(values: Sequence[str], algorithm: str) -> int:
    """Checksum of a strings dataset (NUL-joined UTF-8; lone surrogates kept as written)."""
    return checksum("\0".join(values).encode("utf-8", "surrogatepass"), algorithm)

"""Shard checksums: new shards carry xxh3_64, format 1 shards (CRC32) still open and verify.

tests/data/format1-word-shard.h5 was written by the format 1 writer (the code before
xxh3_64, CRC32 checksums) with the features of `_format1_features()`: it stands for every
cache written before the change.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import xxhash

from probe.cache import open_shard
from probe.cache.schema import (
    CHECKSUM,
    FORMAT_VERSION,
    WORD_FEATURES,
    WORD_ROW_ARRAYS,
    array_checksum,
    base_attrs,
    new_digest,
)
from probe.cache.writer import ShardWriter
from probe.errors import CacheError

FORMAT1 = Path(__file__).resolve().parents[1] / "data" / "format1-word-shard.h5"


def _format1_features() -> np.ndarray:
    """The features the fixture was written with (3 layers, 5 words, hidden 4)."""
    return np.random.default_rng(23).standard_normal((3, 5, 4)).astype(np.float16)


def _write_shard(path: Path, features: np.ndarray, blocks: tuple[int, ...]) -> Path:
    """A word shard written by today's writer, its rows streamed in blocks of `blocks`."""
    n_layers, n_rows, hidden = features.shape
    writer = ShardWriter(
        path, feature_names=WORD_FEATURES, n_layers=n_layers, n_rows=n_rows, hidden=hidden,
        dtype="float16", row_arrays=WORD_ROW_ARRAYS,
        attrs=base_attrs(level="word", task="pos", lang="en", split="test", n_layers=n_layers,
                         hidden=hidden, label_names=["NOUN", "VERB"], dtype="float16"),
        arrays={"offsets": np.array([0, 2, n_rows], dtype=np.int64),
                "labels": np.arange(n_rows, dtype=np.int16) % 2},
        strings={"words": [f"w{i}" for i in range(n_rows)], "sentence_ids": ["s1", "s2"]},
    )  # fmt: skip
    row = 0
    for size in blocks:
        types = np.arange(row, row + size, dtype=np.int64)
        writer.write_rows(row, {"features": features[:, row : row + size], "word_types": types})
        row += size
    return writer.commit()


def _flip_feature(path: Path, layer: int) -> None:
    with h5py.File(path, "r+") as f:
        f["features"][layer, 0, 0] = f["features"][layer, 0, 0] + np.float16(1)


def test_format1_shard_still_opens_and_verifies_with_crc32() -> None:
    with open_shard(FORMAT1, verify=True) as shard:
        assert shard.attrs["format_version"] == 1 and "checksum" not in shard.attrs
        assert shard.checksum == "crc32"
        expected = _format1_features()
        for layer in range(3):
            np.testing.assert_array_equal(shard.layer(layer), expected[layer])
        assert shard.strings("words") == ["a", "b", "c", "d", "e"]
        assert shard.word_types.tolist() == [1, 2, 3, 4, 5]
    stored = json.loads(h5py.File(FORMAT1, "r").attrs["checksums"])
    assert stored["features"][1] == zlib.crc32(_format1_features()[1].tobytes())


def test_a_damaged_format1_shard_fails_its_crc32(tmp_path: Path) -> None:
    damaged = tmp_path / FORMAT1.name
    shutil.copy(FORMAT1, damaged)
    _flip_feature(damaged, 2)
    with open_shard(damaged) as shard:
        shard.layer(1)  # untouched layers still read
        with pytest.raises(CacheError, match="layer 2 of 'features' fails its checksum"):
            shard.layer(2)


def test_new_shards_carry_xxh3_streamed_over_blocks(tmp_path: Path) -> None:
    features = np.random.default_rng(0).standard_normal((4, 9, 8)).astype(np.float16)
    path = _write_shard(tmp_path / "test.h5", features, blocks=(2, 3, 4))
    with open_shard(path, verify=True) as shard:
        assert shard.attrs["format_version"] == FORMAT_VERSION == 2
        assert shard.attrs["checksum"] == shard.checksum == CHECKSUM == "xxh3_64"
        np.testing.assert_array_equal(shard.layer(3), features[3])
    stored = json.loads(h5py.File(path, "r").attrs["checksums"])
    # Streaming three blocks gives the checksum of the whole layer at once.
    assert stored["features"] == [xxhash.xxh3_64_intdigest(f.tobytes()) for f in features]
    assert stored["word_types"] == [array_checksum(np.arange(9, dtype=np.int64), CHECKSUM)]


def test_a_damaged_new_shard_fails_its_checksum(tmp_path: Path) -> None:
    features = np.random.default_rng(1).standard_normal((2, 5, 4)).astype(np.float16)
    path = _write_shard(tmp_path / "test.h5", features, blocks=(5,))
    _flip_feature(path, 1)
    with open_shard(path) as shard, pytest.raises(CacheError, match="layer 1 of 'features'"):
        shard.verify()


@pytest.mark.parametrize("algorithm", ["crc32", "md5"])
def test_a_changed_algorithm_name_is_corruption(tmp_path: Path, algorithm: str) -> None:
    """The `checksum` attribute is covered by the attrs checksum: a shard cannot be made to
    verify under another algorithm, and an unknown one is refused by name."""
    path = _write_shard(tmp_path / "test.h5", np.ones((2, 5, 4), np.float16), blocks=(5,))
    with h5py.File(path, "r+") as f:
        f.attrs["checksum"] = algorithm
    expected = "fail their checksum" if algorithm == "crc32" else "'md5' is unknown"
    with pytest.raises(CacheError, match=expected):
        open_shard(path)


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    path = _write_shard(tmp_path / "test.h5", np.ones((2, 5, 4), np.float16), blocks=(5,))
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CacheError, match="cache format 99 is not one this toolkit reads"):
        open_shard(path)


def test_digests_match_one_shot_checksums() -> None:
    data = np.random.default_rng(2).integers(0, 255, 10_000, dtype=np.uint8)
    for algorithm in ("xxh3_64", "crc32"):
        digest = new_digest(algorithm)
        for part in np.array_split(data, 7):
            digest.update(part.data)
        assert digest.intdigest() == array_checksum(data, algorithm)
    with pytest.raises(ValueError, match="unknown checksum 'sha1'"):
        new_digest("sha1")

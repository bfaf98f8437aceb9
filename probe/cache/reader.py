"""Reading shards back: every damaged byte is a CacheError naming the file and the fix.

`Shard` is one file, `SplitReader` one split across its numbered shards; both give numpy
arrays. Needs only h5py and numpy (notebooks read the cache without torch).
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.cache.schema import (
    FORMAT_VERSION,
    SENTENCE_FEATURES,
    WORD_FEATURES,
    attrs_crc,
    decode_attr,
    rebuild_hint,
    split_shard_paths,
    strings_crc,
)
from probe.errors import CacheError

log = logging.getLogger(__name__)

# What h5py raises when bytes under an open file turn out damaged (a bad heap or header).
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError)


class Shard:
    """Read access to one complete shard; h5py stays open until `close()` (or `with`).

    Damaged bytes are never returned as data. On open (cheap, always): HDF5's own checks
    (truncation, v110 metadata checksums), the datasets and their shapes against the attrs,
    and the CRC32 of `labels` and `offsets`, which are read once and kept. Each feature
    layer's CRC32 is checked the first time that layer is read (about as costly as the read
    itself, once), a strings dataset's each time it is read. `dataset()` is raw access.
    """

    def __init__(self, path: Path, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.attrs: dict[str, Any] = {k: decode_attr(v) for k, v in file.attrs.items()}
        self._checked: set[tuple[str, int]] = set()
        self._small: dict[str, np.ndarray] = {}
        self._checksums: dict[str, list[int]] = {}

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def level(self) -> str:
        return str(self.attrs["level"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return WORD_FEATURES if self.level == "word" else SENTENCE_FEATURES

    @property
    def n_layers(self) -> int:
        return int(self.attrs["n_layers"])

    @property
    def hidden(self) -> int:
        return int(self.attrs["hidden"])

    @property
    def n_rows(self) -> int:
        """Words for word-level shards, sentences (pairs) otherwise."""
        return int(self._file[self.feature_names[0]].shape[1])

    def layer(self, index: int, name: str | None = None) -> np.ndarray:
        """One layer for every row, (rows, hidden), in the stored dtype; 0 is the embeddings."""
        name = name or self.feature_names[0]
        if not -self.n_layers <= index < self.n_layers:
            raise IndexError(f"{self.path}: layer {index} out of range 0..{self.n_layers - 1}")
        index %= self.n_layers
        with self._reading(f"layer {index} of {name!r}"):
            data = self._file[name][index]
        if (name, index) not in self._checked:
            if zlib.crc32(np.ascontiguousarray(data).data) != self._checksums[name][index]:
                raise self._corrupt(f"layer {index} of {name!r} fails its checksum")
            self._checked.add((name, index))
        return data

    def dataset(self, name: str) -> h5py.Dataset:
        """The raw h5py dataset (not checksum-verified): for shapes, dtypes and slicing."""
        return self._file[name]

    @property
    def labels(self) -> np.ndarray:
        """Label index per row (read-only; verified on open)."""
        return self._small["labels"]

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["label_names"])

    @property
    def offsets(self) -> np.ndarray:
        """Word spans: sentence i is rows offsets[i]:offsets[i+1] (word-level shards)."""
        return self._small["offsets"]

    @property
    def word_types(self) -> np.ndarray:
        """Each word's type key as the model sees it (int64; equal iff the words' input ids
        are), read and checked on first use (word-level shards)."""
        if "word_types" not in self._small:
            if self.level != "word" or "word_types" not in self._file:
                raise self._corrupt("it has no 'word_types' dataset (a word shard must)")
            with self._reading("'word_types'"):
                array = self._file["word_types"][()]
            if zlib.crc32(np.ascontiguousarray(array).data) != self._checksums["word_types"][0]:
                raise self._corrupt("dataset 'word_types' fails its checksum")
            if array.shape != (self.n_rows,):
                raise self._corrupt(f"{len(array)} word types for {self.n_rows} rows")
            array.flags.writeable = False
            self._small["word_types"] = array
        return self._small["word_types"]

    def strings(self, name: str) -> list[str]:
        with self._reading(repr(name)):
            values = [s.decode() if isinstance(s, bytes) else s for s in self._file[name][()]]
        expected = self._checksums.get(name)  # shards written before strings had CRCs: none
        if expected is not None and strings_crc(values) != expected[0]:
            raise self._corrupt(f"dataset {name!r} fails its checksum")
        return values

    def verify(self) -> None:
        """Recompute every checksum the shard stores (`probe cache verify`)."""
        self._checked.clear()
        for name in self.feature_names:
            for layer in range(self.n_layers):
                self.layer(layer, name)
        for name in self._checksums:
            if name == "word_types":
                self._small.pop(name, None)  # read afresh: the check runs on first use
                self.word_types  # noqa: B018 (read for its check)
            elif name not in (*self.feature_names, *self._small, "attrs"):
                self.strings(name)

    def check_structure(self) -> None:
        """The cheap checks every open runs (see the class docstring)."""
        checksums = self.attrs.get("checksums")
        if not isinstance(checksums, dict) or not all(
            isinstance(v, list) and v and all(isinstance(x, int) for x in v)
            for v in checksums.values()
        ):
            raise self._corrupt("its checksums attribute is missing or unreadable")
        self._checksums = checksums
        try:
            n_layers, hidden = self.n_layers, self.hidden
            names = self.feature_names
        except (KeyError, ValueError, TypeError) as err:
            raise self._corrupt(f"attribute {err} is missing or unreadable") from err
        if set(checksums) - set(names):
            # Written with a CRC for every dataset and the attrs (shards written before that
            # have feature CRCs only); any other key set means a damaged name.
            if set(checksums) != {*self._file.keys(), "attrs"}:
                raise self._corrupt("its checksums do not name exactly its datasets")
            if attrs_crc(self.attrs.items()) != checksums["attrs"][0]:
                raise self._corrupt("its attributes fail their checksum")
        rows = -1
        for name in names:
            with self._reading(repr(name)):
                shape = self._file[name].shape
            rows = shape[1] if rows < 0 and len(shape) == 3 else rows
            if len(shape) != 3 or shape[0] != n_layers or shape[2] != hidden or shape[1] != rows:
                raise self._corrupt(
                    f"dataset {name!r} has shape {shape}, expected ({n_layers}, rows, {hidden})"
                )
            if len(checksums.get(name, ())) != n_layers:
                raise self._corrupt(f"the checksums do not cover the {n_layers} layers of {name!r}")
        wanted = ("offsets", "labels") if self.level == "word" else ("labels",)
        for name in wanted:
            with self._reading(repr(name)):
                array = self._file[name][()]
            expected = checksums.get(name)
            if expected is not None and zlib.crc32(np.ascontiguousarray(array).data) != expected[0]:
                raise self._corrupt(f"dataset {name!r} fails its checksum")
            array.flags.writeable = False
            self._small[name] = array
        if self._small["labels"].shape != (rows,):
            raise self._corrupt(f"{len(self._small['labels'])} labels for {rows} rows")
        if self.level == "word":
            offsets = self._small["offsets"]
            if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != rows or (
                np.any(np.diff(offsets) < 0)
            ):  # fmt: skip
                raise self._corrupt(f"its offsets do not span its {rows} rows in order")

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except _READ_ERRORS as err:
            raise self._corrupt(f"{what} is unreadable ({err})") from err

    def _corrupt(self, what: str) -> CacheError:
        return CacheError(f"{self.path}: shard is corrupt: {what}. {rebuild_hint(self.path)}")


def open_shard(path: Path | str, verify: bool = False) -> Shard:
    """Open a complete shard after the cheap checks (`Shard`); `verify` also recomputes every
    layer's checksum. An incomplete, foreign, truncated or corrupt file is a CacheError."""
    path = Path(path)
    hint = rebuild_hint(path)
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise CacheError(f"{path}: not a readable HDF5 shard ({err}). {hint}") from err
    try:
        try:
            shard = Shard(path, file)
        except _READ_ERRORS as err:
            raise CacheError(f"{path}: shard is corrupt: unreadable attributes ({err}). "
                             f"{hint}") from err  # fmt: skip
        if not bool(shard.attrs.get("complete", False)):
            raise CacheError(f"{path}: shard is incomplete (its writer did not finish). {hint}")
        version = shard.attrs.get("format_version", -1)
        if version != FORMAT_VERSION:
            raise CacheError(f"{path}: cache format {version} "
                             f"!= {FORMAT_VERSION} of this toolkit. {hint}")  # fmt: skip
        shard.check_structure()
        if verify:
            shard.verify()
    except BaseException:
        file.close()
        raise
    return shard


def shard_is_current(path: Path, source_hash: str) -> bool:
    """True when a complete shard exists for exactly this source data (else: re-extract)."""
    if not path.exists():
        return False
    try:
        with open_shard(path) as shard:
            return shard.attrs.get("source_hash") == source_hash
    except CacheError as err:
        log.warning("%s; it will be rebuilt", err)
        return False


class SplitReader:
    """One split across its shards, read as if it were one shard (numpy in, numpy out)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise CacheError("no shards given")
        self.shards = [open_shard(p) for p in paths]
        self.attrs = self.shards[0].attrs

    @classmethod
    def open(cls, root: Path, key: str, task: str, lang: str, split: str) -> SplitReader:
        paths = split_shard_paths(root, key, task, lang, split)
        if not paths:
            raise CacheError(
                f"nothing cached for {task}/{lang}/{split} under {root / key}; run `probe extract`"
            )
        return cls(paths)

    def __enter__(self) -> SplitReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    @property
    def n_layers(self) -> int:
        return self.shards[0].n_layers

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.shards[0].label_names

    def layer(self, index: int, name: str | None = None) -> np.ndarray:
        parts = [s.layer(index, name) for s in self.shards]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([s.labels for s in self.shards])

    @property
    def word_types(self) -> np.ndarray:
        return np.concatenate([s.word_types for s in self.shards])

    @property
    def offsets(self) -> np.ndarray:
        parts, base = [np.zeros(1, dtype=np.int64)], 0
        for shard in self.shards:
            offsets = shard.offsets
            parts.append(offsets[1:] + base)
            base += int(offsets[-1])
        return np.concatenate(parts)

    def strings(self, name: str) -> list[str]:
        return [s for shard in self.shards for s in shard.strings(name)]

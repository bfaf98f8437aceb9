"""Reading shards back: every damaged byte is a CacheError naming the file and the fix.

`Shard` is one file, `SplitReader` one split across its numbered shards; both give numpy
arrays. Needs only h5py and numpy (notebooks read the cache without torch).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.cache.schema import (
    CHECKSUMS,
    FORMAT_VERSION,
    READABLE_FORMATS,
    SENTENCE_FEATURES,
    WORD_FEATURES,
    array_checksum,
    attrs_checksum,
    decode_attr,
    rebuild_hint,
    shard_checksum,
    split_shard_paths,
    strings_checksum,
)
from probe.errors import CacheError
from probe.runtime.memory import small_page_array

log = logging.getLogger(__name__)

# What h5py raises when bytes under an open file turn out damaged (a bad heap or header).
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError)


class Shard:
    """Read access to one complete shard; h5py stays open until `close()` (or `with`).

    Damaged bytes are never returned as data. On open (cheap, always): HDF5's own checks
    (truncation, v110 metadata checksums), the datasets and their shapes against the attrs,
    and the checksums of `labels` and `offsets`, which are read once and kept. Each feature
    layer's checksum is checked the first time that layer is read, a strings dataset's each
    time it is read. `dataset()` is raw access. The algorithm is the shard's own `checksum`
    attribute (xxh3_64), CRC32 for shards written before it (format 1).
    """

    def __init__(self, path: Path, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.attrs: dict[str, Any] = {k: decode_attr(v) for k, v in file.attrs.items()}
        self._checked: set[tuple[str, int]] = set()
        self._small: dict[str, np.ndarray] = {}
        self._checksums: dict[str, list[int]] = {}
        self.checksum = shard_checksum(self.attrs)

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
        return WORD_FEATURES if self.level in ("word", "pair-tokens") else SENTENCE_FEATURES

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

    def layer(
        self, index: int, name: str | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """One layer for every row, (rows, hidden), in the stored dtype; 0 is the embeddings.

        `out`: a C-contiguous array of exactly that shape and dtype to read into (how
        `SplitReader` joins its shards with one read each); returned, checked.
        """
        name = name or self.feature_names[0]
        if not -self.n_layers <= index < self.n_layers:
            raise IndexError(f"{self.path}: layer {index} out of range 0..{self.n_layers - 1}")
        index %= self.n_layers
        what = f"layer {index} of {name!r}"
        with self._reading(what):
            dataset = self._file[name]
            shape, dtype = dataset.shape[1:], dataset.dtype
        if out is None:
            # Into small pages (probe.runtime.memory): h5py's own array is numpy's, in huge
            # pages, and on this project's VMs a MiniLM layer of EWT train (157 MB) read in
            # 0.61-0.66 s that way against 0.08 s into small pages.
            out = small_page_array(shape, dtype)
        elif out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"{self.path}: {what} is {shape} {dtype}, not into "
                             f"{out.shape} {out.dtype}")  # fmt: skip
        with self._reading(what):
            dataset.read_direct(out, np.s_[index])
        if (name, index) not in self._checked:
            if array_checksum(out, self.checksum) != self._checksums[name][index]:
                raise self._corrupt(f"{what} fails its checksum")
            self._checked.add((name, index))
        return out

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
        """Row spans: sentence (a token view's pair) i is rows offsets[i]:offsets[i+1]
        (word-level and pair-tokens shards)."""
        return self._small["offsets"]

    @property
    def word_types(self) -> np.ndarray:
        """Each word's type key as the model sees it (int64; equal iff the words' input ids
        are), read and checked on first use (word-level shards)."""
        return self._row_array("word_types", "word")

    @property
    def segments(self) -> np.ndarray:
        """Each token's segment in a pair's token view (int8: 0 text a, 1 text b, -1 a
        special token), read and checked on first use (pair-tokens shards)."""
        return self._row_array("segments", "pair-tokens")

    @property
    def has_tree(self) -> bool:
        """Whether the shard stores its sentences' dependency trees (UD word shards)."""
        return "heads" in self._file

    @property
    def heads(self) -> np.ndarray:
        """Each word's head as a sentence-local 0-based index, -1 for the root (int32; UD
        word shards), read and checked on first use."""
        self._need_tree()
        return self._row_array("heads", "word")

    @property
    def relations(self) -> np.ndarray:
        """Each word's relation to its head, an index into `relation_names` (int16; UD word
        shards), read and checked on first use."""
        self._need_tree()
        return self._row_array("relations", "word")

    @property
    def relation_names(self) -> list[str]:
        """The relations `relations` indexes, as the treebank writes them (`nsubj:pass`)."""
        self._need_tree()
        return self.strings("relation_names")

    def _need_tree(self) -> None:
        if not self.has_tree:
            raise CacheError(
                f"{self.path}: this shard stores no dependency trees (task "
                f"{self.attrs.get('task')!r} reads no UD trees, or it was written before they "
                "were cached); structural probes need a UD task's shards. "
                f"{rebuild_hint(self.path)}"
            )

    def _row_array(self, name: str, level: str) -> np.ndarray:
        """A per-row array of a `level` shard, read and checksum-checked on first use."""
        if name not in self._small:
            if self.level != level or name not in self._file:
                raise self._corrupt(f"it has no {name!r} dataset (a {level} shard must)")
            with self._reading(repr(name)):
                array = self._file[name][()]
            if array_checksum(array, self.checksum) != self._checksums[name][0]:
                raise self._corrupt(f"dataset {name!r} fails its checksum")
            if array.shape != (self.n_rows,):
                raise self._corrupt(f"{len(array)} values of {name!r} for {self.n_rows} rows")
            array.flags.writeable = False
            self._small[name] = array
        return self._small[name]

    def strings(self, name: str) -> list[str]:
        with self._reading(repr(name)):
            values = [s.decode() if isinstance(s, bytes) else s for s in self._file[name][()]]
        expected = self._checksums.get(name)  # shards written before strings had CRCs: none
        if expected is not None and strings_checksum(values, self.checksum) != expected[0]:
            raise self._corrupt(f"dataset {name!r} fails its checksum")
        return values

    def verify(self) -> None:
        """Recompute every checksum the shard stores (`probe cache verify`)."""
        self._checked.clear()
        for name in self.feature_names:
            for layer in range(self.n_layers):
                self.layer(layer, name)
        for name in self._checksums:
            if name in ("word_types", "segments", "heads", "relations"):
                self._small.pop(name, None)  # read afresh: the check runs on first use
                self._row_array(name, self.level)
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
        if self.checksum not in CHECKSUMS:
            raise self._corrupt(f"its checksum algorithm {self.checksum!r} is unknown")
        self._checksums = checksums
        try:
            n_layers, hidden = self.n_layers, self.hidden
            names = self.feature_names
        except (KeyError, ValueError, TypeError) as err:
            raise self._corrupt(f"attribute {err} is missing or unreadable") from err
        if set(checksums) - set(names):
            # Written with a CRC for every dataset and the attrs (shards written before that
            # have feature CRCs only); any other key set means a damaged name.
            with self._reading("its dataset names"):  # a damaged link table raises here
                stored = {*self._file.keys(), "attrs"}
            if set(checksums) != stored:
                raise self._corrupt("its checksums do not name exactly its datasets")
            if attrs_checksum(self.attrs.items(), self.checksum) != checksums["attrs"][0]:
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
        spans = self.level in ("word", "pair-tokens")  # rows grouped by offsets
        wanted = ("offsets", "labels") if spans else ("labels",)
        for name in wanted:
            with self._reading(repr(name)):
                array = self._file[name][()]
            expected = checksums.get(name)
            if expected is not None and array_checksum(array, self.checksum) != expected[0]:
                raise self._corrupt(f"dataset {name!r} fails its checksum")
            array.flags.writeable = False
            self._small[name] = array
        # A token view labels its pairs (one label per span), every other shard its rows.
        pairs = self.level == "pair-tokens"
        labelled = len(self._small["offsets"]) - 1 if pairs else rows
        if self._small["labels"].shape != (labelled,):
            unit = "pairs" if pairs else "rows"
            raise self._corrupt(f"{len(self._small['labels'])} labels for {labelled} {unit}")
        if spans:
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
        if version not in READABLE_FORMATS:
            raise CacheError(f"{path}: cache format {version} is not one this toolkit reads "
                             f"({FORMAT_VERSION} and older). {hint}")  # fmt: skip
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
        """One layer of every shard's rows, in order: each shard read once, straight into its
        rows of the result (in the widest stored dtype, should shards differ)."""
        if len(self.shards) == 1:
            return self.shards[0].layer(index, name)
        datasets = [s.dataset(name or s.feature_names[0]) for s in self.shards]
        rows = sum(d.shape[1] for d in datasets)
        joined = small_page_array((rows, datasets[0].shape[2]),
                                  np.result_type(*(d.dtype for d in datasets)))  # fmt: skip
        start = 0
        for shard, dataset in zip(self.shards, datasets, strict=True):
            part = joined[start : start + dataset.shape[1]]
            if dataset.dtype == joined.dtype:
                shard.layer(index, name, out=part)
            else:
                part[...] = shard.layer(index, name)
            start += dataset.shape[1]
        return joined

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([s.labels for s in self.shards])

    @property
    def word_types(self) -> np.ndarray:
        return np.concatenate([s.word_types for s in self.shards])

    @property
    def segments(self) -> np.ndarray:
        return np.concatenate([s.segments for s in self.shards])

    @property
    def has_tree(self) -> bool:
        return all(s.has_tree for s in self.shards)

    @property
    def heads(self) -> np.ndarray:
        """Sentence-local head indices (-1: the root) of every word, shard after shard."""
        return np.concatenate([s.heads for s in self.shards])

    @property
    def relation_names(self) -> list[str]:
        """Every relation of the split's shards, sorted: what `relations` indexes."""
        return sorted({name for s in self.shards for name in s.relation_names})

    @property
    def relations(self) -> np.ndarray:
        """Each word's relation as an index into this split's `relation_names` (each shard's
        own indices mapped onto the split's list)."""
        names = {name: i for i, name in enumerate(self.relation_names)}
        parts = []
        for shard in self.shards:
            local = np.asarray([names[n] for n in shard.relation_names], dtype=np.int16)
            parts.append(local[shard.relations] if len(local) else shard.relations)
        return np.concatenate(parts)

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

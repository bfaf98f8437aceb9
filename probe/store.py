"""The HDF5 layer cache: cache keys, atomic shard writing, and the reader notebooks use.

Layout (docs/cache-format.md): `<root>/<model-key>/<task>/<lang>/<split>[-NNNNN].h5`.
Feature datasets are stored contiguously as (layers, rows, hidden), so one layer for every
row is one contiguous read; each layer's CRC32 is kept in the attrs so corruption is caught.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe import __version__
from probe.errors import CacheError
from probe.locking import exclusive_lock

FORMAT_VERSION = 1
WORD_FEATURES = ("features",)
SENTENCE_FEATURES = ("sentence_features", "sentence_features_b")
_STR = h5py.string_dtype(encoding="utf-8")


def default_cache_root(explicit: Path | None = None) -> Path:
    """`--cache-dir` beats PROBE_CACHE, which beats ./cache."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get("PROBE_CACHE", "cache"))


@dataclass(frozen=True)
class ExtractionSpec:
    """Every input that changes the cached numbers; its hash is the cache key."""

    model_identity: str  # sha256 of weights, config and tokenizer files
    pooling: str  # first | mean | last (word tasks); sentence tasks always mean per side
    max_length: int
    window_stride: int
    dtype: str  # storage dtype
    compute_dtype: str  # float32 | bfloat16 | float16
    format_version: int = FORMAT_VERSION
    slug: str = field(default="model", compare=False)  # readable prefix only, not hashed

    def key(self) -> str:
        payload = {k: v for k, v in asdict(self).items() if k != "slug"}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.slug}-{digest[:16]}"


def write_spec(root: Path, spec: ExtractionSpec, extra: Mapping[str, Any]) -> Path:
    """Record what a key was built from, beside its shards (readable by `probe cache ls`)."""
    directory = root / spec.key()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spec.json"
    if not path.exists():
        tmp = path.with_name(f"spec.json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({**asdict(spec), **extra}, indent=2, sort_keys=True))
        tmp.replace(path)
    return path


def shard_path(
    root: Path, key: str, task: str, lang: str, split: str, index: int | None = None
) -> Path:
    name = f"{split}.h5" if index is None else f"{split}-{index:05d}.h5"
    return root / key / task / lang / name


def split_shard_paths(root: Path, key: str, task: str, lang: str, split: str) -> list[Path]:
    """The shard files of one split, in order (a single `<split>.h5` or numbered pieces)."""
    directory = root / key / task / lang
    single = directory / f"{split}.h5"
    if single.exists():
        return [single]
    return sorted(directory.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9].h5"))


def file_sha256(paths: Sequence[Path]) -> str:
    """Identity of the source data: a changed file must never be served from the old cache."""
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def shard_lock(path: Path) -> Iterator[None]:
    """One writer per shard across processes; a second one waits, then finds it complete."""
    with exclusive_lock(path.with_name(path.name + ".lock")):
        yield


class ShardWriter:
    """Writes one shard under a temporary name; `commit()` marks it complete and renames it.

    Feature rows must arrive in order (blocks of consecutive rows) so each layer's CRC32 can
    be computed while streaming, without reading the file back.
    """

    def __init__(
        self,
        path: Path,
        *,
        feature_names: Sequence[str],
        n_layers: int,
        n_rows: int,
        hidden: int,
        dtype: str,
        attrs: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        strings: Mapping[str, Sequence[str]],
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        self._file = h5py.File(self.tmp_path, "w")
        self._names = tuple(feature_names)
        self._next_row = 0
        self._n_rows = n_rows
        self._crc = {name: [0] * n_layers for name in self._names}
        for name in self._names:
            self._file.create_dataset(name, shape=(n_layers, n_rows, hidden), dtype=dtype)
        for name, array in arrays.items():
            self._file.create_dataset(name, data=array)
        for name, values in strings.items():
            self._file.create_dataset(name, data=list(values), dtype=_STR)
        for name, value in attrs.items():
            self._file.attrs[name] = _encode_attr(value)
        self._file.attrs["complete"] = False

    def write_rows(self, start: int, blocks: Mapping[str, np.ndarray]) -> None:
        """Write rows [start, start + n) of each feature dataset; blocks: (layers, n, hidden)."""
        if start != self._next_row:
            raise ValueError(
                f"rows must be written in order: expected {self._next_row}, got {start}"
            )
        n = None
        for name in self._names:
            block = np.ascontiguousarray(blocks[name])
            n = block.shape[1]
            self._file[name][:, start : start + n, :] = block
            for layer in range(block.shape[0]):
                self._crc[name][layer] = zlib.crc32(block[layer].data, self._crc[name][layer])
        self._next_row += n or 0

    def commit(self) -> Path:
        """Mark complete, flush to disk, then rename: a reader never sees a half shard."""
        if self._next_row != self._n_rows:
            raise ValueError(f"shard incomplete: {self._next_row} of {self._n_rows} rows written")
        self._file.attrs["checksums"] = json.dumps(self._crc)
        self._file.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._file.attrs["complete"] = True
        self._file.flush()
        self._file.close()
        with open(self.tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()


def base_attrs(**extra: Any) -> dict[str, Any]:
    """Attrs every shard carries, whatever wrote it."""
    return {"format_version": FORMAT_VERSION, "toolkit_version": __version__, **extra}


class Shard:
    """Read access to one complete shard; h5py stays open until `close()` (or `with`)."""

    def __init__(self, path: Path, file: h5py.File) -> None:
        self.path = path
        self._file = file
        self.attrs: dict[str, Any] = {k: _decode_attr(v) for k, v in file.attrs.items()}

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
        return self._file[name][index]

    def dataset(self, name: str) -> h5py.Dataset:
        return self._file[name]

    @property
    def labels(self) -> np.ndarray:
        return self._file["labels"][()]

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.attrs["label_names"])

    @property
    def offsets(self) -> np.ndarray:
        """Word spans: sentence i is rows offsets[i]:offsets[i+1] (word-level shards)."""
        return self._file["offsets"][()]

    def strings(self, name: str) -> list[str]:
        return [s.decode() if isinstance(s, bytes) else s for s in self._file[name][()]]

    def verify(self) -> None:
        """Recompute every layer's CRC32 and compare with the stored one."""
        stored = json.loads(self._file.attrs["checksums"])
        for name in self.feature_names:
            for layer, expected in enumerate(stored[name]):
                got = zlib.crc32(np.ascontiguousarray(self._file[name][layer]).data)
                if got != expected:
                    raise CacheError(
                        f"{self.path}: layer {layer} of {name!r} is corrupt (checksum mismatch). "
                        f"Delete it with `probe cache rm {self.path}` and rerun `probe extract`."
                    )


def _encode_attr(value: Any) -> Any:
    """Lists of strings stay native HDF5 string arrays (plain h5py reads them); dicts are JSON."""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=_STR)
    return value


def _decode_attr(value: Any) -> Any:
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


def open_shard(path: Path | str, verify: bool = False) -> Shard:
    """Open a complete shard; an incomplete, foreign or unreadable file is a CacheError."""
    path = Path(path)
    hint = f"Rebuild it: `probe cache rm {path}` and rerun `probe extract`."
    try:
        file = h5py.File(path, "r")
    except OSError as err:
        raise CacheError(f"{path}: not a readable HDF5 shard ({err}). {hint}") from err
    try:
        if not bool(file.attrs.get("complete", False)):
            raise CacheError(f"{path}: shard is incomplete (its writer did not finish). {hint}")
        if int(file.attrs.get("format_version", -1)) != FORMAT_VERSION:
            raise CacheError(f"{path}: cache format {file.attrs.get('format_version')} "
                             f"!= {FORMAT_VERSION} of this toolkit. {hint}")  # fmt: skip
        shard = Shard(path, file)
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
    except CacheError:
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
    def offsets(self) -> np.ndarray:
        parts, base = [np.zeros(1, dtype=np.int64)], 0
        for shard in self.shards:
            offsets = shard.offsets
            parts.append(offsets[1:] + base)
            base += int(offsets[-1])
        return np.concatenate(parts)

    def strings(self, name: str) -> list[str]:
        return [s for shard in self.shards for s in shard.strings(name)]

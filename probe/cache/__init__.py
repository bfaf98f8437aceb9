"""The HDF5 layer cache: cache keys, atomic shard writing, and the reader notebooks use.

Layout (docs/cache-format.md): `<root>/<model-key>/<task>/<lang>/<split>[-NNNNN].h5`.
Feature datasets are stored contiguously as (layers, rows, hidden), so one layer for every
row is one contiguous read; each layer's CRC32 is kept in the attrs so corruption is caught.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import logging
import os
import re
import socket
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe._version import __version__
from probe.errors import CacheError
from probe.runtime.faults import fault_point
from probe.runtime.locking import exclusive_lock

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# The version of the code that computes the cached numbers (tokenising, windowing, word
# alignment, pooling, the forward's precision handling). It is part of every cache key, so
# shards written by older extraction code are never reused: bump it with any change that can
# alter a written feature, label or offset (docs/cache-format.md, "When to bump a version").
EXTRACTOR_VERSION = 1
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
    extractor_version: int = field(default_factory=lambda: EXTRACTOR_VERSION)
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
        try:
            tmp.write_text(json.dumps({**asdict(spec), **extra}, indent=2, sort_keys=True))
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise write_error(path, err) from err
    return path


def update_manifest(root: Path, key: str, entries: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge shard entries (relative path -> rows, source hash, ...) into `manifest.json`.

    Written last, once every shard of a run is complete (by rank 0 of a distributed run), so
    every shard it names was complete when it was written; entries of other runs are kept
    while their file exists. Locked and renamed into place like the shards.
    """
    directory = root / key
    path = directory / "manifest.json"
    with exclusive_lock(directory / "manifest.json.lock"):
        old: dict[str, Any] = {}
        if path.exists():
            with contextlib.suppress(ValueError):
                old = json.loads(path.read_text()).get("shards", {})
        shards = {rel: entry for rel, entry in old.items() if (directory / rel).exists()}
        shards.update({rel: dict(entry) for rel, entry in entries.items()})
        payload = {"format_version": FORMAT_VERSION, "cache_key": key, "shards": shards}
        if path.exists() and old == shards:
            return path
        tmp = path.with_name(f"manifest.json.tmp-{socket.gethostname()}-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
        tmp.replace(path)
    return path


def read_manifest(root: Path, key: str) -> dict[str, dict[str, Any]]:
    """The shards a key's manifest lists ({} when it has none yet)."""
    path = root / key / "manifest.json"
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text())["shards"])
    except (ValueError, KeyError) as err:
        raise CacheError(f"{path}: unreadable manifest ({err}); delete it and rerun") from err


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


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the `<shard>.tmp-<host>-<pid>` files of writers that died (kill -9, OOM killer).

    Called while holding `shard_lock(path)`, so no live writer of this shard should exist;
    as a second guard (platforms without flock) only files of this host whose process is
    gone are removed. Left alone, each would hold a whole shard's worth of disk.
    """
    if os.name != "posix" or not path.parent.is_dir():
        return []
    stale = []
    for tmp in sorted(path.parent.glob(f"{path.name}.tmp-*")):
        host, _, pid = tmp.name.rpartition(".tmp-")[2].rpartition("-")
        if (host or socket.gethostname()) != socket.gethostname() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that process is alive (a writer that does not take the lock)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, owned by someone else
        log.warning("removing %s, left by a writer that did not finish", tmp)
        tmp.unlink(missing_ok=True)
        stale.append(tmp)
    return stale


def write_error(path: Path, err: Exception) -> CacheError:
    """One line for a failed cache write (disk full, file size limit, permissions, ...).

    h5py raises OSError or RuntimeError; the errno of the latter is read off HDF5's message.
    """
    code = getattr(err, "errno", None)
    if code is None and (found := re.search(r"errno = (\d+)", str(err))):
        code = int(found.group(1))
    reason = os.strerror(code) if code else str(err).splitlines()[0]
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free space under {path.parent} or pass --cache-dir on a larger disk"
    elif code == errno.EFBIG:
        fix = "raise the file size limit (ulimit -f) or pass --cache-dir on another filesystem"
    else:
        fix = f"check the disk and the permissions under {path.parent}"
    return CacheError(
        f"could not write {path}: {reason}. Nothing incomplete was kept; {fix}, then rerun: "
        "complete shards are reused."
    )


# What h5py raises when the disk or a limit refuses a write.
_WRITE_ERRORS = (OSError, RuntimeError)


class ShardWriter:
    """Writes one shard under a temporary name; `commit()` marks it complete and renames it.

    Feature rows must arrive in order (blocks of consecutive rows) so each layer's CRC32 can
    be computed while streaming, without reading the file back; the other datasets get one
    CRC32 each. Files use HDF5's v110 format, whose metadata (attrs, headers) carries its own
    checksums. A failed write (disk full, file too large) removes the temporary file and
    raises one CacheError line: a shard that exists under its final name is always complete.
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
        self.tmp_path = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        self._names = tuple(feature_names)
        self._next_row = 0
        self._n_rows = n_rows
        self._crc: dict[str, list[int]] = {name: [0] * n_layers for name in self._names}
        feature_bytes = len(self._names) * n_layers * n_rows * hidden * np.dtype(dtype).itemsize
        size = feature_bytes + sum(np.asarray(a).nbytes for a in arrays.values())
        size += sum(48 * len(v) + sum(len(x.encode()) for x in v) for v in strings.values())
        self._file: h5py.File | None = None
        try:
            _reserve(self.tmp_path, size + size // 8 + (256 << 10))
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        # The HDF5 side is set up on first use, in the thread that writes: h5py serialises
        # every call behind one lock, so a thread that only computes must not touch it.
        self._setup = (n_layers, n_rows, hidden, dtype, attrs, arrays, strings)

    def _opened(self) -> h5py.File:
        if self._file is not None:
            return self._file
        n_layers, n_rows, hidden, dtype, attrs, arrays, strings = self._setup
        try:
            file = self._file = h5py.File(self.tmp_path, "r+")
            for name in self._names:
                file.create_dataset(name, shape=(n_layers, n_rows, hidden), dtype=dtype)
            for name, array in arrays.items():
                array = np.ascontiguousarray(array)
                file.create_dataset(name, data=array)
                self._crc[name] = [zlib.crc32(array.data)]
            for name, values in strings.items():
                file.create_dataset(name, data=list(values), dtype=_STR)
                self._crc[name] = [_strings_crc(values)]
            for name, value in attrs.items():
                file.attrs[name] = _encode_attr(value)
            file.attrs["complete"] = False
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        return file

    def write_rows(self, start: int, blocks: Mapping[str, np.ndarray]) -> None:
        """Write rows [start, start + n) of each feature dataset; blocks: (layers, n, hidden)."""
        if start != self._next_row:
            raise ValueError(
                f"rows must be written in order: expected {self._next_row}, got {start}"
            )
        n = None
        file = self._opened()
        try:
            for name in self._names:
                block = np.ascontiguousarray(blocks[name])
                n = block.shape[1]
                file[name][:, start : start + n, :] = block
                fault_point("write")
                for layer in range(block.shape[0]):
                    self._crc[name][layer] = zlib.crc32(block[layer].data, self._crc[name][layer])
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        self._next_row += n or 0

    def set_attr(self, name: str, value: Any) -> None:
        """Set one attribute before `commit` (counts known only once every row is written)."""
        file = self._opened()
        try:
            file.attrs[name] = _encode_attr(value)
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err

    def commit(self) -> Path:
        """Mark complete, flush and fsync, then rename: a reader never sees a half shard."""
        if self._next_row != self._n_rows:
            raise ValueError(f"shard incomplete: {self._next_row} of {self._n_rows} rows written")
        file = self._opened()
        try:
            file.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            file.attrs["complete"] = True
            self._crc["attrs"] = [_attrs_crc(file.attrs.items())]
            file.attrs["checksums"] = json.dumps(self._crc)
            file.flush()
            file.close()
            fault_point("commit")
            with open(self.tmp_path, "rb") as f:
                os.fsync(f.fileno())
            fault_point("rename")
            os.replace(self.tmp_path, self.path)
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        _fsync_directory(self.path.parent)
        fault_point("renamed")
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (idempotent; also after a failed write)."""
        with contextlib.suppress(Exception):
            if self._file is not None:
                self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()

    def _failed(self, err: Exception) -> CacheError:
        self.abort()
        return write_error(self.path, err)


def _reserve(path: Path, size: int) -> None:
    """Create an empty HDF5 file at `path` with `size` bytes of disk reserved behind it.

    A full disk (ENOSPC, EDQUOT) or a file size limit (EFBIG) then fails here, in plain
    Python, before the encoder computes the shard, rather than inside HDF5, whose error path
    after a failed write can crash the process (seen with HDF5 2.0). HDF5 writes into the
    reserved space and cuts the file back to its real size on close. Where the filesystem
    cannot reserve (EOPNOTSUPP, macOS), writing goes on unreserved.
    """
    with open(path, "wb") as f:
        f.write(_empty_hdf5())
        f.flush()
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(f.fileno(), 0, size)
            except OSError as err:
                if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise


@functools.cache
def _empty_hdf5() -> bytes:
    """The bytes of an empty HDF5 file in the v110 format (metadata with checksums)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver=("v110", "v110")):
        pass
    return buffer.getvalue()


def _attrs_crc(items: Iterable[tuple[str, Any]]) -> int:
    """CRC32 of every attribute but `checksums`, as decoded: HDF5 keeps many attributes in a
    heap without checksums of its own, and a flipped bit there must not go unnoticed."""
    decoded = {k: _decode_attr(v) for k, v in items if k != "checksums"}
    return zlib.crc32(json.dumps(decoded, sort_keys=True, default=str).encode())


def _strings_crc(values: Sequence[str]) -> int:
    return zlib.crc32("\0".join(values).encode("utf-8", "surrogatepass"))


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable across a power cut (POSIX; a no-op where directories can't sync)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def base_attrs(**extra: Any) -> dict[str, Any]:
    """Attrs every shard carries, whatever wrote it."""
    return {
        "format_version": FORMAT_VERSION,
        "extractor_version": EXTRACTOR_VERSION,
        "toolkit_version": __version__,
        **extra,
    }


# What h5py raises when bytes under an open file turn out damaged (a bad heap or header).
_READ_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError)


def rebuild_hint(path: Path) -> str:
    return (
        f"Check the cache with `probe cache verify`; rebuild this shard with "
        f"`probe cache rm {path}` and rerun the command (complete shards are reused)."
    )


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
        self.attrs: dict[str, Any] = {k: _decode_attr(v) for k, v in file.attrs.items()}
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

    def strings(self, name: str) -> list[str]:
        with self._reading(repr(name)):
            values = [s.decode() if isinstance(s, bytes) else s for s in self._file[name][()]]
        expected = self._checksums.get(name)  # shards written before strings had CRCs: none
        if expected is not None and _strings_crc(values) != expected[0]:
            raise self._corrupt(f"dataset {name!r} fails its checksum")
        return values

    def verify(self) -> None:
        """Recompute every checksum the shard stores (`probe cache verify`)."""
        self._checked.clear()
        for name in self.feature_names:
            for layer in range(self.n_layers):
                self.layer(layer, name)
        for name in self._checksums:
            if name not in (*self.feature_names, *self._small, "attrs"):
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
            if _attrs_crc(self.attrs.items()) != checksums["attrs"][0]:
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
    def offsets(self) -> np.ndarray:
        parts, base = [np.zeros(1, dtype=np.int64)], 0
        for shard in self.shards:
            offsets = shard.offsets
            parts.append(offsets[1:] + base)
            base += int(offsets[-1])
        return np.concatenate(parts)

    def strings(self, name: str) -> list[str]:
        return [s for shard in self.shards for s in shard.strings(name)]

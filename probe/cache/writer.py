"""Writing one shard so that a file under its final name is always complete.

A temporary name per writer, disk space reserved before the encoder runs, checksums
(xxh3_64, `schema.CHECKSUM`) computed while streaming, fsync then rename; one lock per shard
across processes, and the temporary files of writers that died are swept under that lock.
Failed writes are one CacheError line.

The streamed rows (features, per-row arrays) bypass h5py: their datasets are contiguous and
allocated when created, so each has one fixed file offset, and a block's rows of one layer
are one run of bytes at a known place, written from a small thread pool with that layer's
checksum beside it, by direct I/O where the filesystem allows (`probe.cache.streamed`).
Through h5py (one global lock, and a copy into the page cache) the writer thread bounded
the host pipeline at 0.17-0.30 of the disk (benchmarks/README.md, issue 23). The file is
an ordinary HDF5 file: plain h5py reads it as before, and HDF5 never touches those bytes
itself (no fill value, and no h5py write to a streamed dataset, so no HDF5 cache holds a
copy of them).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from probe.cache.schema import (
    CHECKSUM,
    STR,
    Digest,
    array_checksum,
    attrs_checksum,
    encode_attr,
    new_digest,
    strings_checksum,
)
from probe.cache.streamed import StreamedRun, open_direct, pwrite_all
from probe.errors import CacheError
from probe.runtime.faults import fault_point
from probe.runtime.locking import exclusive_lock

log = logging.getLogger(__name__)

# What h5py raises when the disk or a limit refuses a write.
_WRITE_ERRORS = (OSError, RuntimeError)
# Threads that write a block's layers into the file (os.pwrite and xxh3 release the GIL).
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))
# Streamed rows by direct I/O where the filesystem has it (`probe.cache.streamed`);
# PROBE_DIRECT_WRITES=0 writes them through the page cache instead (a filesystem whose
# O_DIRECT is slow, e.g. some network mounts).
DIRECT_WRITES = os.environ.get("PROBE_DIRECT_WRITES", "1") != "0"


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


class ShardWriter:
    """Writes one shard under a temporary name; `commit()` marks it complete and renames it.

    Feature rows must arrive in order (blocks of consecutive rows) so each layer's checksum
    can be computed while streaming, without reading the file back; `row_arrays` (one value
    per row, known only once a block is tokenised, such as `word_types`) stream with them, one
    checksum each, as do the other datasets. Files use HDF5's v110 format, whose metadata
    (attrs, headers) carries its own checksums. A failed write (disk full, file too large)
    removes the temporary file and raises one CacheError line: a shard that exists under its
    final name is always complete.
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
        row_arrays: Mapping[str, str] | None = None,
        write_threads: int | None = None,
        direct: bool | None = None,
    ) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = path.with_name(f"{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")
        self._names = tuple(feature_names)
        self._next_row = 0
        self._n_rows = n_rows
        # Running digests of the streamed datasets; finished checksums of the others.
        self._digests: dict[str, list[Digest]] = {
            name: [new_digest(CHECKSUM) for _ in range(n_layers)] for name in self._names
        }
        self._row_arrays = dict(row_arrays or {})
        self._digests.update({name: [new_digest(CHECKSUM)] for name in self._row_arrays})
        self._sums: dict[str, list[int]] = {}
        self._dtype = np.dtype(dtype)
        self._shape = (n_layers, n_rows, hidden)
        self._threads = max(1, write_threads or WRITE_THREADS)
        self._direct = DIRECT_WRITES if direct is None else direct
        self._runs: dict[str, list[StreamedRun]] = {}  # each feature layer's bytes
        self._row_offsets: dict[str, int] = {}  # file offset of each row array
        self._row_values: dict[str, list[np.ndarray]] = {}  # held until commit (8 B a row)
        self._fd: int | None = None  # the temporary file, for the streamed rows
        self._direct_fd: int | None = None
        feature_bytes = len(self._names) * n_layers * n_rows * hidden * np.dtype(dtype).itemsize
        feature_bytes += sum(n_rows * np.dtype(t).itemsize for t in self._row_arrays.values())
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
            offsets = {name: _streamed_dataset(file, name, (n_layers, n_rows, hidden), dtype)
                       for name in self._names}  # fmt: skip
            for name, row_dtype in self._row_arrays.items():
                self._row_offsets[name] = _streamed_dataset(file, name, (n_rows,), row_dtype)
                self._row_values[name] = []
            for name, array in arrays.items():
                array = np.ascontiguousarray(array)
                file.create_dataset(name, data=array)
                self._sums[name] = [array_checksum(array, CHECKSUM)]
            for name, values in strings.items():
                file.create_dataset(name, data=list(values), dtype=STR)
                self._sums[name] = [strings_checksum(values, CHECKSUM)]
            for name, value in attrs.items():
                file.attrs[name] = encode_attr(value)
            file.attrs["checksum"] = CHECKSUM
            file.attrs["complete"] = False
            file.flush()  # HDF5's buffered writes land before any direct one
            self._fd = os.open(self.tmp_path, os.O_RDWR)
            self._direct_fd = open_direct(self.tmp_path) if self._direct else None
            layer_bytes = n_rows * hidden * self._dtype.itemsize
            self._runs = {
                name: [StreamedRun(base + layer * layer_bytes, base + (layer + 1) * layer_bytes,
                                   self._fd, self._direct_fd) for layer in range(n_layers)]
                for name, base in offsets.items()
            }  # fmt: skip
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        return file

    def write_rows(self, start: int, blocks: Mapping[str, np.ndarray]) -> None:
        """Write rows [start, start + n) of each feature dataset, blocks (layers, n, hidden),
        and of each row array, blocks (n,)."""
        if start != self._next_row:
            raise ValueError(
                f"rows must be written in order: expected {self._next_row}, got {start}"
            )
        n = int(np.shape(blocks[self._names[0]])[1])
        n_layers, n_rows, hidden = self._shape
        if start + n > n_rows:
            raise ValueError(f"rows {start}..{start + n} past the shard's {n_rows} rows")
        self._opened()
        try:
            for name in self._names:
                block = np.ascontiguousarray(blocks[name], dtype=self._dtype)
                if block.shape != (n_layers, n, hidden):
                    raise ValueError(f"{name}: block of shape {block.shape}, expected "
                                     f"{(n_layers, n, hidden)}")  # fmt: skip
                self._write_layers(name, start, block)
                fault_point("write")
            for name, row_dtype in self._row_arrays.items():
                values = np.ascontiguousarray(blocks[name], dtype=row_dtype)
                if values.shape != (n,):
                    raise ValueError(f"{name}: {values.shape[0]} values for {n} rows")
                self._row_values[name].append(values.copy())  # written by commit
                self._digests[name][0].update(values.data)
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        self._next_row += n

    def _write_layers(self, name: str, start: int, block: np.ndarray) -> None:
        """Each layer's rows [start, start + n) of `block` at their place in dataset `name`,
        and into that layer's running checksum; layers split over the write threads.

        Layer l's rows lie at (l * n_rows + start) * row_bytes from the dataset's start: one
        write per layer per block. Each layer is fed by one thread, in row order, and this
        returns only once every layer of the block is written (no write left in flight).
        """
        n_layers = self._shape[0]
        runs, digests = self._runs[name], self._digests[name]

        def layers(lo: int, hi: int) -> None:
            for layer in range(lo, hi):
                runs[layer].append(block[layer].data.cast("B"))
                digests[layer].update(block[layer].data)

        parts = min(self._threads, n_layers)
        bounds = [n_layers * i // parts for i in range(parts + 1)]
        if parts == 1 or block.nbytes < (1 << 20):  # a thread hop costs more than it saves
            layers(0, n_layers)
            return
        pool = _write_pool()
        futures = [pool.submit(layers, lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]
        errors = [f.exception() for f in futures]  # wait for all, then raise the first
        for error in errors:
            if error is not None:
                raise error

    def set_attr(self, name: str, value: Any) -> None:
        """Set one attribute before `commit` (counts known only once every row is written)."""
        file = self._opened()
        try:
            file.attrs[name] = encode_attr(value)
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err

    def commit(self) -> Path:
        """Mark complete, flush and fsync, then rename: a reader never sees a half shard."""
        if self._next_row != self._n_rows:
            raise ValueError(f"shard incomplete: {self._next_row} of {self._n_rows} rows written")
        file = self._opened()
        try:
            self._finish_rows()
            file.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            file.attrs["complete"] = True
            sums = {name: [d.intdigest() for d in ds] for name, ds in self._digests.items()}
            sums.update(self._sums)
            sums["attrs"] = [attrs_checksum(file.attrs.items(), CHECKSUM)]
            file.attrs["checksums"] = json.dumps(sums)
            file.flush()
            file.close()
            fault_point("commit")
            fd, self._fd = self._fd, None
            if fd is None:
                fd = os.open(self.tmp_path, os.O_RDONLY)
            try:
                os.fsync(fd)  # HDF5's metadata and the streamed rows: one file, one inode
            finally:
                os.close(fd)
            fault_point("rename")
            os.replace(self.tmp_path, self.path)
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        _fsync_directory(self.path.parent)
        fault_point("renamed")
        return self.path

    def _finish_rows(self) -> None:
        """Write what the streamed datasets held back (layers' heads and tails, row arrays)
        through the page cache, now that no direct write is in flight."""
        if self._direct_fd is not None:
            fd, self._direct_fd = self._direct_fd, None
            os.close(fd)
        for runs in self._runs.values():
            for run in runs:
                run.finish()
        assert self._fd is not None  # set with the runs by `_opened`
        for name, parts in self._row_values.items():
            values = np.concatenate(parts) if parts else np.empty(0, self._row_arrays[name])
            if values.nbytes:
                pwrite_all(self._fd, values.data.cast("B"), self._row_offsets[name])
        self._row_values = {name: [] for name in self._row_values}

    def abort(self) -> None:
        """Close and delete the temporary file (idempotent; also after a failed write)."""
        with contextlib.suppress(Exception):
            if self._file is not None:
                self._file.close()
        for attr in ("_fd", "_direct_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()

    def _failed(self, err: Exception) -> CacheError:
        self.abort()
        return write_error(self.path, err)


def _streamed_dataset(file: h5py.File, name: str, shape: tuple[int, ...], dtype: str) -> int:
    """Create a contiguous dataset allocated now, never filled; its file offset (0 when it
    holds no bytes). Its rows are written at that offset by the writer, not by h5py."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dataset = file.create_dataset(name, shape=shape, dtype=np.dtype(dtype).newbyteorder("="),
                                  dcpl=dcpl, fill_time="never")  # fmt: skip
    if dataset.id.get_create_plist().get_layout() != h5py.h5d.CONTIGUOUS:
        raise RuntimeError(f"{name}: HDF5 did not lay the dataset out contiguously")
    offset = dataset.id.get_offset()
    if offset is None and dataset.id.get_storage_size():
        raise RuntimeError(f"{name}: HDF5 gave no file offset for an allocated dataset")
    return 0 if offset is None else int(offset)


@functools.cache
def _write_pool() -> ThreadPoolExecutor:
    """The threads that copy layers into shard files, shared by every writer of the process."""
    return ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="shard-io")


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


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable across a power cut (POSIX; a no-op where directories can't sync)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

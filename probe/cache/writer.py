"""Writing one shard so that a file under its final name is always complete.

A temporary name per writer, disk space reserved before the encoder runs, checksums
(xxh3_64, `schema.CHECKSUM`) computed while streaming, fsync then rename; one lock per shard
across processes, and the temporary files of writers that died are swept under that lock.
Failed writes are one CacheError line.
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
from probe.errors import CacheError
from probe.runtime.faults import fault_point
from probe.runtime.locking import exclusive_lock

log = logging.getLogger(__name__)

# What h5py raises when the disk or a limit refuses a write.
_WRITE_ERRORS = (OSError, RuntimeError)


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
            for name in self._names:
                file.create_dataset(name, shape=(n_layers, n_rows, hidden), dtype=dtype)
            for name, row_dtype in self._row_arrays.items():
                file.create_dataset(name, shape=(n_rows,), dtype=row_dtype)
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
        file = self._opened()
        try:
            for name in self._names:
                block = np.ascontiguousarray(blocks[name])
                file[name][:, start : start + n, :] = block
                fault_point("write")
                for layer, digest in enumerate(self._digests[name]):
                    digest.update(block[layer].data)
            for name, row_dtype in self._row_arrays.items():
                values = np.ascontiguousarray(blocks[name], dtype=row_dtype)
                if values.shape != (n,):
                    raise ValueError(f"{name}: {values.shape[0]} values for {n} rows")
                file[name][start : start + n] = values
                self._digests[name][0].update(values.data)
        except _WRITE_ERRORS as err:
            raise self._failed(err) from err
        self._next_row += n

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
            file.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            file.attrs["complete"] = True
            sums = {name: [d.intdigest() for d in ds] for name, ds in self._digests.items()}
            sums.update(self._sums)
            sums["attrs"] = [attrs_checksum(file.attrs.items(), CHECKSUM)]
            file.attrs["checksums"] = json.dumps(sums)
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


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable across a power cut (POSIX; a no-op where directories can't sync)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

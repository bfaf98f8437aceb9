"""The bytes of a shard's streamed datasets: whole aligned file blocks by direct I/O, the
rest through the page cache once every row is in.

Why direct I/O: on the machine the host-pipeline benchmark runs on (a VM whose balloon hands
freed pages back to the host), a buffered write of 3.15 GB into the page cache cost 6-7 s
of kernel CPU (the first touch of each page), where `O_DIRECT` wrote the same bytes from
the block buffer's memory in 1.2-1.3 s with 0.06 s of CPU (benchmarks/README.md, issue 23).
Elsewhere it still saves the copy into the page cache, and a large cache does not push the
rest of the machine's page cache out.

The rule that keeps it correct: a file block (`ALIGN` bytes) is written either whole by one
direct write or only by buffered writes, and no buffered write to the file happens while a
direct one may be in flight. A layer's rows stream in order, so each layer's run of bytes
is cut into its head (up to the first aligned offset), whole aligned blocks written as they
fill up (through an aligned staging buffer, as the block buffer's rows are not aligned), and
its tail (after the last); heads, tails and the small per-row arrays are held in memory
(under `ALIGN` bytes per layer, 8 bytes a row) and written by `finish()`, before HDF5
writes its last attributes. Filesystems without `O_DIRECT` (tmpfs on older kernels, macOS)
get every byte through the page cache, as before; that is logged once.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading

import numpy as np

from probe.runtime.memory import small_page_array

log = logging.getLogger(__name__)

# Direct writes are whole multiples of this, at offsets that are: the largest usual
# filesystem block, so no direct write covers part of a block (ext4 would zero the rest
# of a block it allocates for a partial direct write).
ALIGN = 4096
_local = threading.local()


def pwrite_all(fd: int, data: memoryview, at: int) -> None:
    """Write every byte of `data` at file offset `at` (short writes resumed)."""
    done = 0
    while done < data.nbytes:
        written = os.pwrite(fd, data[done:], at + done)
        if written <= 0:
            raise OSError(errno.EIO, f"a write at offset {at + done} made no progress")
        done += written


def open_direct(path: os.PathLike[str] | str) -> int | None:
    """A write descriptor of `path` with O_DIRECT, or None where the system lacks it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        _no_direct("this platform has no O_DIRECT")
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        _no_direct(f"{path}'s filesystem refuses O_DIRECT")
        return None


@functools.cache
def _no_direct(why: str) -> None:
    log.info("shard rows go through the page cache: %s", why)


def _staging(size: int) -> memoryview:
    """This thread's `ALIGN`-aligned scratch buffer of at least `size` bytes (reused)."""
    buffer: np.ndarray | None = getattr(_local, "buffer", None)
    if buffer is None or buffer.size < size:
        raw = small_page_array(size + size // 4 + ALIGN, np.uint8)  # page-aligned in fact
        start = -raw.ctypes.data % ALIGN
        buffer = _local.buffer = raw[start : start + size + size // 4]
    return buffer.data


class StreamedRun:
    """One contiguous run of a file's bytes, [start, end), written front to back in pieces.

    `append` takes the next piece; the whole aligned blocks it completes go out at once by
    direct I/O (when `direct_fd` is given), everything else waits for `finish`, which
    writes it through `fd` (buffered). Pieces of one run come from one thread at a time.
    """

    def __init__(self, start: int, end: int, fd: int, direct_fd: int | None) -> None:
        self.start, self.end, self.fd, self.direct_fd = start, end, fd, direct_fd
        self.pos = start  # bytes before this have been handed over
        # Buffered pieces kept for `finish`: (offset, bytes). The head, then the carry.
        self._held: list[tuple[int, bytes]] = []
        first = -(-start // ALIGN) * ALIGN  # the first aligned offset at or after start
        self._head_end = min(first, end) if direct_fd is not None else end
        self._carry_at = self._head_end  # the aligned offset the carried bytes start at
        self._carry = b""

    def append(self, data: memoryview) -> None:
        """The next `data.nbytes` bytes of the run."""
        if self.pos + data.nbytes > self.end:
            raise ValueError(f"{data.nbytes} bytes at {self.pos} run past the end at {self.end}")
        if self.direct_fd is None:  # no direct I/O: straight through the page cache
            pwrite_all(self.fd, data, self.pos)
            self.pos += data.nbytes
            return
        i = 0
        if self.pos < self._head_end:  # the head shares a block with whatever is before
            i = min(data.nbytes, self._head_end - self.pos)
            self._held.append((self.pos, bytes(data[:i])))
            self.pos += i
        if i == data.nbytes:
            return
        carried = len(self._carry)
        total = carried + data.nbytes - i
        whole = total // ALIGN * ALIGN
        if whole:
            staging = _staging(whole)
            staging[:carried] = self._carry
            staging[carried:whole] = data[i : i + whole - carried]
            pwrite_all(self.direct_fd, staging[:whole], self._carry_at)
            self._carry = bytes(data[i + whole - carried :])
            self._carry_at += whole
        else:
            self._carry += bytes(data[i:])
        self.pos += data.nbytes - i

    def finish(self) -> None:
        """Write what was held back (head, tail) through the page cache."""
        if self.pos != self.end:
            raise ValueError(f"run ends at {self.end} but only {self.pos} bytes were given")
        for at, held in self._held:
            pwrite_all(self.fd, memoryview(held), at)
        if self._carry:
            pwrite_all(self.fd, memoryview(self._carry), self._carry_at)
        self._held, self._carry = [], b""

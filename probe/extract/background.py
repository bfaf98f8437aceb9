"""Work beside the encoder: shard writes and commits on a writer thread, and a prefetch
thread that prepares the next block's inputs while the current one runs.

On two cores the encoder keeps both busy most of the time, but not all of it (Python
between operations, a parallel region's start and end); whatever the run can do on other
threads in those gaps no longer adds to its time. Both helpers keep memory bounded (one
item ahead) and raise the first error of their thread in the caller's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import queue
import threading
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from typing import Any, TypeVar

import numpy as np

from probe.cache import ShardWriter
from probe.errors import ProbeError

T = TypeVar("T")


class ShardWrites:
    """The run's writer thread: every shard's block writes and its commit, in order.

    The encoder computes the next block (of this shard or the next) while this thread writes
    the previous one and commits finished shards, so a split that fits in one block never
    waits for its own write. At most one computed block waits to be written (memory stays
    at two blocks). A shard's lock passes to this thread with its commit and is released
    after the rename. On an error in the caller (Ctrl-C, a full disk while reserving the
    next shard) the commits already queued still run, so finished shards are kept; every
    shard not committed is then aborted: its temporary file deleted, its lock released.
    After a failed write nothing queued behind it runs.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._last_block: Future[None] | None = None
        self._open: list[tuple[ShardWriter, ExitStack]] = []
        self._tasks: list[Future[Any]] = []
        self._error: BaseException | None = None  # the first failure on the writer thread

    def open(self, writer: ShardWriter, lock: ExitStack) -> None:
        """Track a new shard: aborted and unlocked unless its commit runs."""
        self._open.append((writer, lock))

    def block(self, writer: ShardWriter, row: int, blocks: dict[str, np.ndarray]) -> None:
        """Queue one block's write, after waiting for the previous block's (bounded memory)."""
        if self._last_block is not None:
            self._wait(self._last_block)
        self._last_block = self._submit(writer.write_rows, row, blocks)

    def commit(self, writer: ShardWriter, attrs: dict[str, Any]) -> None:
        """Queue the shard's last attributes, its commit and the release of its lock."""

        def finish() -> None:
            for name, value in attrs.items():
                writer.set_attr(name, value)
            writer.commit()
            for entry in list(self._open):
                if entry[0] is writer:
                    self._open.remove(entry)
                    entry[1].close()

        self._submit(finish)

    def drain(self) -> None:
        """Wait for every queued write and commit; the first error is raised here."""
        for task in self._tasks:
            self._wait(task)
        self._tasks.clear()

    def _wait(self, task: Future[Any]) -> None:
        task.exception()  # wait
        if self._error is not None:
            raise self._error  # the cause, not a later task's "an earlier write failed"

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        def run() -> Any:
            # After a failed write nothing queued behind it runs, above all not its commit.
            if self._error is not None:
                raise ProbeError("an earlier shard write failed") from self._error
            try:
                return fn(*args)
            except BaseException as err:
                self._error = err
                raise

        self._tasks = [t for t in self._tasks if not t.done() or t.exception() is not None]
        task = self._pool.submit(run)
        self._tasks.append(task)
        return task

    def __enter__(self) -> ShardWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.drain()
            else:  # the caller's error propagates; shards queued in full still land
                for task in self._tasks:
                    task.exception()
        finally:
            for task in self._tasks:
                task.cancel()
            self._pool.shutdown(wait=True)
            for writer, lock in self._open:  # never committed: delete and unlock
                writer.abort()
                lock.close()
            self._open.clear()


_DONE = object()


def prefetch(items: Iterable[T], name: str = "prefetch") -> Generator[T, None, None]:
    """Yield `items`, computed one ahead on a background thread.

    An exception raised while producing an item is raised here, at that item. Closing the
    generator early (an error in the consumer, Ctrl-C) stops the thread after its current
    item.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as err:  # handed to the consumer
            ready.put((_DONE, err))
            return
        ready.put((_DONE, None))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to put
            with suppress(queue.Empty):
                ready.get(timeout=0.1)
        thread.join()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc; a no-op elsewhere).

    Three threads allocate and free batch-sized arrays (tokenising, encoding, writing), and
    glibc keeps what they free in per-thread arenas; over many blocks that crept the peak
    RSS up by ~10 MB a block (MiniLM, 131 MB blocks: 949 -> 1037 MB over eight blocks).
    Trimming once per block (well under a millisecond) kept it flat from the second block
    on (996 MB at every block).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

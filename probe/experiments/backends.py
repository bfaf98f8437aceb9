"""Where jobs run: this process, a local process pool (spawned workers that die with their
parent), or a Dask or Ray cluster, behind one small interface."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from probe.errors import ProbeError
from probe.results.items import JobOutput

log = logging.getLogger(__name__)

JobFn = Callable[[Any], JobOutput]


_GRACE_S = 3.0


@dataclass(frozen=True)
class PoolConfig:
    """How many local workers, or which cluster: `--workers N`, `--cluster ADDRESS`."""

    workers: int | None = 1  # None: one per core; 1: in this process
    cluster: str | None = None  # tcp://host:8786 or scheduler.json (Dask); ray://host:10001 (Ray)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ProbeError(f"--workers must be at least 1, not {self.workers}")
        if self.cluster is not None:
            cluster_kind(self.cluster)  # fail on a bad address before any work is done

    def local_workers(self, n_jobs: int) -> int:
        """Processes a local run uses: as asked (None: one per core), at most one per job."""
        return max(1, min(self.workers or os.cpu_count() or 1, n_jobs))


def cluster_kind(address: str) -> str:
    """'dask' or 'ray' for a `--cluster` address; anything else is a clear error."""
    if address == "ray" or address.startswith("ray://"):
        return "ray"
    if address.startswith(("tcp://", "tls://", "ucx://", "inproc://")) or address.endswith(".json"):
        return "dask"
    raise ProbeError(
        f"--cluster {address!r} is not a cluster address: use a Dask scheduler "
        "(tcp://host:8786, or the scheduler file *.json that `dask scheduler --scheduler-file` "
        "writes) or Ray (ray://host:10001, or 'ray' for the cluster this node belongs to)"
    )


_ONE_JOB = threading.Lock()


def one_at_a_time(fn: JobFn, job: Any) -> JobOutput:
    """Run a job while holding this process's job lock.

    A Dask worker started with several threads would otherwise run jobs side by side in one
    process, and training sets process-wide state (torch's thread count, the seeded global
    RNG), so results would depend on what ran beside them.
    """
    with _ONE_JOB:
        return fn(job)


class Backend(Protocol):
    def submit(self, fn: JobFn, job: Any) -> Any: ...
    def completed(self, handles: list[Any]) -> Iterator[Any]: ...
    def result(self, handle: Any) -> JobOutput: ...
    def cancel(self, handles: list[Any]) -> None: ...
    def done(self, handles: list[Any]) -> list[Any]:
        """The handles whose job has finished with a result, without waiting."""
        ...

    def stop(self) -> None:
        """Stop every submitted job now (the run was interrupted); safe to call twice."""
        ...


def _stopping(exc_type: type[BaseException] | None) -> bool:
    """Whether a backend leaves its `with` because of a signal (or another BaseException such
    as SystemExit), rather than normally or on a job's error: then it stops instead of waiting."""
    return exc_type is not None and not issubclass(exc_type, Exception)


@contextlib.contextmanager
def open_backend(pool: PoolConfig, n_jobs: int) -> Iterator[Backend]:
    if pool.cluster is None:
        with _Local(pool.local_workers(n_jobs)) as local:
            yield local
    elif cluster_kind(pool.cluster) == "dask":
        if pool.workers not in (None, 1):
            log.info("--workers is ignored with --cluster: the cluster's workers run the jobs")
        with _Dask(pool.cluster) as dask:
            yield dask
    else:
        with _Ray(pool.cluster) as ray:
            yield ray


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _worker_init(parent: int) -> None:
    """Run first in every local worker: tie the worker's life to this process (`parent`).

    On Linux the kernel sends the worker SIGKILL when the parent dies (prctl
    PR_SET_PDEATHSIG), so even a parent killed with SIGKILL, which runs no clean-up, leaves no
    worker behind. Elsewhere a daemon thread polls the parent pid once a second. Either way a
    parent that died before this ran is caught by comparing getppid() with `parent`.

    SIGINT is ignored: Ctrl-C reaches every process of the terminal's process group, and the
    parent stops the workers itself, where a KeyboardInterrupt in each worker would only add
    a traceback per worker to the terminal.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tied = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            args = (ctypes.c_ulong(int(signal.SIGKILL)), *[ctypes.c_ulong(0)] * 3)
            tied = libc.prctl(ctypes.c_int(_PR_SET_PDEATHSIG), *args) == 0
    if os.getppid() != parent:
        os._exit(1)
    if not tied:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class _Local:
    """A spawn-started process pool: no forked CUDA or HDF5 state in the workers.

    The workers are stopped with the run, not left to finish their jobs, when it is
    interrupted (`stop`), and die with this process if it is killed (`_worker_init`).
    """

    def __init__(self, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.executor = ProcessPoolExecutor(
            workers, mp_context=get_context("spawn"), initializer=_worker_init,
            initargs=(os.getpid(),),
        )  # fmt: skip
        # The executor's own pid -> process map, kept here because shutdown() drops it; the
        # workers are started by submit(), from the calling thread (PDEATHSIG's "parent").
        self._processes: MutableMapping[int, Any] = self.executor._processes
        self._stopped = False

    def __enter__(self) -> _Local:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if _stopping(exc_type):
            self.stop()
        else:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, fn: JobFn, job: Any) -> Any:
        return self.executor.submit(fn, job)

    def completed(self, handles: list[Any]) -> Iterator[Any]:
        from concurrent.futures import as_completed

        return as_completed(handles)

    def result(self, handle: Any) -> JobOutput:
        return handle.result()  # type: ignore[no-any-return]

    def cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            handle.cancel()  # only jobs not yet started; running ones finish and are saved

    def done(self, handles: list[Any]) -> list[Any]:
        return [h for h in handles if h.done() and not h.cancelled() and h.exception() is None]

    def stop(self) -> None:
        """Terminate every worker (SIGTERM), kill those alive after the grace period (SIGKILL).

        shutdown() alone would wait for the running jobs, which can take hours; the pool's
        manager thread sees the workers die, fails their futures and ends, so that the
        interpreter's exit (which joins it) does not hang.
        """
        if self._stopped:
            return
        self._stopped = True
        from multiprocessing.connection import wait

        workers = list(self._processes.values())
        manager = getattr(self.executor, "_executor_manager_thread", None)
        self.executor.shutdown(wait=False, cancel_futures=True)
        for sig, grace in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, _GRACE_S)):
            alive = {p.sentinel: p for p in workers if p.exitcode is None}
            for p in alive.values():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(p.pid, sig)
            deadline = time.monotonic() + grace
            while alive and (left := deadline - time.monotonic()) > 0:
                for sentinel in wait(list(alive), timeout=left):
                    del alive[sentinel]
            if not alive:
                break
        if alive:
            pids = sorted(p.pid for p in alive.values())
            log.warning("workers %s did not exit after SIGKILL", pids)
        if manager is not None:
            manager.join(timeout=_GRACE_S)


class _Dask:
    """A Dask scheduler this process connects to as a client (the cluster is left running)."""

    def __init__(self, address: str) -> None:
        try:
            from dask.distributed import Client
        except ImportError as err:
            raise ProbeError(
                f"--cluster {address} needs Dask: pip install 'probe[cluster]' "
                "(or 'dask[distributed]'), on this machine and on the workers"
            ) from err
        try:
            if address.endswith(".json"):
                self.client = Client(scheduler_file=address, timeout="30s")
            else:
                self.client = Client(address, timeout="30s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ProbeError(f"cannot reach the Dask scheduler at {address}: {err}") from err
        self._handles: list[Any] = []

    def __enter__(self) -> _Dask:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if _stopping(exc_type):
            self.stop()
        self.client.close()

    def submit(self, fn: JobFn, job: Any) -> Any:
        handle = self.client.submit(one_at_a_time, fn, job, pure=False)
        self._handles.append(handle)
        return handle

    def completed(self, handles: list[Any]) -> Iterator[Any]:
        from dask.distributed import as_completed

        return iter(as_completed(handles))

    def result(self, handle: Any) -> JobOutput:
        return handle.result()  # type: ignore[no-any-return]

    def cancel(self, handles: list[Any]) -> None:
        self.client.cancel(handles)

    def done(self, handles: list[Any]) -> list[Any]:
        return [h for h in handles if h.status == "finished"]

    def stop(self) -> None:
        """Cancel the jobs; the cluster's workers are not ours to stop (they stay running)."""
        with contextlib.suppress(Exception):  # the client may be closing already
            self.client.cancel(self._handles)


class _Ray:
    """A Ray cluster this process joins as a driver (not tested in CI: Ray is not installed)."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError as err:
            raise ProbeError(
                f"--cluster {address} needs Ray: pip install 'probe[cluster]' (or 'ray'), "
                "on this machine and on the cluster"
            ) from err
        self.ray = ray
        self.ray.init(address="auto" if address == "ray" else address, ignore_reinit_error=True)
        self._remote: Any = None
        self._handles: list[Any] = []

    def __enter__(self) -> _Ray:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if _stopping(exc_type):
            self.stop()
        self.ray.shutdown()  # disconnects this driver; the cluster keeps running

    def submit(self, fn: JobFn, job: Any) -> Any:
        if self._remote is None:
            self._remote = self.ray.remote(num_cpus=1)(one_at_a_time)
        handle = self._remote.remote(fn, job)
        self._handles.append(handle)
        return handle

    def completed(self, handles: list[Any]) -> Iterator[Any]:
        pending = list(handles)
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            yield from ready

    def result(self, handle: Any) -> JobOutput:
        return self.ray.get(handle)  # type: ignore[no-any-return]

    def cancel(self, handles: list[Any]) -> None:
        for handle in handles:
            with contextlib.suppress(Exception):
                self.ray.cancel(handle)

    def done(self, handles: list[Any]) -> list[Any]:
        ready, _ = self.ray.wait(list(handles), num_returns=len(handles), timeout=0)
        return list(ready)

    def stop(self) -> None:
        """Cancel the jobs, ending the worker processes that run them (Ray starts new ones)."""
        for handle in self._handles:
            with contextlib.suppress(Exception):
                self.ray.cancel(handle, force=True)

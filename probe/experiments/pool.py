"""Where an experiment's jobs run: in this process, a local process pool, or a Dask/Ray cluster.

A job is a picklable object (paths, names, frozen configs; never an open file) and `fn` a
module-level function that turns it into result rows, so the same job runs unchanged in
any of the places below. Scheduling is left to the engines: `concurrent.futures` on one
machine, the Dask scheduler or Ray on a cluster (both already rerun the tasks of a worker
they lose). Results come back to this process in whatever order jobs finish and are
returned in job order, so the rows never depend on where or how fast jobs ran.

Each finished job's rows are saved at once to the run's journal (`jobs/<job>.json`,
written to a temporary name and renamed). A rerun of a run that stopped part-way (a crash,
a killed driver, a time limit) loads the saved jobs and runs only the others. The caller
clears the journal once the run's results are written, so a rerun of a finished run
recomputes everything with the current code rather than serving old numbers.

SIGTERM or SIGINT (Ctrl-C) to this process stops the run cleanly: the jobs that finished are
saved, local workers are terminated (killed if they outlive a grace period) and the run
raises `Interrupted`, a SystemExit with the shell's status for the signal (143, 130). Local
workers also die with this process if it is killed outright (SIGKILL): see `_worker_init`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from probe.errors import ProbeError
from probe.results.report import Row

log = logging.getLogger(__name__)

JobFn = Callable[[Any], list[Row]]

_LOST_WORKER = ("BrokenProcessPool", "KilledWorker", "WorkerCrashedError", "NodeDiedError")

# Seconds a terminated (SIGTERM) local worker gets to exit before it is killed (SIGKILL). Workers
# only read caches and return rows (this process writes the journal), so nothing is lost by
# not waiting for them; the grace is for job code that traps SIGTERM.
_GRACE_S = 3.0


class Interrupted(SystemExit):
    """The run was stopped by SIGTERM or SIGINT; its workers are stopped, finished jobs saved.

    A SystemExit carrying 128 + the signal number, so `probe grid` exits with the status a
    shell expects of a process stopped by that signal (143, 130) and without a traceback:
    click passes SystemExit through, where it would turn a KeyboardInterrupt into 'Aborted!'
    and status 1. The message (what was saved, how to resume) is logged as it is raised.
    """

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.message = message

    def __str__(self) -> str:
        return self.message


class _Stopped(BaseException):
    """Raised in the main thread by the SIGTERM/SIGINT handler to unwind to the pool's clean-up.

    A BaseException, not an Exception, so that no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


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


class Journal:
    """Finished jobs of one run, one JSON file each, valid only for one data fingerprint."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint

    def _path(self, name: str) -> Path:
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"job name {name!r} is not a plain file name")
        return self.directory / f"{name}.json"

    def load(self, name: str) -> list[Row] | None:
        """The saved rows of a job, or None if it has to run (missing, stale or unreadable)."""
        path = self._path(name)
        if not path.exists():
            return None
        try:
            payload = json.loads(path.read_text())
            if payload["fingerprint"] != self.fingerprint:
                log.info("%s was saved for other data or code; rerunning job %s", path, name)
                return None
            return [Row.from_dict(row) for row in payload["rows"]]
        except (ValueError, KeyError, TypeError) as err:
            log.warning("unreadable job file %s (%s); rerunning job %s", path, err, name)
            return None

    def save(self, name: str, rows: Sequence[Row]) -> None:
        path = self._path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        rows_json = [r.to_dict() for r in rows]
        payload = {"job": name, "fingerprint": self.fingerprint, "rows": rows_json}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)

    def saved(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def clear(self) -> None:
        """Forget every job (the run is complete and its results are written)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def fingerprint(*parts: Any) -> str:
    """sha256 of the canonical JSON of what saved jobs depend on (objects by their repr):
    a journal from another config, other cached data or another version is not reused."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def run_jobs(
    fn: JobFn,
    jobs: Sequence[tuple[str, Any]],
    pool: PoolConfig,
    journal: Journal | None = None,
    *,
    progress: bool = True,
    desc: str = "jobs",
) -> list[list[Row]]:
    """Run `fn(job)` for every (name, job) not already in the journal; rows in job order.

    Raises `Interrupted` (a SystemExit) on SIGTERM or SIGINT while a pool runs, once the
    workers are stopped and the finished jobs saved.
    """
    names = [name for name, _ in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    results: dict[str, list[Row]] = {}
    if journal is not None:
        for name in names:
            rows = journal.load(name)
            if rows is not None:
                results[name] = rows
    todo = [(name, job) for name, job in jobs if name not in results]
    if results:
        log.info("%d of %d jobs already done (saved in %s); running %d", len(results),
                 len(jobs), journal.directory if journal else "", len(todo))  # fmt: skip
    from tqdm.auto import tqdm

    try:
        with tqdm(total=len(jobs), initial=len(results), desc=desc, unit="job",
                  disable=not progress) as bar:  # fmt: skip

            def finished(name: str, rows: list[Row]) -> None:
                if journal is not None:
                    journal.save(name, rows)
                results[name] = rows
                bar.update()

            if todo:
                _run(fn, todo, pool, finished, journal)
    except Interrupted as stop:
        log.warning("%s", stop.message)  # once the progress bar is closed, on a line of its own
        raise
    return [results[name] for name in names]


def _run(
    fn: JobFn,
    todo: list[tuple[str, Any]],
    pool: PoolConfig,
    finished: Callable[[str, list[Row]], None],
    journal: Journal | None,
) -> None:
    if pool.cluster is None and pool.local_workers(len(todo)) == 1:
        # Here: no pickling, no start-up cost, plain tracebacks. There are no workers to stop,
        # so signals keep their default effect (SIGTERM ends the process, SIGINT raises
        # KeyboardInterrupt); every finished job is already in the journal.
        for name, job in todo:
            try:
                finished(name, fn(job))
            except Exception as err:
                _explain(err, name, journal)
                raise
        return
    handles: dict[Any, str] = {}
    backend: _Backend | None = None
    failure: tuple[str, Exception] | None = None
    with _StopSignals() as signals:
        try:
            with _backend(pool, len(todo)) as backend:
                # A signal while workers start waits until they are all known, and they start
                # with SIGINT ignored (see `_StopSignals.starting_workers`).
                with signals.deferred(), signals.starting_workers():
                    for name, job in todo:
                        handles[backend.submit(fn, job)] = name
                try:
                    for handle in backend.completed(list(handles)):
                        try:
                            rows = backend.result(handle)
                        except Exception as job_error:
                            if failure is None:
                                failure = (handles[handle], job_error)
                                backend.cancel([h for h in handles if h is not handle])
                            continue
                        with signals.deferred():  # a journal entry is written whole or not
                            finished(handles[handle], rows)
                except (_Stopped, KeyboardInterrupt):
                    _save_done(backend, handles, finished, journal)
                    raise
        except (_Stopped, KeyboardInterrupt) as stop:
            # The backend's exit has stopped the workers, unless the signal came while it was
            # waiting for them (after a failed job); stopping again is harmless.
            if backend is not None:
                backend.stop()
            signum = stop.signum if isinstance(stop, _Stopped) else signal.SIGINT
            raise _interrupted(signum, journal) from None
    if failure is not None:
        name, error = failure
        if type(error).__name__ in _LOST_WORKER:
            saved = len(journal.saved()) if journal is not None else 0
            where = f" ({saved} finished jobs are saved in {journal.directory})" if journal else ""
            raise ProbeError(
                f"a worker was lost while running job {name} ({type(error).__name__}: {error})"
                f"{where}; run the same command again to run only the jobs that are missing"
            ) from error
        _explain(error, name, journal)
        raise error


def _save_done(
    backend: _Backend,
    handles: dict[Any, str],
    finished: Callable[[str, list[Row]], None],
    journal: Journal | None,
) -> None:
    """Save jobs that had finished when the run was stopped but were not collected yet."""
    saved = set(journal.saved()) if journal is not None else set()
    for handle in backend.done(list(handles)):
        if handles[handle] not in saved:
            with contextlib.suppress(Exception):  # stopping matters more than one more job
                finished(handles[handle], backend.result(handle))


def _interrupted(signum: int, journal: Journal | None) -> Interrupted:
    message = f"stopped by {signal.Signals(signum).name}; the running jobs are stopped"
    if journal is not None:
        n = len(journal.saved())
        message += (
            f", {n} finished job{'' if n == 1 else 's'} {'is' if n == 1 else 'are'} saved in "
            f"{journal.directory}: run the same command again to run only the missing ones"
        )
    return Interrupted(signum, message)


class _StopSignals:
    """While a pool runs: SIGTERM and SIGINT raise `_Stopped` in the main thread, once.

    Python's default SIGTERM ends the process at once, leaving the workers running; SIGINT's
    KeyboardInterrupt would be handled too, but a second Ctrl-C or SIGTERM could then break
    the clean-up part-way. So the first signal raises (or, inside `deferred()`, is kept until
    the section ends) and later ones are ignored: the clean-up is bounded by the grace period.
    Handlers are installed only over the defaults (not where a signal is ignored, as under
    nohup, or handled by the application) and only from the main thread, where Python runs
    them; the previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._raised = False
        self._depth = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            defaults = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
            for signum, default in defaults.items():
                if signal.getsignal(signum) is default:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            if self._depth == 0:
                self._raise()

    def _raise(self) -> None:
        if self.signum is not None and not self._raised:
            self._raised = True
            raise _Stopped(self.signum)

    @contextlib.contextmanager
    def starting_workers(self) -> Iterator[None]:
        """Ignore SIGINT while local workers are spawned, so that they start ignoring it.

        A child inherits an ignored signal across exec, and Python leaves it ignored, so a
        Ctrl-C while a worker imports its modules (seconds on a busy machine, before
        `_worker_init` runs) does not print that worker's traceback. The cost: a Ctrl-C in
        the milliseconds that the spawning takes is lost.
        """
        if signal.SIGINT not in self._previous:
            yield
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, self._handle)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A section a signal must not cut short; it is raised as the section ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._raise()


def _explain(err: BaseException, name: str, journal: Journal | None) -> None:
    if journal is not None:
        err.add_note(
            f"job {name!r} failed; {len(journal.saved())} finished jobs are saved in "
            f"{journal.directory}, and a rerun runs only the missing ones"
        )


_ONE_JOB = threading.Lock()


def one_at_a_time(fn: JobFn, job: Any) -> list[Row]:
    """Run a job while holding this process's job lock.

    A Dask worker started with several threads would otherwise run jobs side by side in one
    process, and training sets process-wide state (torch's thread count, the seeded global
    RNG), so results would depend on what ran beside them.
    """
    with _ONE_JOB:
        return fn(job)


class _Backend(Protocol):
    def submit(self, fn: JobFn, job: Any) -> Any: ...
    def completed(self, handles: list[Any]) -> Iterator[Any]: ...
    def result(self, handle: Any) -> list[Row]: ...
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
def _backend(pool: PoolConfig, n_jobs: int) -> Iterator[_Backend]:
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

    def result(self, handle: Any) -> list[Row]:
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

    def result(self, handle: Any) -> list[Row]:
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

    def result(self, handle: Any) -> list[Row]:
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

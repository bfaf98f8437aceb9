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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from probe import __version__
from probe.errors import ProbeError
from probe.report import Row

if TYPE_CHECKING:
    from probe.extract import ExtractReport

log = logging.getLogger(__name__)

JobFn = Callable[[Any], list[Row]]

_LOST_WORKER = ("BrokenProcessPool", "KilledWorker", "WorkerCrashedError", "NodeDiedError")


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
            return [Row(**row) for row in payload["rows"]]
        except (ValueError, KeyError, TypeError) as err:
            log.warning("unreadable job file %s (%s); rerunning job %s", path, err, name)
            return None

    def save(self, name: str, rows: Sequence[Row]) -> None:
        path = self._path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = {"job": name, "fingerprint": self.fingerprint, "rows": [asdict(r) for r in rows]}
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


def cache_identity(report: ExtractReport) -> dict[str, Any]:
    """The cached features a run reads: cache key, each shard's source hash, toolkit version."""
    shards = {s.path.relative_to(report.cache_dir).as_posix(): s.source_hash for s in report.shards}
    return {"key": report.key, "shards": shards, "version": __version__}


def run_jobs(
    fn: JobFn,
    jobs: Sequence[tuple[str, Any]],
    pool: PoolConfig,
    journal: Journal | None = None,
    *,
    progress: bool = True,
    desc: str = "jobs",
) -> list[list[Row]]:
    """Run `fn(job)` for every (name, job) not already in the journal; rows in job order."""
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

    with tqdm(total=len(jobs), initial=len(results), desc=desc, unit="job",
              disable=not progress) as bar:  # fmt: skip

        def finished(name: str, rows: list[Row]) -> None:
            if journal is not None:
                journal.save(name, rows)
            results[name] = rows
            bar.update()

        if todo:
            _run(fn, todo, pool, finished, journal)
    return [results[name] for name in names]


def _run(
    fn: JobFn,
    todo: list[tuple[str, Any]],
    pool: PoolConfig,
    finished: Callable[[str, list[Row]], None],
    journal: Journal | None,
) -> None:
    if pool.cluster is None and pool.local_workers(len(todo)) == 1:
        for name, job in todo:  # here: no pickling, no start-up cost, plain tracebacks
            try:
                finished(name, fn(job))
            except Exception as err:
                _explain(err, name, journal)
                raise
        return
    with _backend(pool, len(todo)) as backend:
        handles = {backend.submit(fn, job): name for name, job in todo}
        failure: tuple[str, Exception] | None = None
        for handle in backend.completed(list(handles)):
            try:
                rows = backend.result(handle)
            except Exception as job_error:
                if failure is None:
                    failure = (handles[handle], job_error)
                    backend.cancel([h for h in handles if h is not handle])
                continue
            finished(handles[handle], rows)
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


class _Local:
    """A spawn-started process pool: no forked CUDA or HDF5 state in the workers."""

    def __init__(self, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        self.executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))

    def __enter__(self) -> _Local:
        return self

    def __exit__(self, *exc: object) -> None:
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

    def __enter__(self) -> _Dask:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def submit(self, fn: JobFn, job: Any) -> Any:
        return self.client.submit(one_at_a_time, fn, job, pure=False)

    def completed(self, handles: list[Any]) -> Iterator[Any]:
        from dask.distributed import as_completed

        return iter(as_completed(handles))

    def result(self, handle: Any) -> list[Row]:
        return handle.result()  # type: ignore[no-any-return]

    def cancel(self, handles: list[Any]) -> None:
        self.client.cancel(handles)


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

    def __enter__(self) -> _Ray:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ray.shutdown()  # disconnects this driver; the cluster keeps running

    def submit(self, fn: JobFn, job: Any) -> Any:
        if self._remote is None:
            self._remote = self.ray.remote(num_cpus=1)(one_at_a_time)
        return self._remote.remote(fn, job)

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

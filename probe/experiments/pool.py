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
workers also die with this process if it is killed outright (SIGKILL): see
`probe.experiments.backends._worker_init`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from probe.errors import ProbeError
from probe.experiments.backends import Backend, JobFn, PoolConfig, open_backend
from probe.experiments.journal import Journal
from probe.results.items import JobOutput

log = logging.getLogger(__name__)

_LOST_WORKER = ("BrokenProcessPool", "KilledWorker", "WorkerCrashedError", "NodeDiedError")


# Seconds a terminated (SIGTERM) local worker gets to exit before it is killed (SIGKILL). Workers
# only read caches and return rows (this process writes the journal), so nothing is lost by
# not waiting for them; the grace is for job code that traps SIGTERM.
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


def run_jobs(
    fn: JobFn,
    jobs: Sequence[tuple[str, Any]],
    pool: PoolConfig,
    journal: Journal | None = None,
    *,
    progress: bool = True,
    desc: str = "jobs",
) -> list[JobOutput]:
    """Run `fn(job)` for every (name, job) not already in the journal; rows in job order.

    Raises `Interrupted` (a SystemExit) on SIGTERM or SIGINT while a pool runs, once the
    workers are stopped and the finished jobs saved.
    """
    names = [name for name, _ in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"job names must be unique: {names}")
    results: dict[str, JobOutput] = {}
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

            def finished(name: str, rows: JobOutput) -> None:
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
    finished: Callable[[str, JobOutput], None],
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
    backend: Backend | None = None
    failure: tuple[str, Exception] | None = None
    with _StopSignals() as signals:
        try:
            with open_backend(pool, len(todo)) as backend:
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
    backend: Backend,
    handles: dict[Any, str],
    finished: Callable[[str, JobOutput], None],
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

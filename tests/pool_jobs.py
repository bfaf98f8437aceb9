"""A toy job for the pool tests, in a module of its own so that worker processes importing it
(to unpickle the job) load only probe.results.report, not torch and transformers."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from probe.results.report import Row


@dataclass(frozen=True)
class Square:
    """A picklable toy job; each run leaves a marker file so tests can count runs."""

    n: int
    marks: Path
    fail: bool = False
    meet: int = 0  # wait (up to 60 s) until this many processes have started a job


def square(job: Square) -> list[Row]:
    (job.marks / f"{job.n}-{os.getpid()}-{len(list(job.marks.iterdir()))}").touch()
    # Without a meeting point one worker can finish every toy job before a second one has
    # started (spawn imports take seconds on a busy machine).
    deadline = time.monotonic() + 60
    while len({p.name.split("-")[1] for p in job.marks.iterdir()}) < job.meet:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if job.fail:
        raise RuntimeError(f"job {job.n} failed on purpose")
    return [
        Row("toy", str(job.n), "xx", "square", float(job.n**2)),
        Row("toy", str(job.n), "xx", "pid", float(os.getpid())),
    ]


@dataclass(frozen=True)
class Hold:
    """A job that writes `<n>-<pid>` to `marks` as it starts and then, if `hold`, runs until it
    is stopped (at most 120 s): the signal tests stop a run while two of these are running."""

    n: int
    marks: Path
    hold: bool = False


def hold(job: Hold) -> list[Row]:
    (job.marks / f"{job.n}-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while job.hold and time.monotonic() < deadline:
        time.sleep(0.05)
    return [Row("toy", str(job.n), "xx", "pid", float(os.getpid()))]


def drive(marks: str, journal: str, quick: int, held: int) -> None:
    """The parent process of the signal tests: `quick` jobs that finish at once, then `held`
    jobs that run until stopped, on 2 local workers, saved to a journal at `journal`."""
    from probe.experiments.backends import PoolConfig
    from probe.experiments.journal import Journal
    from probe.experiments.pool import run_jobs

    jobs = [(f"job-{n}", Hold(n, Path(marks), hold=n >= quick)) for n in range(quick + held)]
    run_jobs(hold, jobs, PoolConfig(workers=2), Journal(Path(journal), "fp"), progress=False)

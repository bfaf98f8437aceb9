"""The job pool: same rows in process, on 2 local workers and on a Dask cluster; a run that
stopped part-way resumes with only the missing jobs; SIGTERM, Ctrl-C and SIGKILL stop every
worker; grid and layers through it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from probe.errors import ProbeError
from probe.experiments import grid as grid_module
from probe.experiments.backends import PoolConfig, cluster_kind
from probe.experiments.base import RunOptions
from probe.experiments.grid import GridConfig, GridExperiment
from probe.experiments.journal import Journal, fingerprint
from probe.experiments.layers import LayersConfig, run_layers
from probe.experiments.pool import run_jobs
from probe.results.items import JobOutput
from probe.results.report import Row
from probe.train import TrainConfig
from tests.helpers import SENTENCES, cache_fields, make_ud
from tests.pool_jobs import Square, square


def _runs(marks: Path) -> list[int]:
    return sorted(int(p.name.split("-")[0]) for p in marks.iterdir())


def _squares(parts: list[list[Row]]) -> list[float]:
    return [r.value for part in parts for r in part if r.metric == "square"]


def test_local_pool_matches_in_process_and_keeps_job_order(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(f"sq-{n}", Square(n, marks)) for n in range(6)]
    here = run_jobs(square, jobs, PoolConfig(workers=1), progress=False)
    (tmp_path / "met").mkdir()  # markers of the two workers only
    met = [(name, replace(job, meet=2, marks=tmp_path / "met")) for name, job in jobs]
    two = run_jobs(square, met, PoolConfig(workers=2), progress=False)
    assert _squares(here) == _squares(two) == [float(n * n) for n in range(6)]
    pids = {r.value for part in two for r in part if r.metric == "pid"}
    assert float(os.getpid()) not in pids and len(pids) == 2  # really ran in two workers
    assert {r.value for part in here for r in part if r.metric == "pid"} == {float(os.getpid())}


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_run_resumes_with_only_the_missing_jobs(tmp_path: Path, workers: int) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    journal = Journal(tmp_path / "run" / "jobs", fingerprint("data-v1"))
    jobs = [(f"sq-{n}", Square(n, marks, fail=n == 2)) for n in range(4)]
    with pytest.raises(RuntimeError, match="job 2 failed on purpose") as info:
        run_jobs(square, jobs, PoolConfig(workers=workers), journal, progress=False)
    assert any("rerun runs only the missing ones" in note for note in info.value.__notes__)
    saved = journal.saved()
    # In process the failure stops the run; in a pool, jobs already started finish and count.
    if workers == 1:
        assert saved == ["sq-0", "sq-1"]
    else:
        assert {"sq-0", "sq-1"} <= set(saved) <= {"sq-0", "sq-1", "sq-3"}
    before = _runs(marks)
    fixed = [(f"sq-{n}", Square(n, marks)) for n in range(4)]
    parts = run_jobs(square, fixed, PoolConfig(workers=workers), journal, progress=False)
    assert _squares(parts) == [0.0, 1.0, 4.0, 9.0]
    missing = set(range(4)) - {int(name.split("-")[1]) for name in saved}
    assert sorted(_runs(marks)) == sorted(before + sorted(missing))  # only those ran again
    assert journal.saved() == [f"sq-{n}" for n in range(4)]


def test_journal_reuses_saved_jobs_only_for_the_same_fingerprint(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(f"sq-{n}", Square(n, marks)) for n in range(3)]
    journal = Journal(tmp_path / "jobs", fingerprint("data-v1"))
    first = run_jobs(square, jobs, PoolConfig(), journal, progress=False)
    assert len(_runs(marks)) == 3
    (tmp_path / "jobs" / "sq-1.json").unlink()  # as if the worker running it was lost
    second = run_jobs(square, jobs, PoolConfig(), journal, progress=False)
    assert _runs(marks) == [0, 1, 1, 2]  # only job 1 ran again
    assert second == first  # saved rows round-trip exactly
    stale = Journal(tmp_path / "jobs", fingerprint("data-v2"))  # the cache was rebuilt
    run_jobs(square, jobs, PoolConfig(), stale, progress=False)
    assert _runs(marks) == [0, 0, 1, 1, 1, 2, 2]
    stale.clear()
    assert not (tmp_path / "jobs").exists()


def test_bad_pool_settings_fail_clearly() -> None:
    assert cluster_kind("tcp://10.0.0.1:8786") == "dask"
    assert cluster_kind("/shared/scheduler.json") == "dask"
    assert cluster_kind("ray://head:10001") == cluster_kind("ray") == "ray"
    with pytest.raises(ProbeError, match="not a cluster address"):
        PoolConfig(cluster="http://head:8786")
    with pytest.raises(ProbeError, match="at least 1"):
        PoolConfig(workers=0)


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A 2-process Dask cluster on this machine, reached by address like a remote one."""
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    yield cluster.scheduler_address
    cluster.close()


def test_dask_cluster_matches_in_process(tmp_path: Path, dask_address: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [(f"sq-{n}", Square(n, marks)) for n in range(5)]
    parts = run_jobs(square, jobs, PoolConfig(cluster=dask_address), progress=False)
    assert _squares(parts) == [float(n * n) for n in range(5)]
    assert float(os.getpid()) not in {r.value for part in parts for r in part if r.metric == "pid"}
    journal = Journal(tmp_path / "jobs", "fp")
    bad = [(f"sq-{n}", Square(n, marks, fail=n == 2)) for n in range(3)]
    with pytest.raises(RuntimeError, match="job 2 failed on purpose"):
        run_jobs(square, bad, PoolConfig(cluster=dask_address), journal, progress=False)
    assert "sq-2" not in journal.saved()


# --- signals: a stopped parent leaves no worker behind ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until `condition()` holds (a busy 2-core machine can take seconds), or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether a process runs; a zombie (dead, not yet reaped by an init that may never) is
    not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel (a zombie then counts as alive)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _session(sid: int) -> list[int]:
    """Running processes of session `sid` (the parent started its own): the workers and
    anything else the parent started, such as multiprocessing's resource tracker."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    ("sig", "whom", "status"),
    [
        (signal.SIGTERM, "parent", 128 + signal.SIGTERM),  # `kill PID`, a scheduler's stop
        (signal.SIGINT, "group", 128 + signal.SIGINT),  # Ctrl-C: the terminal signals everyone
        (signal.SIGKILL, "parent", -signal.SIGKILL),  # no clean-up: the workers must follow
    ],
    ids=["sigterm", "ctrl-c", "sigkill"],
)
def test_a_stopped_run_stops_its_workers_and_keeps_finished_jobs(
    tmp_path: Path, sig: signal.Signals, whom: str, status: int
) -> None:
    marks, jobs = tmp_path / "marks", tmp_path / "jobs"
    marks.mkdir()
    code = f"from tests.pool_jobs import drive; drive({str(marks)!r}, {str(jobs)!r}, 2, 3)"
    # stderr to a file, not a pipe: workers left behind would hold a pipe open.
    with (tmp_path / "stderr").open("w") as err:
        parent = subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, stderr=err,
            start_new_session=True,  # its own process group and session, as a shell job gets
        )  # fmt: skip
    journal = Journal(jobs, "fp")

    def started(held: bool) -> set[int]:  # pids of the workers that started quick/held jobs
        names = [p.name.split("-") for p in marks.iterdir()]
        return {int(pid) for n, pid in names if (int(n) >= 2) == held}

    try:
        # Both quick jobs saved, both workers inside a held job (jobs 2 and 3; 4 waits).
        _poll(lambda: journal.saved() == ["job-0", "job-1"] and len(started(True)) == 2, 60,
              "two finished jobs and two running ones")  # fmt: skip
        workers = started(True)
        assert started(False) <= workers and parent.pid not in workers
        if whom == "group":
            os.killpg(parent.pid, sig)
        else:
            os.kill(parent.pid, sig)
        assert parent.wait(timeout=30) == status, (tmp_path / "stderr").read_text()
        _poll(lambda: not any(_alive(pid) for pid in workers), 10, f"workers {workers} to exit")
        if Path("/proc/self/stat").exists():
            _poll(lambda: not _session(parent.pid), 10, "every process the parent started to exit")
    finally:  # whatever failed, leave nothing running: the workers are in the parent's group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
    assert journal.saved() == ["job-0", "job-1"]  # kept for the rerun; the held jobs were not
    assert all(journal.load(name) is not None for name in journal.saved())
    stderr = (tmp_path / "stderr").read_text()
    if sig != signal.SIGKILL:
        assert "Traceback" not in stderr, stderr
        assert f"stopped by {sig.name}" in stderr and "2 finished jobs are saved" in stderr


# --- grid and layers through the pool ---------------------------------------------------------


def _extract_config(tmp_path: Path, tiny_bert: Path) -> dict[str, Any]:
    make_ud(tmp_path / "data", SENTENCES * 3)
    return cache_fields(tmp_path, tiny_bert, compute_dtype="float32")


def _values(rows: list[Row]) -> list[tuple[str, str, str, str, float]]:
    return [(r.head, r.layer, r.lang, r.metric, r.value) for r in rows]


@pytest.mark.slow  # several full runs, worker processes that import torch
def test_grid_on_dask_equals_one_worker_and_resumes(
    tmp_path: Path, tiny_bert: Path, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = _extract_config(tmp_path, tiny_bert)
    base = GridConfig(**ex, pairs="0,2", train=TrainConfig(max_epochs=2), seeds=(0,),
                      baselines=False)  # fmt: skip
    here = RunOptions(tmp_path / "res", workers=1, progress=False)
    one = GridExperiment(base, here).run()
    assert not (one.directory / "jobs").exists()  # a finished run leaves no journal
    on_dask = GridExperiment(base, replace(here, cluster=dask_address)).run()
    assert on_dask.directory == one.directory  # where it ran is not part of the run's identity
    assert _values(on_dask.rows) == _values(one.rows)

    real_run_pair = grid_module.run_pair
    ran: list[tuple[int, int]] = []

    def flaky(job: grid_module._PairJob) -> JobOutput:
        ran.append(job.pair)
        if job.pair == (0, 2):
            raise RuntimeError("worker lost")
        return real_run_pair(job)

    monkeypatch.setattr(grid_module, "run_pair", flaky)
    with pytest.raises(RuntimeError, match="worker lost"):
        GridExperiment(base, here).run()
    assert Journal(one.directory / "jobs", "").saved() == ["dlfa-2-2-seed-0"]
    ran.clear()

    def counted(job: grid_module._PairJob) -> JobOutput:
        ran.append(job.pair)
        return real_run_pair(job)

    monkeypatch.setattr(grid_module, "run_pair", counted)
    resumed = GridExperiment(base, here).run()
    assert ran == [(0, 2)]  # the baseline pair was saved, only the lost one ran again
    assert _values(resumed.rows) == _values(one.rows)


@pytest.mark.slow  # several full runs, worker processes that import torch
def test_layers_two_workers_equal_one(tmp_path: Path, tiny_bert: Path) -> None:
    ex = _extract_config(tmp_path, tiny_bert)
    runs = []
    for workers in (1, 2):
        config = LayersConfig(**ex, train=TrainConfig(max_epochs=2))
        options = RunOptions(tmp_path / f"r{workers}", workers=workers, progress=False)
        runs.append(run_layers(config, options))
    one, two = runs
    assert _values(two.rows) == _values(one.rows)
    assert two.mix_weights == one.mix_weights and len(one.mix_weights) == 3
    heads = {r.head for r in one.rows}
    assert heads == {"linear", "control", "scalar_mix"}
    assert two.settings["workers"] == 2 and one.settings["workers"] == 1
    assert two.directory.name == one.directory.name  # workers are not part of the identity

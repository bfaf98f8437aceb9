"""The host pipeline against the disk: can extraction keep up with an encoder that costs nothing?

On a GPU the forward pass stops being the bound: an H100 computes mBERT's 13 layers for far
more words per second than a disk takes at 13 x 768 x 2 bytes a word. What is left is the
host's share: tokenising, batching, pooling, the copy back, scattering rows into the block,
checksums, HDF5 writes and commits. This measures that share without a GPU:

    host pipeline  `probe extract`'s real path (`ensure_cached`: blocks, batches, pooling,
                   scatter, checksums, HDF5 writes, fsync and rename) into a fresh cache, with
                   the encoder replaced by a stand-in that returns precomputed hidden states
                   of a chosen shape (mBERT's 13 x 768 by default) at no cost
    disk           the same number of bytes written with plain numpy in blocks of the same
                   size, then fsync'ed: the machine's sequential write bandwidth through the
                   page cache (the issue's baseline, `host_pipeline_vs_disk`)
    disk direct    the same bytes by O_DIRECT from an aligned buffer, then fsync'ed: what the
                   device takes when the page cache is bypassed, as the shard writer does
                   where it can (`host_pipeline_vs_disk_direct`; probe.cache.streamed)

Both run in fresh processes of one run, alternating, `repeats` rounds; the medians are
compared (`host_pipeline_vs_disk`, target >= 0.8). Each step starts `SETTLE_S` after the
last one ended: on a VM whose balloon reports free pages to the host (virtio free page
reporting, 2 s after they are freed), the first write into pages the host has taken back
costs about 2 us a page (6 s of CPU for 3 GB here, against 1.5-2.4 s into pages just
freed). Started at once, the disk step wrote into the pages the host pipeline's deleted
cache had just freed, and was favoured by that alone. The stand-in is injected by patching
`probe.extract.run.load_encoder` in the child, as the tests do: the extraction code runs
unchanged. The tokenizer is the benchmark model's own (`--model`, MiniLM's WordPiece by
default), so tokenising costs what it costs for a real model of that family.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.harness import Settings, run_step

# Seconds between two steps: long enough for freed pages to be reported (see above).
SETTLE_S = 5.0
# name: (hidden states incl. the embeddings, hidden size)
SHAPES = {"mbert": (13, 768), "me5-small": (13, 384), "minilm": (7, 384)}


class StandInEncoder:
    """A model whose forward pass costs nothing: every layer's hidden states are slices of
    buffers filled once with random float32 values (what BERT returns under autocast).

    Each call returns, per layer, a contiguous (windows, width, hidden) view of that layer's
    own buffer, as a real encoder returns fresh contiguous tensors; distinct buffers per
    layer keep pooling's reads as cold as they are after a real forward pass.
    """

    def __init__(self, n_layers: int, hidden: int, *, max_positions: int = 512) -> None:
        self.config = SimpleNamespace(
            num_hidden_layers=n_layers - 1, hidden_size=hidden, model_type="bert",
            max_position_embeddings=max_positions,
        )  # fmt: skip
        self.n_layers, self.hidden = n_layers, hidden
        self._states: list[Any] = []
        self.calls = 0
        self.grown = 0  # buffers refilled during the run (0 when `prepare` was big enough)

    def prepare(self, size: int, device: Any) -> None:
        """Fill every layer's buffer with `size` values on `device` (before timing)."""
        import torch

        generator = torch.Generator(device="cpu").manual_seed(23)
        self._states = [
            torch.randn(size, generator=generator).to(device) for _ in range(self.n_layers)
        ]

    def _grow(self, size: int, device: Any) -> None:
        if not self._states or self._states[0].numel() < size or self._states[0].device != device:
            self.prepare(int(size * 1.25), device)  # batches vary in shape: grow rarely
            self.grown += 1

    def __call__(self, input_ids: Any, attention_mask: Any, **_: Any) -> SimpleNamespace:
        windows, width = input_ids.shape
        size = windows * width * self.hidden
        self._grow(size, input_ids.device)
        self.calls += 1
        states = tuple(s[:size].view(windows, width, self.hidden) for s in self._states)
        return SimpleNamespace(hidden_states=states)


@contextlib.contextmanager
def thread_cpu(interval: float = 0.2) -> Iterator[dict[str, float]]:
    """CPU seconds of each of this process's threads by name, summed over threads of one name
    (Linux: /proc/self/task; empty elsewhere). Sampled every `interval` s, so a thread's last
    fraction of a second before it ends may be missed."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seen: dict[int, tuple[str, float]] = {}
    stop = threading.Event()

    def sample() -> None:
        names = {t.native_id: t.name for t in threading.enumerate()}
        for task in Path("/proc/self/task").glob("*"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (task / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                tid = int(task.name)
                # threads Python did not start (torch's, OpenMP's) keep their first name seen
                name = names.get(tid) or seen.get(tid, ("native",))[0]
                seen[tid] = (name, (int(fields[11]) + int(fields[12])) / ticks)

    def loop() -> None:
        while not stop.wait(interval):
            sample()

    totals: dict[str, float] = {}
    thread = threading.Thread(target=loop, name="cpu-sampler", daemon=True)
    if Path("/proc/self/task").is_dir():
        sample()
        start = dict(seen)
        thread.start()
    try:
        yield totals
    finally:
        if thread.is_alive():
            stop.set()
            thread.join()
            sample()
            for tid, (name, cpu) in seen.items():
                before = start.get(tid, (name, 0.0))[1]
                key = re.sub(r"_\d+$", "", name)  # pool threads: shard-writer_0 -> shard-writer
                totals[key] = round(totals.get(key, 0.0) + cpu - before, 2)


def host_pipeline(settings: Settings, cache: str, shape: str) -> dict[str, Any]:
    """`ensure_cached` with the stand-in encoder of `shape` into a fresh cache."""
    from unittest import mock

    from transformers import AutoTokenizer

    from benchmarks.extraction import extract_setup, gpu_sampler
    from probe.extract import ensure_cached
    from probe.models import resolve_model
    from probe.runtime.device import resolve_device

    n_layers, hidden = SHAPES[shape]
    spec, request, options, paths = extract_setup(settings, cache)
    ref = resolve_model(settings.model, paths.cache_root)
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    stand_in = StandInEncoder(n_layers, hidden)
    # Filled before the clock starts: a batch holds at most the token budget (a longer unit
    # runs as pieces within it), plus one window of slack.
    budget = options.batch_tokens or (32768 if settings.device.startswith("cuda") else 4096)
    stand_in.prepare((budget + 512) * hidden, resolve_device(settings.device))

    def load_stand_in(_ref: Any, _device: str) -> tuple[Any, Any]:
        return stand_in, tokenizer

    began, cpu = time.perf_counter(), time.process_time()
    with (
        mock.patch("probe.extract.run.load_encoder", load_stand_in),
        gpu_sampler(settings.device) as utilisation,
        thread_cpu() as by_thread,
    ):
        report = ensure_cached(spec, request, options, paths, progress=False).report
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    size = sum(p.stat().st_size for p in Path(cache).rglob("*.h5"))
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "shape": f"{n_layers}x{hidden}",
        "words": report.rows,
        "seconds": round(report.seconds, 3),
        "call_seconds": round(wall, 3),
        # CPU time of every thread of the call: the work itself, whatever else the
        # (shared) machine runs; wall time on `cores` free cores is at least cpu / cores.
        "cpu_seconds": round(cpu, 3),
        "cpu_seconds_by_thread": by_thread,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "words_per_s": round(report.rows / report.seconds, 1),
        "bytes": size,
        "bytes_per_word": round(size / max(report.rows, 1), 1),
        "forward_calls": stand_in.calls,
        "stand_in_regrown": stand_in.grown,
        "device": report.device,
        "block_bytes": options.block_bytes,
        "gpu_utilisation": utilisation(),
    }


def disk_write(
    settings: Settings, total_bytes: int, block_bytes: int, direct: bool = False
) -> dict[str, Any]:
    """Write `total_bytes` in blocks of `block_bytes`, fsync: sequential bandwidth, through
    the page cache (numpy's tofile) or, `direct`, by O_DIRECT (whole 4 KiB blocks)."""
    size = min(block_bytes, total_bytes)
    raw = np.random.default_rng(0).integers(0, 255, size + 4096, np.uint8)
    block = raw[-raw.ctypes.data % 4096 :][:size]  # aligned, as O_DIRECT needs
    path = Path(settings.work_dir) / "disk-baseline.bin"
    began, cpu = time.perf_counter(), time.process_time()
    if direct:
        total_bytes = total_bytes // 4096 * 4096
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
        try:
            done = 0
            while done < total_bytes:
                part = block[: min(total_bytes - done, block.size)]
                done += os.pwrite(fd, part.data, done)
            os.fsync(fd)
        finally:
            os.close(fd)
    else:
        with open(path, "wb") as f:
            left = total_bytes
            while left > 0:
                part = block[: min(left, block.size)]
                part.tofile(f)
                left -= part.size
            f.flush()
            os.fsync(f.fileno())
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    path.unlink()
    # microseconds: a smoke run's few hundred KB are written in under a millisecond
    return {"bytes": total_bytes, "seconds": round(seconds, 6), "cpu_seconds": round(cpu, 3),
            "gb_per_s": round(total_bytes / seconds / 1e9, 3), "direct": direct}  # fmt: skip


def measure(settings: Settings, shape: str = "mbert") -> dict[str, Any]:
    """Host pipeline and disk, alternating for `settings.repeats` rounds; medians compared."""
    work = Path(settings.work_dir)
    host_runs: list[dict[str, Any]] = []
    disk_runs: list[dict[str, Any]] = []
    direct_runs: list[dict[str, Any]] = []
    settle = 0.0 if settings.inline else SETTLE_S  # inline: a smoke run, timings mean nothing
    for i in range(max(settings.repeats, 1)):
        time.sleep(settle)
        load = os.getloadavg()[0]
        run = run_step("benchmarks.host_pipeline:host_pipeline", settings,
                       cache=str(work / f"host-cache-{i}"), shape=shape)  # fmt: skip
        run["load_average_1m"] = round(load, 2)
        host_runs.append(run)
        # The same feature bytes as the shards hold (their small arrays, strings and
        # metadata are the 1% on top: cache overhead in the extraction benchmark).
        n_layers, hidden = SHAPES[shape]
        feature_bytes = run["words"] * n_layers * hidden * 2
        time.sleep(settle)
        load = os.getloadavg()[0]
        disk = run_step("benchmarks.host_pipeline:disk_write", settings,
                        total_bytes=feature_bytes, block_bytes=run["block_bytes"])  # fmt: skip
        disk["load_average_1m"] = round(load, 2)
        disk["words_per_s"] = round(run["words"] / max(disk["seconds"], 1e-6), 1)
        disk_runs.append(disk)
        if hasattr(os, "O_DIRECT"):
            time.sleep(settle)
            load = os.getloadavg()[0]
            direct = run_step("benchmarks.host_pipeline:disk_write", settings, direct=True,
                              total_bytes=feature_bytes,
                              block_bytes=run["block_bytes"])  # fmt: skip
            direct["load_average_1m"] = round(load, 2)
            direct["words_per_s"] = round(run["words"] / max(direct["seconds"], 1e-6), 1)
            direct_runs.append(direct)
    host = statistics.median(r["words_per_s"] for r in host_runs)
    disk_rate = statistics.median(r["words_per_s"] for r in disk_runs)
    return {
        "shape": shape,
        "words": host_runs[0]["words"],
        "bytes_per_word": host_runs[0]["bytes_per_word"],
        "host_pipeline_words_per_s": round(host, 1),
        "disk_write_words_per_s": round(disk_rate, 1),
        "disk_write_gb_per_s": round(statistics.median(r["gb_per_s"] for r in disk_runs), 3),
        "host_pipeline_vs_disk": round(host / disk_rate, 3),
        **_direct_figures(host, direct_runs),
        "rounds": {"host": host_runs, "disk": disk_runs, "disk_direct": direct_runs},
    }


def _direct_figures(host: float, direct_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The host pipeline against the device's direct-I/O bandwidth (nothing without it)."""
    if not direct_runs:
        return {}
    rate = statistics.median(r["words_per_s"] for r in direct_runs)
    return {
        "disk_direct_words_per_s": round(rate, 1),
        "disk_direct_gb_per_s": round(statistics.median(r["gb_per_s"] for r in direct_runs), 3),
        "host_pipeline_vs_disk_direct": round(host / rate, 3),
    }

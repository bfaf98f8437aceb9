"""Benchmark plumbing: the settings, one fresh subprocess per measurement, machine facts.

Every measurement is a module-level function that takes a `Settings` (plus plain keyword
arguments) and returns a JSON-able dict. `run_step` runs it in a fresh Python process by
default, so no measurement inherits another's warm state (allocator, thread pools, page
cache of the model) and peak RSS is that measurement's own; `inline=True` runs it in this
process instead (the smoke test does, to stay fast; RSS figures are then not separate).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MARKER = "BENCHMARK-RESULT "


@dataclass(frozen=True)
class Settings:
    """What every measurement of one benchmark run shares."""

    data_dir: str
    work_dir: str  # fresh caches and results are written here
    model: str = "minilm"
    task: str = "pos"
    device: str = "cpu"
    compute_dtype: str = "auto"
    batch_tokens: int | None = None  # None: the toolkit's default for the device
    max_sentences: int | None = None  # per split; None = whole splits
    grid_workers: int | None = None  # None: the toolkit's default (one per core)
    memory_sentences: tuple[int, int] | None = None  # None: half and all of the largest split
    block_bytes: int | None = None  # None: the toolkit's default
    long_sentence_words: int = 20_000  # words of the one long sentence (long_sentence)
    repeats: int = 2  # rounds of the extraction comparison; each way keeps its best
    inline: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        raw = json.loads(text)
        if raw.get("memory_sentences") is not None:
            raw["memory_sentences"] = tuple(raw["memory_sentences"])
        return cls(**raw)


def run_step(function: str, settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """Run `module:function(settings, **kwargs)` in a fresh process (or inline); its dict.

    The child's peak RSS (and its own children's, e.g. grid workers) is added as
    `peak_rss_mb` / `children_peak_rss_mb`.
    """
    if settings.inline:
        return _call(function, settings, kwargs)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    payload = json.dumps({"settings": asdict(settings), "kwargs": kwargs})
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", function, payload],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark step {function} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    result["process_seconds"] = round(time.perf_counter() - began, 3)
    return result


def _call(function: str, settings: Settings, kwargs: dict[str, Any]) -> dict[str, Any]:
    module, name = function.split(":")
    fn: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
    return fn(settings, **kwargs)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kib / 1024 if sys.platform != "darwin" else kib / 2**20, 1)


def children_peak_rss_mb() -> float:
    """The largest peak RSS of any finished child of this process, in MiB."""
    kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(kib / 1024 if sys.platform != "darwin" else kib / 2**20, 1)


def machine() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, load, library versions, bf16, GPU."""
    import h5py
    import numpy as np
    import torch

    from probe.runtime.precision import cpu_has_bf16

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    """Child entry: `python -m benchmarks.harness module:function '<json>'`."""
    function, payload = sys.argv[1], json.loads(sys.argv[2])
    settings = Settings.from_json(json.dumps(payload["settings"]))
    result = _call(function, settings, payload["kwargs"])
    result["peak_rss_mb"] = peak_rss_mb()
    result["children_peak_rss_mb"] = children_peak_rss_mb()
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

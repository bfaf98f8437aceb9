"""Training on the cache against re-running the encoder: `probe layers` and `probe grid` vs
one extraction pass over the same data.

The extraction pass is what a zero-shot run needs (the source's training split and every
language's evaluation split) into a fresh cache; `layers` (a linear probe per layer, the
control task, the scalar mix; every language scored) and `grid` (DLFA for every (k, last)
pair and the last-layer baseline) then run on that cache with their default settings.
Each is timed over its whole library call (cache check included) in a fresh process.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.extraction import extract_setup
from benchmarks.harness import Settings, run_step


def extraction_pass(settings: Settings, cache: str) -> dict[str, Any]:
    """Extract what `layers`/`grid` read (source train and dev splits, every eval split)."""
    from probe.extract import ensure_cached

    spec, request, options, paths = extract_setup(settings, cache, splits=None,
                                                  source=_source(settings))  # fmt: skip
    began = time.perf_counter()
    report = ensure_cached(spec, request, options, paths, progress=False).report
    return {
        "words": report.rows,
        "call_seconds": round(time.perf_counter() - began, 3),
        "seconds": round(report.seconds, 3),
        "words_per_s": round(report.rows / report.seconds, 1),
    }


def layers(settings: Settings, cache: str, results: str) -> dict[str, Any]:
    """`probe layers` with its defaults on the warm cache."""
    from probe.experiments.base import RunOptions
    from probe.experiments.layers import LayersConfig, run_layers

    config = LayersConfig(**_cache_fields(settings, cache))
    began = time.perf_counter()
    result = run_layers(config, RunOptions(Path(results), progress=False))
    seconds = time.perf_counter() - began
    if result.extract_seconds > 0.5 * seconds:
        raise RuntimeError(f"layers re-extracted ({result.extract_seconds:.1f} s): cache cold?")
    return {
        "call_seconds": round(seconds, 3),
        "probe_seconds": round(result.probe_seconds, 3),
        "scores": _scores(result.rows, "linear"),
    }


def grid(settings: Settings, cache: str, results: str) -> dict[str, Any]:
    """`probe grid` (DLFA, every (k, last) pair) on the warm cache, one seed and no matched
    baselines: the workload this benchmark has always timed, so its ratio stays comparable
    across versions (the default run trains 3 seeds x (pairs + baselines), about 9x more)."""
    from probe.experiments.base import RunOptions
    from probe.experiments.grid import GridConfig, GridExperiment

    grid_config = GridConfig(**_cache_fields(settings, cache), seeds=(0,), baselines=False)
    options = RunOptions(Path(results), workers=settings.grid_workers, progress=False)
    began = time.perf_counter()
    result = GridExperiment(grid_config, options).run()
    seconds = time.perf_counter() - began
    if result.seconds["extract"] > 0.5 * seconds:
        raise RuntimeError(f"grid re-extracted ({result.seconds['extract']:.1f} s): cache cold?")
    return {
        "call_seconds": round(seconds, 3),
        "grid_seconds": round(result.seconds["jobs"], 3),
        "scores": _scores(result.rows, None),
    }


def _scores(rows: Sequence[Any], head: str | None) -> dict[str, float]:
    """Main accuracy per layer (or pair) and language, x100, to check speed-ups changed none."""
    return {
        f"{r.layer}/{r.lang}": round(100 * r.value, 2)
        for r in rows
        if r.metric == "accuracy" and (head is None or r.head == head)
    }


def _cache_fields(settings: Settings, cache: str) -> dict[str, Any]:
    """The cache part of a layers or grid config: the extraction pass's, reusing its shards."""
    spec, request, options, paths = extract_setup(settings, cache, splits=None,
                                                  overwrite="missing")  # fmt: skip
    return {"spec": spec, "task": request.task, "langs": request.langs,
            "max_sentences": request.max_sentences, "options": options, "paths": paths}  # fmt: skip


def _source(settings: Settings) -> str:
    from probe.data.tasks import get_task

    return get_task(settings.task).default_source


def measure(settings: Settings) -> dict[str, Any]:
    """One extraction pass, then layers and grid on its cache; ratios to the pass."""
    work = Path(settings.work_dir)
    cache = work / "training-cache"
    results = work / "training-results"
    ex = run_step("benchmarks.cached_training:extraction_pass", settings, cache=str(cache))
    lay = run_step("benchmarks.cached_training:layers", settings, cache=str(cache),
                   results=str(results))  # fmt: skip
    gri = run_step("benchmarks.cached_training:grid", settings, cache=str(cache),
                   results=str(results))  # fmt: skip
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(results, ignore_errors=True)
    return {
        "extraction": ex,
        "layers": lay,
        "grid": gri,
        "ratio_layers_to_extraction": round(lay["call_seconds"] / ex["call_seconds"], 3),
        "ratio_grid_to_extraction": round(gri["call_seconds"] / ex["call_seconds"], 3),
    }

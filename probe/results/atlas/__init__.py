"""`probe report`: one self-contained HTML page per model, its layer atlas, read from results.

`runs` finds a model's run directories, `measures` turns their rows into per-layer columns
(structural and cross-lingual) and marks the most structural and most language-neutral
layers, `missing` names the experiments a complete atlas still lacks, `page` writes the HTML.
Only results directories are read, never the encoder or the cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from probe.errors import ProbeError
from probe.results.atlas.page import ModelAtlas, model_atlas, write_page
from probe.results.atlas.runs import collect_runs

__all__ = ["ModelAtlas", "default_out", "write_report"]


def default_out(results: Path, keys: Sequence[str]) -> Path:
    """`<results>/report-<key>.html` (keys joined by `+` for models side by side)."""
    return results / f"report-{'+'.join(keys)}.html"


def write_report(
    results: Path, models: Sequence[str], out: Path | None = None
) -> tuple[Path, list[ModelAtlas]]:
    """Collect each model's runs under `results`, write the page, return its path and the
    atlases it shows."""
    if not models:
        raise ProbeError("name at least one --model")
    atlases = [model_atlas(collect_runs(results, m)) for m in models]
    keys = [a.model.key for a in atlases]
    if len(set(keys)) < len(keys):
        raise ProbeError(f"the same cache key twice in --model: {', '.join(keys)}")
    path = write_page(atlases, out or default_out(results, keys))
    return path, atlases

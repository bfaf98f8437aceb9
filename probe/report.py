"""Results on disk and on screen: long-format tables (CSV/JSON), compact text tables, plots."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One number: which head, which layer (or 'mix' / 'k,l'), which language, which metric."""

    head: str
    layer: str
    lang: str
    metric: str
    value: float


def run_directory(
    base: Path, name: str, settings: Mapping[str, Any], volatile: Sequence[str]
) -> Path:
    """`base/<name>-<hash of the settings>`: the same settings give the same directory, so a
    rerun overwrites its own results and nothing else. `volatile` keys (timings, device,
    provenance) are left out of the hash."""
    stable = {k: v for k, v in settings.items() if k not in volatile}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()
    return base / f"{name}-{digest[:8]}"


def cache_settings(
    command: str, task_name: str, extract: Any, source: str, langs: Sequence[str], key: str
) -> dict[str, Any]:
    """The settings every run on the cache records first: which command read which cache of
    which model, data and languages (`extract` is the run's ExtractConfig)."""
    return {
        "command": command,
        "task": task_name,
        "model": extract.model,
        "source": source,
        "languages": list(langs),
        "cache_key": key,
        "cache_root": str(extract.cache_root),
        "data_dir": str(extract.data_dir) if extract.data_dir else None,
        "extract": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(extract).items()},
    }


def write_table(rows: Sequence[Row], directory: Path, settings: Mapping[str, Any]) -> None:
    """results.csv (one row per number), results.json (settings + rows) and settings.json."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["head", "layer", "lang", "metric", "value"])
        for r in rows:
            writer.writerow([r.head, r.layer, r.lang, r.metric, f"{r.value:.6g}"])
    payload = {"settings": dict(settings), "rows": [asdict(r) for r in rows]}
    (directory / "results.json").write_text(json.dumps(payload, indent=1, default=str))
    (directory / "settings.json").write_text(json.dumps(dict(settings), indent=1, default=str))


def provenance(seed: int) -> dict[str, Any]:
    """Package versions, git revision and seed: what a rerun needs to match."""
    versions = {}
    for name in ("probe", "torch", "transformers", "numpy", "h5py", "scikit-learn", "seqeval"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent, check=False,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"versions": versions, "git_revision": rev, "python": platform.python_version(),
            "seed": seed}  # fmt: skip


def pivot(
    rows: Iterable[Row], head: str, metric: str
) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """(layers, langs, {(layer, lang): value}) for one head and metric, in first-seen order."""
    layers: dict[str, None] = {}
    langs: dict[str, None] = {}
    cells = {}
    for r in rows:
        if r.head == head and r.metric == metric:
            layers.setdefault(r.layer)
            langs.setdefault(r.lang)
            cells[(r.layer, r.lang)] = r.value
    return list(layers), list(langs), cells


def text_table(
    row_names: Sequence[str],
    col_names: Sequence[str],
    cells: Mapping[tuple[str, str], float],
    *,
    corner: str = "layer",
    scale: float = 100.0,
    digits: int = 1,
) -> str:
    """A fixed-width table; missing cells print as '-'."""
    width = max(6, *(len(c) for c in col_names)) + 1
    lines = [f"{corner:<6}" + "".join(f"{c:>{width}}" for c in col_names)]
    for r in row_names:
        values = []
        for c in col_names:
            v = cells.get((r, c))
            values.append(
                f"{'-':>{width}}"
                if v is None or math.isnan(v)
                else f"{v * scale:>{width}.{digits}f}"
            )
        lines.append(f"{r:<6}" + "".join(values))
    return "\n".join(lines)


def plot_layer_curves(
    layers: Sequence[int],
    series: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    ylabel: str,
    highlight: str | None = None,
) -> Path:
    """One line per series over the layers (e.g. one per language); the source drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, values in series.items():
        bold = name == highlight
        ax.plot(layers, [100 * v for v in values], marker="o", ms=3,
                lw=2.6 if bold else 1.3, label=f"{name} (source)" if bold else name,
                zorder=3 if bold else 2)  # fmt: skip
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(ylabel)
    ax.set_xticks(list(layers))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(series) > 6 else 1, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

"""`probe grid` on screen and on disk: the score and gain per layer pair, and the heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.analysis.metrics import METRIC_NOTES
from probe.data.tasks import Task
from probe.results.table import Table

Pair = tuple[int, ...]
GROUPS = ("targets", "enf", "noenf")  # the gain rows' groups, in the table's column order


def pair_name(pair: Pair) -> str:
    """'3,6': how a pair is printed (and the legacy `layer` column)."""
    return ",".join(str(i) for i in pair)


def render_grid(
    task: Task, rows: Table, source: str, langs: Sequence[str], baseline: Pair,
    directory: Path, key: str,
) -> str:  # fmt: skip
    """Write grid_heatmap.png; return the summary table."""
    plot_grid(task, rows, source, langs, baseline, directory / "grid_heatmap.png", key)
    return grid_table(task, rows, source, langs, baseline)


def _scores(task: Task, rows: Table) -> tuple[list[Pair], dict[tuple[Pair, str], float]]:
    """The pairs in first-seen order and the main metric per (pair, language)."""
    scored = rows.filter(metric=task.metric)
    return scored.values("layers"), {(r.layers, r.lang): r.value for r in scored}


def _gains(task: Task, rows: Table) -> dict[tuple[Pair, str], float]:
    """Gain per (pair, language) and per (pair, group) for the targets/enf/noenf means."""
    gains = rows.filter(metric=f"gain_{task.metric}")
    return {(r.layers, r.group or r.lang): r.value for r in gains}


def grid_table(
    task: Task, rows: Table, source: str, langs: Sequence[str], baseline: Pair
) -> str:  # fmt: skip
    """Scores of the baseline and every pair per language, then the gains (x100)."""
    metric = task.metric
    base_name = pair_name(baseline)
    pairs, values = _scores(task, rows)
    gains = _gains(task, rows)
    cols = [*langs]
    width = max(7, *(len(c) + 1 for c in cols))
    head = f"{'pair':<8}" + "".join(f"{c:>{width}}" for c in cols)
    head += "".join(f" {'Δ' + g:>{width}}" for g in GROUPS)
    lines = [f"{task.name}: {metric} x100 per layer pair (k,last); baseline {base_name} = last "
             f"layer alone; source {source}; Δ = gain over baseline", head]  # fmt: skip
    for pair in pairs:
        line = f"{pair_name(pair) + (' *' if pair == baseline else ''):<8}"
        line += "".join(_cell(values.get((pair, c)), width) for c in cols)
        line += "".join(_cell(gains.get((pair, g)), width + 1, signed=True) for g in GROUPS)
        lines.append(line)
    for name in task.extra_metrics:  # pos_f1 on UPOS tasks: what XTREME and DLFA report
        other = {(r.layers, r.lang): r.value for r in rows.filter(metric=name)}
        if other:
            lines += ["", f"{task.name}: {name} x100 per layer pair; {METRIC_NOTES[name]}",
                      f"{'pair':<8}" + "".join(f"{c:>{width}}" for c in cols)]  # fmt: skip
            lines += [f"{pair_name(pair) + (' *' if pair == baseline else ''):<8}"
                      + "".join(_cell(other.get((pair, c)), width) for c in cols)
                      for pair in pairs]  # fmt: skip
    return "\n".join(lines)


def _cell(value: float | None, width: int, signed: bool = False) -> str:
    if value is None or np.isnan(value):
        return f"{'-':>{width}}"
    return f"{100 * value:>+{width}.1f}" if signed else f"{100 * value:>{width}.1f}"


def plot_grid(
    task: Task, rows: Table, source: str, langs: Sequence[str], baseline: Pair,
    path: Path, key: str,
) -> Path:  # fmt: skip
    """Heatmap: pairs x languages, colour = gain over the last-layer baseline, text = score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    metric = task.metric
    pairs, values = _scores(task, rows)
    gains = _gains(task, rows)
    cols = [*langs, "enf", "noenf"]
    grid = np.full((len(pairs), len(cols)), np.nan)
    for i, p in enumerate(pairs):
        for j, c in enumerate(cols):
            g = 0.0 if p == baseline and c in langs else gains.get((p, c))
            grid[i, j] = np.nan if g is None else 100 * g
    limit = max(1.0, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(cols), 1.2 + 0.42 * len(pairs)), dpi=120)
    im = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, p in enumerate(pairs):
        for j, c in enumerate(cols):
            v = values.get((p, c))
            if v is not None:
                text = f"{100 * v:.1f}"
            else:
                text = f"{grid[i, j]:+.1f}" if np.isfinite(grid[i, j]) else ""
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(pairs)), [pair_name(p) + (" (baseline)" if p == baseline else "")
                                      for p in pairs])  # fmt: skip
    ax.set_xlabel("language (enf/noenf: mean gain inside/outside the source's family)")
    ax.set_ylabel("layer pair (k, last)")
    ax.set_title(f"{task.name} {key}: {metric} (text) and gain over last layer (colour), "
                 f"source {source}", fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax, label=f"gain in {metric} (x100)")
    return save_figure(fig, path)  # wraps the title, which names the cache key, to fit

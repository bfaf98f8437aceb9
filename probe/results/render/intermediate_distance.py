"""`probe intermediate`'s distance outputs: distances.csv, gain_vs_distance.csv and .png, and
the summary's lines on gain against distance."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.analysis.crosslingual.gain_distance import (
    RESAMPLED,
    GainPoint,
    KindCorrelation,
    PairDistances,
)
from probe.results.gains import BASELINE
from probe.results.report import save_figure

DISTANCES_CSV = "distances.csv"
GAIN_CSV = "gain_vs_distance.csv"
GAIN_PNG = "gain_vs_distance.png"


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


def write_distances(distances: PairDistances, directory: Path) -> Path:
    """distances.csv: one row per (intermediate language, target, kind); a pair whose
    language URIEL lacks has an empty distance and the reason in `missing`."""
    path = directory / DISTANCES_CSV
    directory.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["intermediate_lang", "target_lang", "kind", "distance", "missing"])
        for a in distances.intermediate:
            for b in distances.targets:
                for kind in distances.kinds:
                    why = [f"{lang}: {distances.missing[(lang, kind)]}" for lang in (a, b)
                           if (lang, kind) in distances.missing]  # fmt: skip
                    value = distances.get(a, b, kind)
                    writer.writerow([a, b, kind, _number(value), "; ".join(why)])
    return path


def write_gain_points(points: Sequence[GainPoint], directory: Path) -> Path:
    """gain_vs_distance.csv: one row per (configuration, target, kind), every point; `task`
    and `stages` say which correlation a point belongs to, `used` (1/0) whether it is in it
    (single-stage configurations only)."""
    path = directory / GAIN_CSV
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "task", "stages", "used", "target_lang", "kind",
                         "intermediate_langs", "distance", "gain", "gain_sd", "ci_low",
                         "ci_high"])  # fmt: skip
        for p in points:
            writer.writerow([p.config, p.task, p.stages, int(p.used), p.target, p.kind,
                             "+".join(p.languages), _number(p.distance), _number(p.gain),
                             _number(p.gain_sd), _number(p.ci_low),
                             _number(p.ci_high)])  # fmt: skip
    return path


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}"


def correlation_text(c: KindCorrelation) -> str:
    """ "rho +0.42 [-0.10, +0.80], n 12" ("n/a" where undefined)."""
    interval = ("n/a" if math.isnan(c.ci_low)
                else f"[{_signed(c.ci_low)}, {_signed(c.ci_high)}]")  # fmt: skip
    return f"rho {_signed(c.rho)} {interval}, n {c.n}"


def distance_lines(
    metric: str,
    correlations: Sequence[KindCorrelation],
    intermediate: Sequence[str],
    dropped: Sequence[str],
    missing: dict[tuple[str, str], str],
    multi_stage: Sequence[str] = (),
) -> list[str]:
    """The summary's block: one line per (task, kind), each task's distinct intermediate
    languages, then what the points span and what is left out."""
    lines = [
        f"gain vs distance ({GAIN_CSV}, {GAIN_PNG}): per intermediate task, Spearman's rho "
        f"of each single-stage configuration's gain over '{BASELINE}' in {metric} per target "
        "language (the target's source left out) with the URIEL distance from its "
        "intermediate language(s) to the target (the mean over several); 95% interval: "
        f"bootstrap resampling {RESAMPLED}; n = points",
    ]
    task_width = max([len(c.task) for c in correlations] or [0]) + 2
    width = max([len(c.kind) for c in correlations] or [0]) + 2
    for c in correlations:
        lines.append(f"  {c.task:<{task_width}}{c.kind:<{width}}{correlation_text(c)} "
                     f"({_count(c.n_configs, 'configuration')} in "
                     f"{_count(c.n_language_sets, 'language set')} x "
                     f"{_count(c.n_targets, 'target')})")  # fmt: skip
    for task in dict.fromkeys(c.task for c in correlations):
        mine = [c for c in correlations if c.task == task]
        langs = tuple(dict.fromkeys(lang for c in mine for lang in c.languages))
        text = (f"  {task}: {_count(len(langs), 'distinct intermediate language')} "
                f"({', '.join(langs) or '-'})")  # fmt: skip
        if max(c.n_language_sets for c in mine) == 1:
            text += ("; one language set, so its correlation is only across target "
                     "languages")  # fmt: skip
        lines.append(text)
    lines.append(f"distinct intermediate languages in the run: {len(intermediate)} "
                 f"({', '.join(intermediate) or '-'})")  # fmt: skip
    if multi_stage:
        lines.append(f"multi-stage configurations left out of the correlations (in {GAIN_CSV} "
                     f"with used 0): {len(multi_stage)} ({', '.join(multi_stage)})")  # fmt: skip
    if missing:
        lacking = sorted({lang for lang, _ in missing})
        lines.append(f"not in URIEL (left out, see {DISTANCES_CSV}): {', '.join(lacking)}")
    if dropped:
        lines.append(f"points without a distance (left out): {'; '.join(dropped)}")
    return lines


def plot_gain_vs_distance(
    points: Sequence[GainPoint],
    correlations: Sequence[KindCorrelation],
    metric: str,
    path: Path,
    title: str,
) -> Path:
    """One panel per (intermediate task, kind), a row of panels per task: a point per
    single-stage configuration and target, coloured by configuration, the least-squares line
    of gain on distance, rho, its interval and n (multi-stage points are not drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(c.task for c in correlations))
    kinds = list(dict.fromkeys(c.kind for c in correlations))
    n_rows, n_cols = max(1, len(tasks)), max(1, len(kinds))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 3.3 * n_rows + 0.5),
                             dpi=120, squeeze=False)  # fmt: skip
    used = [p for p in points if p.used]
    configs = list(dict.fromkeys(p.config for p in used))
    colours = {c: f"C{i % 10}" for i, c in enumerate(configs)}
    for corr in correlations:
        ax = axes[tasks.index(corr.task)][kinds.index(corr.kind)]
        mine = [p for p in used if p.task == corr.task and p.kind == corr.kind]
        for conf in configs:
            xs = [p.distance for p in mine if p.config == conf]
            ys = [100 * p.gain for p in mine if p.config == conf]
            if xs:  # hollow markers of shrinking size: coinciding points stay visible
                j = configs.index(conf)
                ax.plot(xs, ys, "osD^v<>ph*"[j % 10], ms=max(3.0, 8.0 - j), mfc="none",
                        color=colours[conf], label=conf)  # fmt: skip
        x = np.array([p.distance for p in mine])
        y = np.array([100 * p.gain for p in mine])
        if len(x) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 20)
            ax.plot(grid, slope * grid + intercept, color="black", lw=1)
        for p in mine:
            ax.annotate(p.target, (p.distance, 100 * p.gain), fontsize=6,
                        xytext=(2, 2), textcoords="offset points")  # fmt: skip
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(f"{corr.task}, {corr.kind}: {correlation_text(corr)}", fontsize=8)
        ax.set_xlabel(f"{corr.kind} distance (URIEL)", fontsize=8)
        ax.grid(alpha=0.3)
        if corr.kind == kinds[-1] and mine:
            ax.legend(fontsize=6)
    for row in axes:
        row[0].set_ylabel(f"gain over '{BASELINE}' in {metric} x100", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)

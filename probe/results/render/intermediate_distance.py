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
    """gain_vs_distance.csv: one row per (configuration, target, kind)."""
    path = directory / GAIN_CSV
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "target_lang", "kind", "intermediate_langs", "distance",
                         "gain", "gain_sd", "ci_low", "ci_high"])  # fmt: skip
        for p in points:
            writer.writerow([p.config, p.target, p.kind, "+".join(p.languages),
                             _number(p.distance), _number(p.gain), _number(p.gain_sd),
                             _number(p.ci_low), _number(p.ci_high)])  # fmt: skip
    return path


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
) -> list[str]:
    """The summary's block: one line per kind, then what the points span and what is left out."""
    lines = [
        f"gain vs distance ({GAIN_CSV}, {GAIN_PNG}): Spearman's rho of each configuration's "
        f"gain over '{BASELINE}' in {metric} per target language (the target's source left "
        "out) with the URIEL distance from its intermediate language(s) to the target (the "
        f"mean over several); 95% interval: bootstrap resampling {RESAMPLED}; n = points",
    ]
    width = max([len(c.kind) for c in correlations] or [0]) + 2
    for c in correlations:
        lines.append(f"  {c.kind:<{width}}{correlation_text(c)} ({c.n_configs} configurations "
                     f"x {c.n_targets} targets)")  # fmt: skip
    n_langs = len(intermediate)
    sets = max([c.n_language_sets for c in correlations] or [0])
    text = f"distinct intermediate languages: {n_langs} ({', '.join(intermediate) or '-'})"
    if sets == 1:
        text += ("; every configuration trains in the same language(s), so the correlation is "
                 "only across target languages")  # fmt: skip
    lines.append(text)
    if missing:
        langs = sorted({lang for lang, _ in missing})
        lines.append(f"not in URIEL (left out, see {DISTANCES_CSV}): {', '.join(langs)}")
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
    """One panel per distance kind: a point per (configuration, target) coloured by
    configuration, the least-squares line of gain on distance, rho, its interval and n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [c.kind for c in correlations]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(3.4 * max(1, len(kinds)), 3.6),
                             dpi=120, squeeze=False)  # fmt: skip
    configs = list(dict.fromkeys(p.config for p in points))
    colours = {c: f"C{i % 10}" for i, c in enumerate(configs)}
    for ax, corr in zip(axes[0], correlations, strict=False):
        mine = [p for p in points if p.kind == corr.kind]
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
        ax.set_title(f"{corr.kind}: {correlation_text(corr)}", fontsize=8)
        ax.set_xlabel(f"{corr.kind} distance (URIEL)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"gain over '{BASELINE}' in {metric} x100", fontsize=8)
    if configs:
        axes[0][-1].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)

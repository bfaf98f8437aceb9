"""The two figures of `probe map`: the per-layer structural/cross-lingual map, and transfer
against linguistic distance (one panel per distance kind)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from probe.analysis.crosslingual.correlation import Correlation
from probe.results.report import save_figure

# curve name in the series -> (legend label, family); structural solid, cross-lingual dashed
_CURVES: dict[str, tuple[str, str]] = {
    "source_score": ("source score", "structural"),
    "selectivity": ("selectivity (vs control task)", "structural"),
    "transfer_ratio": ("transfer ratio (target / source)", "cross-lingual"),
    "retrieval": ("Tatoeba retrieval, centred (xx->en and en->xx)", "cross-lingual"),
    "cka": ("linear CKA with English", "cross-lingual"),
}
_STYLE = {"structural": "-", "cross-lingual": "--"}
_COLOURS = {"source_score": "#1f4e9c", "selectivity": "#4f9be0", "transfer_ratio": "#c0392b",
            "retrieval": "#e67e22", "cka": "#8e44ad"}  # fmt: skip


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_map(
    series: Mapping[str, Sequence[float]],
    path: Path,
    *,
    title: str,
    metric: str,
    neutral: int | None,
    structural: int,
    xtreme_layer: int | None = None,
) -> Path:
    """Top: the five summary curves over layers (structural solid, cross-lingual dashed) with
    the most structural and most language-neutral layers marked, and XTREME's Tatoeba accuracy
    as one star at the one layer that protocol reads (`series["retrieval_xtreme"]`). Bottom:
    centred retrieval (solid) and transfer ratio (dotted) per target language, one colour per
    language."""
    plt = _pyplot()
    n = len(series["source_score"])
    layers = list(range(n))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), dpi=120, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})  # fmt: skip
    for name, (label, family) in _CURVES.items():
        if name in series and not all(math.isnan(v) for v in series[name]):
            top.plot(layers, series[name], _STYLE[family], marker="o", ms=3.5, lw=2,
                     color=_COLOURS[name], label=f"{family}: {label}")  # fmt: skip
    xtreme = series.get("retrieval_xtreme")
    if xtreme_layer is not None and xtreme is not None and not math.isnan(xtreme[xtreme_layer]):
        top.plot([xtreme_layer], [xtreme[xtreme_layer]], "*", ms=13, color=_COLOURS["retrieval"],
                 label="cross-lingual: Tatoeba, XTREME's protocol (en->xx, one layer)")  # fmt: skip
    top.axvline(structural, color=_COLOURS["source_score"], alpha=0.35, lw=6)
    top.annotate("most structural", (structural, 1.02), xycoords=("data", "axes fraction"),
                 ha="center", fontsize=8, color=_COLOURS["source_score"])  # fmt: skip
    if neutral is not None:
        top.axvline(neutral, color=_COLOURS["retrieval"], alpha=0.35, lw=6)
        top.annotate("most language-neutral", (neutral, 1.07), xycoords=("data", "axes fraction"),
                     ha="center", fontsize=8, color=_COLOURS["retrieval"])  # fmt: skip
    top.set_ylabel(f"value (0-1; scores are {metric})")
    top.set_title(title, fontsize=9, pad=26)
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="best", title="solid: structural, dashed: cross-lingual",
               title_fontsize=8)  # fmt: skip

    cmap = plt.get_cmap("tab10")
    langs = [k.removeprefix("ratio_") for k in series if k.startswith("ratio_")]
    for i, lang in enumerate(langs):
        colour = cmap(i % 10)
        if f"retrieval_{lang}" in series:
            bottom.plot(layers, series[f"retrieval_{lang}"], "-", marker="o", ms=3, color=colour,
                        label=f"{lang} retrieval (centred)")  # fmt: skip
        bottom.plot(layers, series[f"ratio_{lang}"], ":", marker="s", ms=3, color=colour,
                    label=f"{lang} transfer ratio")  # fmt: skip
    bottom.set_xlabel("layer (0 = embeddings)")
    bottom.set_ylabel("per target language")
    bottom.set_xticks(layers)
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=7, ncol=2, loc="best")
    return save_figure(fig, path)


Point = tuple[float, float, str]  # (distance, transfer, language)


def plot_transfer_vs_distance(
    panels: Sequence[tuple[str, Mapping[str, Sequence[Point]], Mapping[str, Correlation]]],
    path: Path,
    *,
    ylabel: str,
    title: str,
) -> Path:
    """One row per layer shown (the fixed typology layer and the last), one column per
    distance kind; points are target languages, each panel titled with Spearman's rho, its
    raw p-value (uncorrected: the summary and correlation.csv give the Holm-adjusted one) and
    n."""
    plt = _pyplot()
    kinds = list(panels[0][1])
    fig, axes = plt.subplots(len(panels), len(kinds), figsize=(3.1 * len(kinds),
                             2.9 * len(panels)), dpi=110, squeeze=False)  # fmt: skip
    for row, (name, points, corr) in enumerate(panels):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            pts = [p for p in points[kind] if not math.isnan(p[1])]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, color="#1f4e9c")
            for x, y, lang in pts:
                ax.annotate(lang, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=8)
            c = corr.get(kind)
            stats = "n/a" if c is None or math.isnan(c.spearman_rho) else (
                f"rho={c.spearman_rho:.2f}, raw p={c.spearman_p:.2g} (n={c.n})")  # fmt: skip
            ax.set_title(f"{kind}: {stats}", fontsize=8)
            ax.set_xlabel(f"{kind} distance", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{name}\n{ylabel}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)

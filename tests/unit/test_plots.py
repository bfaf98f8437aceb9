"""Every figure the commands write keeps its text inside the PNG.

Titles name the task, the model and the cache key (`me5-small-0123456789abcdef`), so they
grow with the names; the grid heatmap's title ran off the right edge. Each plot function is
called on small synthetic results with long names; after it has drawn and saved, every text
artist (titles, suptitles, axis labels, tick labels, legend texts, annotations) must lie
inside the figure's bounding box.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from probe.analysis.calibration import reliability
from probe.analysis.crosslingual.correlation import Correlation
from probe.data.tasks import get_task
from probe.results.report import Row, plot_layer_curves
from probe.results.table import Table

matplotlib.use("Agg")  # before any pyplot import (the plot functions import it when called)

KEY = "me5-small-0123456789abcdef"  # a real cache key's shape: model slug, 16 hex digits
LANGS = ["en", "de", "fr", "tr", "zh", "ar"]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """The figures saved during a test, kept for inspection after the plot closed them."""
    saved: list[Figure] = []
    savefig = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> Any:
        saved.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    yield saved


def _shown_tick_labels(fig: Figure) -> dict[int, bool]:
    """id(tick label) -> whether it is drawn: the axes keep ticks outside the view limits,
    whose labels are not drawn and sit wherever they were last put."""
    shown: dict[int, bool] = {}
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(hi - lo), 1.0)
            for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
                inside = lo - slack <= tick.get_loc() <= hi + slack
                for label in (tick.label1, tick.label2):
                    shown[id(label)] = inside
    return shown


def outside(fig: Figure) -> list[str]:
    """Every drawn, non-empty text artist whose window extent leaves the figure's bbox."""
    canvas = FigureCanvasAgg(fig)  # closing a pyplot figure leaves it a canvas that cannot draw
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    shown = _shown_tick_labels(fig)
    bad = []
    for text in fig.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or not shown.get(id(text), True):
            continue
        ext = text.get_window_extent(renderer)
        if ext.x0 < box.x0 - 1 or ext.y0 < box.y0 - 1 or ext.x1 > box.x1 + 1 or ext.y1 > box.y1 + 1:
            bad.append(
                f"{text.get_text()!r} at x {ext.x0:.0f}..{ext.x1:.0f}, y {ext.y0:.0f}..{ext.y1:.0f}"
                f" (figure {box.width:.0f} x {box.height:.0f})"
            )
    return bad


def _check(figures: list[Figure], n: int) -> None:
    assert len(figures) == n
    for fig in figures:
        assert outside(fig) == [], fig.get_suptitle() or [ax.get_title() for ax in fig.axes]


# --- synthetic results -----------------------------------------------------------------------


def _grid_rows(task_metric: str, langs: list[str], n_layers: int) -> list[Row]:
    rng = np.random.default_rng(0)
    last = n_layers - 1
    rows = []
    for k in [last, *range(last)]:
        pair, layers = f"{k},{last}", (k, last)
        for lang in langs:
            score = float(rng.uniform(0.4, 0.9))
            rows.append(Row("dlfa", pair, lang, task_metric, score, layers=layers))
            if k != last:
                gain = rng.normal(0, 0.03)
                rows.append(
                    Row(
                        "dlfa",
                        pair,
                        lang,
                        f"gain_{task_metric}",
                        gain,
                        layers=layers,
                        config="vs last",
                        ci_low=gain - 0.01,
                        ci_high=gain + 0.01,
                    )
                )
        for group in ("targets", "enf", "noenf"):
            if k != last:
                rows.append(Row("dlfa", pair, group, f"gain_{task_metric}", rng.normal(0, 0.03),
                                layers=layers, group=group, config="vs last"))  # fmt: skip
    return rows


def _plot_grid(directory: Path) -> None:
    from probe.results.render.grid import plot_grid

    task = get_task("pos")
    rows = Table(_grid_rows(task.metric, LANGS[:3], 7))
    plot_grid(task, rows, "en", LANGS[:3], (6, 6), directory / "grid_heatmap.png", KEY)


def _plot_layer_curves(directory: Path) -> None:
    layers = list(range(13))
    series = {lang: [0.5 + 0.03 * i for i in layers] for lang in [*LANGS, *LANGS[::-1]]}
    series = {f"{lang}-{i}": v for i, (lang, v) in enumerate(series.items())}
    title = f"pos ({KEY}): linear probe per layer"
    plot_layer_curves(layers, series, directory / "score_per_layer.png", highlight="en-0",
                      title=title, ylabel="accuracy (x100)")  # fmt: skip


def _plot_map(directory: Path) -> None:
    from probe.results.render.map_plots import plot_map

    n = 13
    series: dict[str, list[float]] = {
        name: [0.2 + 0.05 * i for i in range(n)]
        for name in ("source_score", "selectivity", "transfer_ratio", "retrieval", "cka")
    }
    for lang in LANGS[1:]:
        series[f"ratio_{lang}"] = [0.5] * n
        series[f"retrieval_{lang}"] = [0.4] * n
    title = f"pos ({KEY}): structural vs cross-lingual signal per layer (source en)"
    # Marks at both ends: their annotations are centred on the first and the last layer.
    plot_map(series, directory / "map.png", title=title, metric="accuracy", neutral=0,
             structural=n - 1)  # fmt: skip


def _plot_transfer_vs_distance(directory: Path) -> None:
    from probe.results.render.map_plots import plot_transfer_vs_distance

    kinds = ["syntactic", "genetic", "geographic"]
    points = {k: [(0.1 * i, 0.5 + 0.01 * i, lang) for i, lang in enumerate(LANGS)] for k in kinds}
    corr = {k: Correlation(6, 0.5, 0.04, 0.4, 0.1) for k in kinds[:2]}
    panels = [(f"most structural ({KEY}) layer {layer}", points, corr) for layer in (3, 12)]
    title = f"pos ({KEY}): zero-shot transfer vs URIEL distance"
    plot_transfer_vs_distance(panels, directory / "transfer_vs_distance.png",
                              ylabel="target accuracy", title=title)  # fmt: skip


def _diagram(rng: np.random.Generator) -> dict[str, Any]:
    probs = rng.dirichlet(np.ones(5), size=200)
    gold = rng.integers(0, 5, size=200)
    before, after = reliability(probs, gold, 10), reliability(probs**0.5, gold, 10)
    return {"ece": before.ece, "ece_ts": after.ece, "temperature": 1.3,
            "before": before.as_dict(), "after": after.as_dict()}  # fmt: skip


def _plot_reliability(directory: Path) -> None:
    from probe.results.render.calibration import plot_reliability

    rng = np.random.default_rng(0)
    langs = LANGS[:3]
    regimes = ["en", "en+de+fr"]
    heads = [(f"{kind}@{regime}", ",".join(map(str, layers)), layers, regime)
             for regime in regimes
             for kind, each in (("linear", [(0,), (1,), (2,)]), ("dlfa", [(1, 2)]))
             for layers in each]  # fmt: skip
    diagrams: dict[str, dict[str, dict[str, Any]]] = {}
    for head, layer, _, _ in heads:
        diagrams.setdefault(head, {})[layer] = {lang: _diagram(rng) for lang in langs}
    temperatures = Table(Row(head, layer, "dev", "temperature", 1.3, layers=layers,
                             config=regime, subset="dev")
                         for head, layer, layers, regime in heads)  # fmt: skip
    plot_reliability(diagrams, temperatures, regimes, langs, directory, KEY)


def _plot_ece(directory: Path) -> None:
    from probe.results.render.calibration import plot_ece

    task = get_task("pos")
    regimes = ["en", "en+de+fr"]
    rows = Table(
        Row(f"{head}@{regime}", ",".join(map(str, layers)), lang, metric, 0.05 + 0.01 * i,
            layers=layers, config=regime)
        for i, regime in enumerate(regimes)
        for head, each in (("linear", [(j,) for j in range(7)]), ("dlfa", [(3, 6)]))
        for layers in each
        for lang in LANGS[:4]
        for metric in ("ece", "ece_ts")
    )  # fmt: skip
    plot_ece(task, rows, regimes, LANGS[:4], 7, directory, KEY)


def _plot_domain_shift(directory: Path) -> None:
    from probe.results.render.domain_shift import plot_domain_shift

    task = get_task("pos")
    plan = {"en": ["pos-gum", "pos-pud"], "de": ["pos-pud"]}
    rows = []
    for lang, out_tasks in plan.items():
        for out in ["", *out_tasks]:  # "": in-domain
            s = f"{lang}:{out or task.name}"
            typed: dict[str, Any] = {"config": lang, "eval_task": out}
            for i in range(7):
                rows.append(Row("linear", str(i), s, task.metric, 0.6 + 0.02 * i, layers=(i,),
                                **typed))  # fmt: skip
                rows.append(Row("linear", str(i), s, f"drop_{task.metric}", 0.01 * i,
                                layers=(i,), **typed))  # fmt: skip
            rows.append(Row("dlfa", "3,6", s, task.metric, 0.8, layers=(3, 6), **typed))
            rows.append(Row("dlfa", "3,6", s, f"drop_{task.metric}", 0.02, layers=(3, 6),
                            **typed))  # fmt: skip
    plot_domain_shift(task, Table(rows), plan, 7, directory, KEY)


def _plot_intermediate(directory: Path) -> None:
    from probe.results.gains import BASELINE
    from probe.results.render.intermediate import plot_intermediate

    task = get_task("pos")
    confs = [BASELINE, "udpos", "panx", "xnli", "udpos+panx+xnli"]
    rows = []
    for i, conf in enumerate(confs):
        for lang in LANGS:
            rows.append(Row("linear", conf, lang, task.metric, 0.6 + 0.02 * i, config=conf))
        if conf != BASELINE:
            for group in ("targets", "enf", "noenf", "Indo-European", "Sino-Tibetan"):
                typed = {"config": conf, "group": group}
                rows.append(Row("linear", conf, group, f"gain_{task.metric}", 0.01 * i, **typed))
                rows.append(Row("linear", conf, group, f"gain_{task.metric}_sd", 0.005,
                                stat="sd", **typed))  # fmt: skip
    plot_intermediate(task, Table(rows), "en", LANGS, directory / "intermediate.png", KEY)


PLOTS: dict[str, tuple[Callable[[Path], None], int]] = {
    "grid": (_plot_grid, 1),  # its title ran off the right edge
    "layer-curves": (_plot_layer_curves, 1),
    "map": (_plot_map, 1),
    "transfer-vs-distance": (_plot_transfer_vs_distance, 1),
    "reliability": (_plot_reliability, 2),  # one per regime
    "ece": (_plot_ece, 1),
    "domain-shift": (_plot_domain_shift, 2),  # the curves, and the drop per layer
    "intermediate": (_plot_intermediate, 1),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_text_stays_inside_the_figure(
    name: str, tmp_path: Path, figures: list[Figure]
) -> None:
    plot, n_figures = PLOTS[name]
    plot(tmp_path)
    _check(figures, n_figures)
    assert all(p.stat().st_size > 0 for p in tmp_path.glob("*.png"))
    assert len(list(tmp_path.glob("*.png"))) == n_figures


def test_the_check_sees_a_title_off_the_edge(figures: list[Figure], tmp_path: Path) -> None:
    """The check itself: a plain figure with a title wider than itself fails it."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title(f"pos {KEY}: accuracy (text) and gain over last layer (colour), source en")
    fig.savefig(tmp_path / "plain.png")
    plt.close(fig)
    assert any("accuracy (text)" in line for line in outside(fig))


def test_long_titles_are_wrapped_not_cut(tmp_path: Path) -> None:
    """The shared helper wraps a too-wide title onto lines at spaces and keeps its words,
    leaves a title that fits alone, and makes the directory it writes to."""
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    long = f"pos {KEY}: accuracy (text) and gain over last layer (colour), source en"
    left.set_title(long)
    right.set_title("short")
    fig.suptitle(f"intermediate tasks -> pos (source en), {KEY}, " * 2)
    save_figure(fig, tmp_path / "sub" / "wrapped.png")
    assert (tmp_path / "sub" / "wrapped.png").stat().st_size > 0
    assert "\n" in left.get_title() and left.get_title().split() == long.split()
    assert right.get_title() == "short"
    assert "\n" in fig.get_suptitle()
    assert outside(fig) == []


def test_a_name_wider_than_its_panel_is_broken_not_cut(tmp_path: Path) -> None:
    """A name longer than a narrow panel is wide breaks after its hyphens (or inside it, as
    a last resort) rather than running off the figure; no character is lost."""
    import matplotlib.pyplot as plt

    from probe.results.report import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(4, 2.5), dpi=100)
    long = f"pos {KEY}: accuracy (text) and gain over last layer (colour), source en"
    axes[0].set_title(long)
    save_figure(fig, tmp_path / "narrow.png")
    assert "".join(axes[0].get_title().split()) == "".join(long.split())
    assert outside(fig) == []

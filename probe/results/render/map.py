"""`probe map` on screen and on disk: the per-layer curves, the extreme layers, the typology
tests (transfer vs distance), the summary text, map.csv / correlation.csv / distances.csv and
both figures.

The typology lines never call a correlation significant on its raw p: the confirmatory test
is at the fixed layer with Holm over the distance kinds, the per-layer sweep is labelled
exploratory with Holm over layers x kinds, and with few targets the summary says how small
a p the test could give at all."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.crosslingual.typology import DistanceTest, TypologyTests
from probe.errors import ProbeError
from probe.results.render.map_plots import plot_map, plot_transfer_vs_distance
from probe.results.render.structural import map_curve_lines, map_curves, plot_map_curves
from probe.results.report import text_table
from probe.results.table import Table

Cells = dict[tuple[int, str], float]  # (layer, language) -> value
CENTRED, XTREME = "retrieval-centred", "retrieval-xtreme"  # the two Tatoeba protocols' heads
Distances = Mapping[tuple[str, str], float]  # (target, distance kind) -> URIEL distance


@dataclass(frozen=True)
class MapInputs:
    """What the map's summary and figures need besides the rows: names, the languages with
    parallel pairs (the result labels, in order), the URIEL distances of the targets and the
    layer XTREME's Tatoeba protocol read (None: no parallel job ran)."""

    task: str
    metric: str
    key: str
    source: str
    targets: tuple[str, ...]
    parallel: tuple[str, ...]
    distances: Distances
    kinds: tuple[str, ...]
    no_parallel: tuple[str, ...]
    no_uriel: tuple[str, ...]
    n_layers: int
    xtreme_layer: int | None = None
    typology: TypologyTests | None = None  # None: no distances (no URIEL vector, no target)
    n_seeds: int = 1


# One layer x distance kind of the typology analysis (probe.analysis.crosslingual.typology).
CorrelationRow = DistanceTest
ALPHA = 0.05


@dataclass(frozen=True)
class MapView:
    """The map's curves (one value per layer, 0 = embeddings), its correlations with distance
    and its two extreme layers."""

    series: dict[str, list[float]]
    correlations: list[CorrelationRow]
    most_neutral_layer: int | None
    most_structural_layer: int


def render_map(rows: Table, inputs: MapInputs, directory: Path) -> tuple[str, MapView]:
    """Write the CSV files and figures; return the summary text and what it was made from."""
    view = map_view(rows, inputs)
    _write_map_csv(view.series, directory / "map.csv")
    _write_correlations(inputs.typology, directory / "correlation.csv")
    _write_distances(inputs.distances, directory / "distances.csv")
    plot_map(view.series, directory / "map.png", title=f"{inputs.task} ({inputs.key}): "
             f"structural vs cross-lingual signal per layer (source {inputs.source})",
             neutral=view.most_neutral_layer, structural=view.most_structural_layer,
             metric=inputs.metric, xtreme_layer=inputs.xtreme_layer)  # fmt: skip
    _scatter(rows, inputs, view, directory / "transfer_vs_distance.png")
    curves = map_curves(rows, inputs.task, inputs.metric, inputs.source, inputs.targets,
                        inputs.n_layers)  # fmt: skip
    plot_map_curves(curves, directory / "structural_curves.png",
                    f"{inputs.task} ({inputs.key}): structural curves per layer")  # fmt: skip
    lines = map_curve_lines(curves, inputs.source)
    return _summary(rows, inputs, view) + "".join("\n" + line for line in lines), view


def map_view(rows: Table, inputs: MapInputs) -> MapView:
    series = _layer_series(rows, inputs)
    neutral = _argmax(series["retrieval"])
    structural = _argmax(series["source_score"])
    if structural is None:
        raise ProbeError(f"no {inputs.metric} for the source {inputs.source!r}: nothing to map")
    tests = inputs.typology.tests if inputs.typology is not None else []
    return MapView(series, tests, neutral, structural)


# --- curves, extreme layers and correlations -------------------------------------------------


def _cells(rows: Table, **where: Any) -> Cells:
    """{(layer, language): value} of the matching rows (each reads one layer): seed means
    (seed None), never a single seed's row or a standard deviation."""
    where = {"seed": None, "stat": "", **where}
    return {(r.layers[0], r.lang): r.value for r in rows.filter(**where)}


def _named(cells: Cells) -> dict[tuple[str, str], float]:
    """The cells keyed as the text tables print them (layer as text)."""
    return {(str(layer), lang): v for (layer, lang), v in cells.items()}


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _methods(rows: Table) -> list[str]:
    """The alignment methods scored (`none` is the unaligned baseline), sorted."""
    return sorted(m for m in rows.values("config", head=lambda h: h.startswith("align-")) if m)


def _layer_series(rows: Table, inputs: MapInputs) -> dict[str, list[float]]:
    """The map's curves, one value per layer: structural first, then cross-lingual (means
    over the task's target languages that have parallel data)."""
    layers = range(inputs.n_layers)
    source, targets = inputs.source, list(inputs.targets)
    score = _cells(rows, head="linear", metric=inputs.metric)
    sel = _cells(rows, head="linear", metric="selectivity")
    ratio = _cells(rows, head="transfer", metric="ratio")
    retrieval = _cells(rows, head=CENTRED, metric="mean")
    to_eng = _cells(rows, head=CENTRED, metric="xx2en")
    from_eng = _cells(rows, head=CENTRED, metric="en2xx")
    xtreme = _cells(rows, head=XTREME, metric="en2xx")
    cka = _cells(rows, head="cka", metric="linear_cka")
    parallel_targets = [t for t in targets if t in inputs.parallel]

    def mean_over(cells: Cells, langs: list[str]) -> list[float]:
        return [_mean([cells.get((layer, t), math.nan) for t in langs]) for layer in layers]

    def one(cells: Cells, lang: str) -> list[float]:
        return [cells.get((layer, lang), math.nan) for layer in layers]

    series = {
        "source_score": one(score, source),
        "selectivity": one(sel, source),
        "target_score": mean_over(score, targets),
        "transfer_ratio": mean_over(ratio, targets),
        "retrieval": mean_over(retrieval, parallel_targets),
        "retrieval_xx2en": mean_over(to_eng, parallel_targets),
        "retrieval_en2xx": mean_over(from_eng, parallel_targets),
        "retrieval_xtreme": mean_over(xtreme, parallel_targets),
        "cka": mean_over(cka, parallel_targets),
    }
    for method in _methods(rows):
        aligned = _cells(rows, config=method, eval_task="tatoeba", metric="mean")
        series[f"align_{method}"] = mean_over(aligned, parallel_targets)
    for t in parallel_targets:
        series[f"retrieval_{t}"] = one(retrieval, t)
    for t in targets:
        series[f"ratio_{t}"] = one(ratio, t)
    return series


def _argmax(values: list[float]) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    return max(finite, key=lambda p: (p[0], -p[1]))[1] if finite else None


def _scatter_layers(inputs: MapInputs) -> list[tuple[int, str]]:
    """The fixed typology layer and the last layer, once each: both named before any score
    is seen (the best-scoring layer would be a layer chosen by its outcome)."""
    last = inputs.n_layers - 1
    if inputs.typology is None or inputs.typology.layer == last:
        return [(last, "typology (fixed) and last" if inputs.typology else "last")]
    return [(inputs.typology.layer, "typology (fixed)"), (last, "last")]


# --- files -----------------------------------------------------------------------------------


def _write_map_csv(series: dict[str, list[float]], path: Path) -> None:
    names = list(series)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", *names])
        for i in range(len(series[names[0]])):
            writer.writerow([i, *(f"{series[n][i]:.6g}" for n in names)])


CORRELATION_COLUMNS = ("layer", "distance", "analysis", "n", "pearson_r", "pearson_p",
                       "spearman_rho", "spearman_p", "ci_low", "ci_high", "p_holm",
                       "p_holm_sweep")  # fmt: skip


def _write_correlations(typology: TypologyTests | None, path: Path) -> None:
    """One row per layer x kind: `analysis` is "fixed" at the typology layer (ci_* its
    bootstrap interval over languages, p_holm Holm over the kinds) and "exploratory"
    elsewhere; p_holm_sweep is Holm over every layer x kind. The partial correlation is one
    more row, analysis "partial", distance "syntactic|genetic" (its rho and p in the
    spearman columns)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CORRELATION_COLUMNS)
        if typology is None:
            return
        for c in typology.tests:
            k = c.correlation
            kind = "fixed" if c.layer == typology.layer else "exploratory"
            writer.writerow([c.layer, c.distance, kind, k.n,
                             *(f"{v:.6g}" for v in (k.pearson_r, k.pearson_p, k.spearman_rho,
                                                    k.spearman_p, c.ci_low, c.ci_high,
                                                    c.p_holm, c.p_holm_sweep))])  # fmt: skip
        p = typology.partial
        if p is not None:
            pc = p.correlation
            writer.writerow([p.layer, f"{p.distance}|{p.control}", "partial", pc.n, "", "",
                             *(f"{v:.6g}" for v in (pc.rho, pc.p, p.ci_low, p.ci_high)), "",
                             ""])  # fmt: skip


def _write_distances(distances: Distances, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["target", "distance", "value"])
        for (lang, kind), value in distances.items():
            writer.writerow([lang, kind, f"{value:.6g}"])


def _scatter(rows: Table, inputs: MapInputs, view: MapView, path: Path) -> None:
    distances, kinds = inputs.distances, inputs.kinds
    if not distances:
        return
    score = _cells(rows, head="linear", metric=inputs.metric)
    with_dist = [t for t in inputs.targets if all((t, k) in distances for k in kinds)]
    panels = []
    for layer, name in _scatter_layers(inputs):
        corr = {c.distance: c.correlation for c in view.correlations if c.layer == layer}
        points = {k: [(distances[(t, k)], score.get((layer, t), math.nan), t)
                      for t in with_dist] for k in kinds}  # fmt: skip
        panels.append((f"{name} layer {layer}", points, corr))
    title = f"{inputs.task}: zero-shot transfer vs URIEL distance"
    plot_transfer_vs_distance(panels, path, ylabel=f"target {inputs.metric}", title=title)


# --- summary ---------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _summary(rows: Table, inputs: MapInputs, view: MapView) -> str:
    series, n_layers, metric = view.series, inputs.n_layers, inputs.metric
    layers = [str(i) for i in range(n_layers)]
    targets = list(inputs.targets)
    parallel_targets = [t for t in targets if t in inputs.parallel]
    columns = {
        "src": "source_score", "select": "selectivity", "tgt-avg": "target_score",
        "ratio": "transfer_ratio", "retriev": "retrieval", "CKA": "cka",
    }  # fmt: skip
    cells = {(layer, c): series[s][i] for i, layer in enumerate(layers)
             for c, s in columns.items()}  # fmt: skip
    out = [
        f"{inputs.task} ({inputs.key}): structural vs cross-lingual signal per layer, x100",
        f"structural: src = source ({inputs.source}) {metric}, select = selectivity over a "
        "control task; cross-lingual (mean over " + (" ".join(parallel_targets) or "-") + "): "
        "ratio = target/source score, retriev = Tatoeba retrieval, centred variant (mean of "
        "xx->en and en->xx), CKA = linear CKA with English",
        text_table(layers, list(columns), cells),
        "",
    ]
    if inputs.parallel:
        out += _parallel_tables(rows, inputs, view, layers)
    ratio = _named(_cells(rows, head="transfer", metric="ratio"))
    out += [f"transfer ratio x100 (target / source {metric}) per language",
            text_table(layers, targets, ratio), ""]  # fmt: skip
    if inputs.distances:
        out += _distance_lines(inputs, view)
    if inputs.no_parallel:
        out.append("no Tatoeba pairs (no retrieval/CKA): " + ", ".join(inputs.no_parallel))
    if inputs.no_uriel:
        out.append("no URIEL vector (not in the correlations): " + ", ".join(inputs.no_uriel))
    out += _extreme_lines(inputs, view)
    return "\n".join(out)


def _parallel_tables(rows: Table, inputs: MapInputs, view: MapView, layers: list[str]) -> list[str]:
    to_eng = _named(_cells(rows, head=CENTRED, metric="xx2en"))
    from_eng = _named(_cells(rows, head=CENTRED, metric="en2xx"))
    cka = _named(_cells(rows, head="cka", metric="linear_cka"))
    labels = list(inputs.parallel)
    per_lang = {}
    for layer in layers:
        for lang in labels:
            per_lang[(layer, f"{lang}>en")] = to_eng.get((layer, lang), math.nan)
            per_lang[(layer, f"en>{lang}")] = from_eng.get((layer, lang), math.nan)
    cols = [c for lang in labels for c in (f"{lang}>en", f"en>{lang}")]
    series = view.series
    align_cols = [h for h in ("none", "lstsq", "procrustes", "net") if f"align_{h}" in series]
    align = {(layer, h): series[f"align_{h}"][i] for i, layer in enumerate(layers)
             for h in align_cols}  # fmt: skip
    return [
        *_xtreme_table(rows, inputs),
        "Tatoeba retrieval accuracy x100 per language, centred variant (sentence = mean of its "
        "subwords; the pairs split into two seeded halves, each centred by the other half's "
        "means and searched within itself, so ~n/2 candidates; cosine; xx>en: the language's "
        "sentences query English, en>xx: English queries them)",
        text_table(layers, cols, per_lang), "",
        "linear CKA with English x100 per language", text_table(layers, labels, cka), "",
        "held-out retrieval x100 before (none) and after a linear map onto English "
        "(mean over languages and directions; maps fitted on the other pairs; both parts "
        "centred by the fitting pairs' means)",
        text_table(layers, align_cols, align), "",
        *_ridge_table(rows, labels, layers),
    ]  # fmt: skip


def _ridge_table(rows: Table, labels: list[str], layers: list[str]) -> list[str]:
    """The least-squares ridge α each layer and language used (rows `align-lstsq`/`ridge`),
    printed with 3 significant digits: α spans 1e-3..1e3, which a fixed-point table hides."""
    ridge = _named(_cells(rows, head="align-lstsq", metric="ridge"))
    if not ridge:
        return []
    width = max(8, *(len(lang) + 1 for lang in labels))
    lines = [f"{'layer':<6}" + "".join(f"{lang:>{width}}" for lang in labels)]
    for layer in layers:
        values = (ridge.get((layer, lang)) for lang in labels)
        lines.append(f"{layer:<6}" + "".join(f"{'-' if v is None else f'{v:.3g}':>{width}}"
                                             for v in values))  # fmt: skip
    return [
        "least-squares ridge alpha per language (5-fold cross-validation on the fitting pairs "
        "unless --ridge fixed it; 0 = plain least squares)",
        *lines, "",
    ]  # fmt: skip


def _xtreme_table(rows: Table, inputs: MapInputs) -> list[str]:
    """XTREME's Tatoeba accuracy at its one layer, per language and over the targets."""
    layer = inputs.xtreme_layer
    if layer is None:
        return []
    scores = _cells(rows, head=XTREME, metric="en2xx")
    labels = list(inputs.parallel)
    cells = {(str(layer), lang): scores.get((layer, lang), math.nan) for lang in labels}
    targets = [t for t in inputs.targets if t in inputs.parallel]
    cells[(str(layer), "tgt-avg")] = _mean([cells[(str(layer), t)] for t in targets])
    return [
        f"Tatoeba accuracy x100, XTREME's protocol (layer {layer} of {inputs.n_layers - 1}, "
        "mBERT's 8 of 12 = XTREME's --specific_layer 7 at the same relative depth; English "
        "queries search the language's sentences, en->xx; sentence = mean of every token incl. "
        "special tokens; no centring; cosine; all pairs)",
        text_table([str(layer)], [*labels, "tgt-avg"], cells), "",
    ]  # fmt: skip


def _distance_lines(inputs: MapInputs, view: MapView) -> list[str]:
    targets, kinds = list(inputs.targets), list(inputs.kinds)
    with_dist = sorted({t for t, _ in inputs.distances}, key=targets.index)
    out = [f"URIEL distance from {inputs.source} (cosine of lang2vec vectors)",
           text_table(with_dist, kinds, inputs.distances, corner="lang", scale=1, digits=3),
           ""]  # fmt: skip
    if inputs.typology is not None:
        out += typology_lines(inputs.typology, inputs.metric, inputs.n_layers, inputs.n_seeds)
    return out


def _p(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def typology_lines(t: TypologyTests, metric: str, n_layers: int, n_seeds: int = 1) -> list[str]:
    """The typology table at the fixed layer (rho, its interval over languages, raw p, Holm
    p over the kinds, a * only where Holm p < 0.05), the partial correlation, the small-n
    caveat and the exploratory sweep's one line."""
    scores = f"seed-mean target {metric} ({n_seeds} seeds)" if n_seeds > 1 else f"target {metric}"
    fixed = t.at(t.layer)
    out = [
        f"typology at layer {t.layer} (fixed in advance: --typology-layer, default 8 of 12 "
        f"scaled to the depth): Spearman rho of {scores} vs distance, n = {t.n} targets, "
        f"95% bootstrap interval over languages ({t.n_boot} resamples), raw p and Holm-adjusted "
        f"p over the {len(fixed)} distance kinds; * = Holm p < {ALPHA}",
        f"  {'distance':<13}{'n':>4}{'rho':>8}  {'95% CI':<16}{'raw p':>9}{'Holm p':>9}",
    ]
    for c in fixed:
        k = c.correlation
        ci = "-" if math.isnan(c.ci_low) else f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        mark = " *" if not math.isnan(c.p_holm) and c.p_holm < ALPHA else ""
        out.append(f"  {c.distance:<13}{k.n:>4}{_fmt(k.spearman_rho):>8}  {ci:<16}"
                   f"{_p(k.spearman_p):>9}{_p(c.p_holm):>9}{mark}")  # fmt: skip
    if t.partial is not None:
        pc = t.partial.correlation
        ci = ("-" if math.isnan(t.partial.ci_low)
              else f"[{t.partial.ci_low:+.2f}, {t.partial.ci_high:+.2f}]")  # fmt: skip
        out.append(f"  partial {t.partial.distance} | {t.partial.control} (ranks residualised "
                   f"on {t.partial.control} distance; t test, n-3 df): rho={_fmt(pc.rho)} {ci} "
                   f"p={_p(pc.p)} (n={pc.n}; one test, not in the Holm family)")  # fmt: skip
    min_p = t.min_p
    if t.n < 3:
        out.append(f"  n = {t.n}: too few targets for any correlation (undefined, NaN)")
    elif len(fixed) * min_p >= ALPHA:
        out.append(f"  caveat: with n = {t.n} targets the smallest two-sided exact Spearman p "
                   f"is 2/{t.n}! = {min_p:.3g}, so after Holm over {len(fixed)} kinds no test "
                   f"can reach {ALPHA}; these correlations cannot be significant whatever "
                   "their size")  # fmt: skip
    elif t.n <= 10:
        out.append(
            f"  caveat: n = {t.n} targets is small (smallest possible Spearman p "
            f"{min_p:.3g}; intervals over so few languages are wide and unstable)"
        )
    sweep = [c for c in t.tests if not math.isnan(c.p_holm_sweep)]
    passed = [c for c in sweep if c.p_holm_sweep < ALPHA]
    best = min(sweep, key=lambda c: c.p_holm_sweep, default=None)
    line = (
        f"exploratory sweep (every layer 0..{n_layers - 1} x kind, {len(sweep)} tests, "
        f"Holm over all of them; not a test of any one layer): {len(passed)} below {ALPHA}"
    )
    if best is not None:
        line += (
            f"; smallest Holm p {_p(best.p_holm_sweep)} ({best.distance}, layer "
            f"{best.layer}, rho={_fmt(best.correlation.spearman_rho)})"
        )
    out += [line, "(every layer: correlation.csv; Spearman p exact for n <= 8)", ""]
    return out


def _extreme_lines(inputs: MapInputs, view: MapView) -> list[str]:
    series, structural, neutral = view.series, view.most_structural_layer, view.most_neutral_layer
    sel, src = series["selectivity"][structural], series["source_score"][structural]
    most_selective = _argmax(series["selectivity"])
    note = ("" if most_selective in (None, structural)
            else f"; selectivity peaks at layer {most_selective}")  # fmt: skip
    out = [f"most structural layer: {structural} (source {inputs.metric} "
           f"{_fmt(100 * src, 1)}, selectivity {_fmt(100 * sel, 1)}{note})"]  # fmt: skip
    if neutral is None:
        return [*out, "most language-neutral layer: unknown (no target has Tatoeba pairs)"]
    best_cka = _argmax(series["cka"])
    note = "" if best_cka == neutral else f"; CKA peaks at layer {best_cka}"
    out.append(f"most language-neutral layer: {neutral} (centred Tatoeba retrieval, mean of "
               f"xx->en and en->xx, {_fmt(100 * series['retrieval'][neutral], 1)}; CKA "
               f"{_fmt(100 * series['cka'][neutral], 1)}{note})")  # fmt: skip
    layer = inputs.xtreme_layer
    if layer is not None:
        out.append(
            f"Tatoeba, XTREME's protocol (en->xx, layer {layer}): "
            f"{_fmt(100 * series['retrieval_xtreme'][layer], 1)} (mean over targets)"
        )
    return out

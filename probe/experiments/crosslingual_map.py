"""`probe map`: structural signal (probing) next to cross-lingual signal (alignment), per layer.

Structural: the source-language score of a linear probe per layer and its selectivity over
a control task (from `probe layers`, which this reuses). Cross-lingual: the zero-shot
transfer ratio (target score / source score at the same layer), parallel-sentence retrieval
on Tatoeba, linear CKA between each language and English, and retrieval on held-out pairs
before and after a learned linear map onto English. Linguistic distances from URIEL are set
against the transfer scores, layer by layer.

Outputs, in `results/<task>/<model-key>/map-<source>-<hash>/`: results.csv/json (every
number, long format), map.csv (one row per layer), correlation.csv, distances.csv,
summary.txt, map.png and transfer_vs_distance.png.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.crosslingual.correlation import Correlation, correlate
from probe.analysis.crosslingual.typology import DISTANCE_KINDS, language_distance, typology_vector
from probe.data.sources.parallel import tatoeba_code
from probe.data.tasks import Task, available_languages, expand_languages, get_task, local_files
from probe.errors import ProbeError
from probe.experiments.layers import LayersConfig, run_layers
from probe.experiments.parallel_signal import TATOEBA_SPLIT, ParallelConfig, parallel_rows
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
)
from probe.results.plots import plot_map, plot_transfer_vs_distance
from probe.results.report import (
    Row,
    cache_settings,
    pivot,
    provenance,
    run_directory,
    text_table,
    write_table,
)
from probe.train import TrainConfig

log = logging.getLogger(__name__)

ENGLISH = ("en", "eng")


@dataclass(frozen=True)
class MapConfig:
    """One `probe map` run; `spec` names the probing task's cache (Tatoeba's pairs are
    extracted under the same key, in the same call)."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None  # default: the task's default source language
    results_dir: Path = Path("results")
    train: TrainConfig = field(default_factory=TrainConfig)
    max_train_words: int | None = None
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    extra_parallel: tuple[str, ...] = ()  # more Tatoeba languages (retrieval/CKA only), or all
    distance_kinds: tuple[str, ...] = DISTANCE_KINDS


@dataclass(frozen=True)
class CorrelationRow:
    """Zero-shot target scores vs the targets' distance from the source, at one layer.

    (The transfer ratio is not correlated separately: at one layer it is every target's
    score divided by the same source score, so its correlations are exactly the same.)
    """

    layer: str
    distance: str
    correlation: Correlation


@dataclass
class MapResult:
    """What `run_map` computed and where it wrote it; layers are 0 (embeddings) .. last."""

    rows: list[Row]
    correlations: list[CorrelationRow]
    directory: Path
    table: str
    most_neutral_layer: int | None
    most_structural_layer: int
    settings: dict[str, Any]


def run_map(config: MapConfig, progress: bool = True) -> MapResult:
    """Probe every layer, score the parallel data, relate both to distance; write it all."""
    task = get_task(config.task)
    if task.level == "parallel":
        raise ProbeError(
            f"`probe map` needs a task with labels to probe (e.g. pos), not {task.name!r}; "
            "its Tatoeba data are read for every language of that task"
        )
    source = config.source or task.default_source
    task.check_language(source)
    # The task's languages as the layer probes will extract them (source first), so that
    # Tatoeba's pairs join the same extraction call: one cache key by construction.
    expected = sorted(expand_languages(task, config.langs, config.paths.data_dir),
                      key=lambda x: (x != source, x))  # fmt: skip
    codes, no_parallel = _parallel_codes(expected, config)
    tatoeba = ExtractRequest("tatoeba", tuple(dict.fromkeys(codes.values())), (TATOEBA_SPLIT,),
                             max_sentences=config.max_sentences)  # fmt: skip
    t0 = time.perf_counter()
    probed = run_layers(
        LayersConfig(spec=config.spec, task=config.task, langs=config.langs,
                     max_sentences=config.max_sentences, options=config.options,
                     paths=config.paths, source=config.source, results_dir=config.results_dir,
                     train=config.train, control=True, scalar_mix=False,
                     max_train_words=config.max_train_words),
        progress=progress, also=[tatoeba] if codes else [],
    )  # fmt: skip
    cache = probed.cache
    langs: list[str] = probed.settings["languages"]
    targets = [lang for lang in langs if lang != source]
    key = cache.key
    rows = _structural_rows(task, probed.rows, source, targets)
    n_layers = cache.n_layers

    if codes:
        par_rows, pairs = parallel_rows(cache.root, key, codes, config.parallel)
        rows += par_rows
    else:
        pairs = {}
    distances, no_uriel = _distances(source, targets, config.distance_kinds)
    rows += [Row("distance", "-", t, kind, d) for (t, kind), d in distances.items()]
    correlations = _correlations(task, rows, targets, distances, config.distance_kinds, n_layers)
    seconds = time.perf_counter() - t0

    series = _layer_series(rows, task, source, targets, codes, n_layers)
    neutral, structural = _extreme_layers(series, task, source)
    settings = _settings(config, task, source, langs, cache, codes, pairs, no_parallel, no_uriel,
                         probed.directory, seconds)  # fmt: skip
    directory = run_directory(
        config.results_dir / task.name / key, f"map-{source}", settings,
        volatile=("seconds", "provenance", "layers_directory"),
    )  # fmt: skip
    write_table(rows, directory, settings)
    _write_map_csv(series, directory / "map.csv")
    _write_correlations(correlations, directory / "correlation.csv")
    _write_distances(distances, directory / "distances.csv")
    table = _summary(task, key, rows, series, correlations, source, targets, codes, distances,
                     neutral, structural, no_parallel, no_uriel, config.distance_kinds)  # fmt: skip
    (directory / "summary.txt").write_text(table + "\n")
    plot_map(series, directory / "map.png", title=f"{task.name} ({key}): structural vs "
             f"cross-lingual signal per layer (source {source})", neutral=neutral,
             structural=structural, metric=task.metric)  # fmt: skip
    _scatter(task, rows, targets, distances, correlations, config.distance_kinds, n_layers,
             directory / "transfer_vs_distance.png")  # fmt: skip
    return MapResult(rows, correlations, directory, table, neutral, structural, settings)


# --- structural signal -----------------------------------------------------------------------


def _structural_rows(task: Task, rows: list[Row], source: str, targets: list[str]) -> list[Row]:
    """The probe's main metric per layer and language, selectivity, and transfer ratios."""
    keep = [r for r in rows if r.head == "linear" and r.metric in (task.metric, "selectivity")]
    _, _, score = pivot(keep, "linear", task.metric)
    layers = sorted({r.layer for r in keep}, key=int)
    ratios = []
    for layer in layers:
        src = score.get((layer, source), math.nan)
        for lang in targets:
            tgt = score.get((layer, lang), math.nan)
            value = tgt / src if src > 0 else math.nan
            ratios.append(Row("transfer", layer, lang, "ratio", value))
    return keep + ratios


# --- languages with parallel data and with URIEL vectors -------------------------------------


def _parallel_codes(langs: list[str], config: MapConfig) -> tuple[dict[str, str], list[str]]:
    """{result label: Tatoeba code} for every non-English language that has a Tatoeba set
    under the data directory, and the languages that have none (reported, not hidden)."""
    tatoeba = get_task("tatoeba")
    data_dir = config.paths.data_dir
    wanted = [lang for lang in langs if lang not in ENGLISH]
    extra = list(config.extra_parallel)
    if extra == ["all"]:
        if data_dir is None:
            raise ProbeError("--parallel-langs all needs --data-dir (or PROBE_DATA)")
        extra = list(available_languages(tatoeba, data_dir))
    codes: dict[str, str] = {}
    missing: list[str] = []
    for lang in [*wanted, *extra]:
        try:
            code = tatoeba_code(lang)
            if data_dir is not None:
                local_files(tatoeba, data_dir, code, TATOEBA_SPLIT)
        except ProbeError as err:
            if lang in extra:
                raise
            log.warning("no Tatoeba pairs for %s: no retrieval or CKA for it (%s)", lang, err)
            missing.append(lang)
            continue
        if code not in codes.values():
            codes[lang] = code
    return codes, missing


def _distances(
    source: str, targets: list[str], kinds: tuple[str, ...]
) -> tuple[dict[tuple[str, str], float], list[str]]:
    """{(target, kind): URIEL distance from the source}, and the languages URIEL lacks."""
    try:
        for kind in kinds:
            typology_vector(source, kind)
    except ProbeError as err:
        log.warning("no URIEL vector for the source %s: no distances or correlations (%s)",
                    source, err)  # fmt: skip
        return {}, [source]
    distances: dict[tuple[str, str], float] = {}
    missing: list[str] = []
    for lang in targets:
        try:
            row = {(lang, kind): language_distance(source, lang, kind) for kind in kinds}
        except ProbeError as err:
            log.warning("no URIEL distance for %s: left out of the correlations (%s)", lang, err)
            missing.append(lang)
            continue
        distances.update(row)
    return distances, missing


# --- correlation with distance ---------------------------------------------------------------


def _correlations(
    task: Task,
    rows: list[Row],
    targets: list[str],
    distances: dict[tuple[str, str], float],
    kinds: tuple[str, ...],
    n_layers: int,
) -> list[CorrelationRow]:
    _, _, score = pivot(rows, "linear", task.metric)
    with_distance = [t for t in targets if all((t, k) in distances for k in kinds)]
    out = []
    for layer in map(str, range(n_layers)):
        values = [score.get((layer, t), math.nan) for t in with_distance]
        for kind in kinds:
            dist = [distances[(t, kind)] for t in with_distance]
            out.append(CorrelationRow(layer, kind, correlate(dist, values)))
    return out


# --- per-layer series and the extreme layers -------------------------------------------------


def _mean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def _layer_series(
    rows: list[Row], task: Task, source: str, targets: list[str], codes: dict[str, str],
    n_layers: int,
) -> dict[str, list[float]]:  # fmt: skip
    """The map's curves, one value per layer: structural first, then cross-lingual (means
    over the task's target languages that have parallel data)."""
    layers = [str(i) for i in range(n_layers)]
    _, _, score = pivot(rows, "linear", task.metric)
    _, _, sel = pivot(rows, "linear", "selectivity")
    _, _, ratio = pivot(rows, "transfer", "ratio")
    _, _, retrieval = pivot(rows, "retrieval", "mean")
    _, _, to_eng = pivot(rows, "retrieval", "xx2en")
    _, _, cka = pivot(rows, "cka", "linear_cka")
    parallel_targets = [t for t in targets if t in codes]

    def mean_over(cells: dict[tuple[str, str], float], langs: list[str]) -> list[float]:
        return [_mean([cells.get((layer, t), math.nan) for t in langs]) for layer in layers]

    series = {
        "source_score": [score.get((layer, source), math.nan) for layer in layers],
        "selectivity": [sel.get((layer, source), math.nan) for layer in layers],
        "target_score": mean_over(score, targets),
        "transfer_ratio": mean_over(ratio, targets),
        "retrieval": mean_over(retrieval, parallel_targets),
        "retrieval_xx2en": mean_over(to_eng, parallel_targets),
        "cka": mean_over(cka, parallel_targets),
    }
    for head in sorted({r.head for r in rows if r.head.startswith("align-")}):
        _, _, cells = pivot(rows, head, "mean")
        series[head.replace("-", "_")] = mean_over(cells, parallel_targets)
    for t in parallel_targets:
        series[f"retrieval_{t}"] = [retrieval.get((layer, t), math.nan) for layer in layers]
    for t in targets:
        series[f"ratio_{t}"] = [ratio.get((layer, t), math.nan) for layer in layers]
    return series


def _argmax(values: list[float]) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    return max(finite, key=lambda p: (p[0], -p[1]))[1] if finite else None


def _extreme_layers(
    series: dict[str, list[float]], task: Task, source: str
) -> tuple[int | None, int]:
    """Most language-neutral layer: highest mean retrieval over the targets with parallel
    data. Most structural: highest source score. Not the highest selectivity: in the top
    layers the control task (word identity) falls faster than the task, so selectivity keeps
    rising while the task score drops (me5-small: selectivity peaks at layer 12, where POS
    accuracy is lowest of layers 1-12); the summary names that layer too."""
    neutral = _argmax(series["retrieval"])
    structural = _argmax(series["source_score"])
    if structural is None:
        raise ProbeError(f"no {task.metric} for the source {source!r}: nothing to map")
    return neutral, structural


# --- output ----------------------------------------------------------------------------------


def _write_map_csv(series: dict[str, list[float]], path: Path) -> None:
    names = list(series)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", *names])
        for i in range(len(series[names[0]])):
            writer.writerow([i, *(f"{series[n][i]:.6g}" for n in names)])


def _write_correlations(correlations: list[CorrelationRow], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "distance", "n", "pearson_r", "pearson_p", "spearman_rho",
                         "spearman_p"])  # fmt: skip
        for c in correlations:
            k = c.correlation
            writer.writerow([c.layer, c.distance, k.n,
                             *(f"{v:.6g}" for v in (k.pearson_r, k.pearson_p, k.spearman_rho,
                                                    k.spearman_p))])  # fmt: skip


def _write_distances(distances: dict[tuple[str, str], float], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["target", "distance", "value"])
        for (lang, kind), value in distances.items():
            writer.writerow([lang, kind, f"{value:.6g}"])


def _settings(
    config: MapConfig, task: Task, source: str, langs: list[str], cache: CacheHandle,
    codes: dict[str, str], pairs: dict[str, int], no_parallel: list[str], no_uriel: list[str],
    layers_directory: Path, seconds: float,
) -> dict[str, Any]:  # fmt: skip
    return {
        **cache_settings("map", task.name, cache, source, langs, config.max_sentences),
        "train": asdict(config.train),
        "max_train_words": config.max_train_words,
        "parallel": asdict(config.parallel),
        "tatoeba_codes": codes,
        "tatoeba_pairs": pairs,
        "no_parallel_data": no_parallel,
        "no_uriel_vector": no_uriel,
        "distance_kinds": list(config.distance_kinds),
        "distance_definition": "cosine distance of lang2vec URIEL vectors (see typology.py)",
        "retrieval": "mean-pooled subwords, each language centred by its own mean, cosine NN",
        "layers_directory": str(layers_directory),
        "seconds": round(seconds, 3),
        "provenance": provenance(config.train.seed),
    }


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _summary(
    task: Task, key: str, rows: list[Row], series: dict[str, list[float]],
    correlations: list[CorrelationRow], source: str, targets: list[str], codes: dict[str, str],
    distances: dict[tuple[str, str], float], neutral: int | None, structural: int,
    no_parallel: list[str], no_uriel: list[str], kinds: tuple[str, ...],
) -> str:  # fmt: skip
    n_layers = len(series["source_score"])
    layers = [str(i) for i in range(n_layers)]
    parallel_targets = [t for t in targets if t in codes]
    columns = {
        "src": "source_score", "select": "selectivity", "tgt-avg": "target_score",
        "ratio": "transfer_ratio", "retriev": "retrieval", "CKA": "cka",
    }  # fmt: skip
    cells = {(layer, c): series[s][i] for i, layer in enumerate(layers)
             for c, s in columns.items()}  # fmt: skip
    out = [
        f"{task.name} ({key}): structural vs cross-lingual signal per layer, x100",
        f"structural: src = source ({source}) {task.metric}, select = selectivity over a control"
        " task; cross-lingual (mean over " + (" ".join(parallel_targets) or "-") + "): ratio = "
        "target/source score, retriev = Tatoeba retrieval (both directions), CKA = linear CKA "
        "with English",
        text_table(layers, list(columns), cells),
        "",
    ]
    _, _, retrieval = pivot(rows, "retrieval", "mean")
    _, _, to_eng = pivot(rows, "retrieval", "xx2en")
    _, _, from_eng = pivot(rows, "retrieval", "en2xx")
    _, _, cka = pivot(rows, "cka", "linear_cka")
    labels = list(codes)
    if labels:
        per_lang = {}
        for layer in layers:
            for lang in labels:
                per_lang[(layer, f"{lang}>en")] = to_eng.get((layer, lang), math.nan)
                per_lang[(layer, f"en>{lang}")] = from_eng.get((layer, lang), math.nan)
        cols = [c for lang in labels for c in (f"{lang}>en", f"en>{lang}")]
        out += ["Tatoeba retrieval accuracy x100 per language (all pairs; centred, cosine)",
                text_table(layers, cols, per_lang), ""]  # fmt: skip
        out += ["linear CKA with English x100 per language", text_table(layers, labels, cka), ""]
        align_cols = [h for h in ("none", "lstsq", "procrustes", "net")
                      if f"align_{h}" in series]  # fmt: skip
        align = {(layer, h): series[f"align_{h}"][i] for i, layer in enumerate(layers)
                 for h in align_cols}  # fmt: skip
        out += ["held-out retrieval x100 before (none) and after a linear map onto English "
                "(mean over languages and directions; maps fitted on the other pairs)",
                text_table(layers, align_cols, align), ""]  # fmt: skip
    _, _, ratio = pivot(rows, "transfer", "ratio")
    out += [f"transfer ratio x100 (target / source {task.metric}) per language",
            text_table(layers, targets, ratio), ""]  # fmt: skip
    if distances:
        with_dist = sorted({t for t, _ in distances}, key=targets.index)
        out += [f"URIEL distance from {source} (cosine of lang2vec vectors)",
                text_table(with_dist, list(kinds), distances, corner="lang", scale=1, digits=3),
                ""]  # fmt: skip
        for chosen, name in _scatter_layers(series, n_layers):
            out.append(f"correlation of target {task.metric} with distance at the {name} "
                       f"layer {chosen} (n = targets):")  # fmt: skip
            for c in correlations:
                if c.layer == str(chosen):
                    k = c.correlation
                    out.append(f"  {c.distance:<13} n={k.n}  Pearson r={_fmt(k.pearson_r)} "
                               f"(p={_fmt(k.pearson_p, 3)})  Spearman rho={_fmt(k.spearman_rho)}"
                               f" (p={_fmt(k.spearman_p, 3)})")  # fmt: skip
        out += ["(every layer: correlation.csv; Spearman p exact for n <= 8)", ""]
    if no_parallel:
        out.append("no Tatoeba pairs (no retrieval/CKA): " + ", ".join(no_parallel))
    if no_uriel:
        out.append("no URIEL vector (not in the correlations): " + ", ".join(no_uriel))
    sel, src = series["selectivity"][structural], series["source_score"][structural]
    most_selective = _argmax(series["selectivity"])
    note = ("" if most_selective in (None, structural)
            else f"; selectivity peaks at layer {most_selective}")  # fmt: skip
    out.append(f"most structural layer: {structural} (source {task.metric} "
               f"{_fmt(100 * src, 1)}, selectivity {_fmt(100 * sel, 1)}{note})")  # fmt: skip
    if neutral is not None:
        best_cka = _argmax(series["cka"])
        note = "" if best_cka == neutral else f"; CKA peaks at layer {best_cka}"
        out.append(f"most language-neutral layer: {neutral} (retrieval "
                   f"{_fmt(100 * series['retrieval'][neutral], 1)}, CKA "
                   f"{_fmt(100 * series['cka'][neutral], 1)}{note})")  # fmt: skip
    else:
        out.append("most language-neutral layer: unknown (no target has Tatoeba pairs)")
    return "\n".join(out)


def _scatter_layers(series: dict[str, list[float]], n_layers: int) -> list[tuple[int, str]]:
    """The best layer (highest mean target score) and the last layer, once each."""
    best = _argmax(series["target_score"])
    last = n_layers - 1
    if best is None or best == last:
        return [(last, "best and last" if best == last else "last")]
    return [(best, "best"), (last, "last")]


def _scatter(
    task: Task, rows: list[Row], targets: list[str], distances: dict[tuple[str, str], float],
    correlations: list[CorrelationRow], kinds: tuple[str, ...], n_layers: int, path: Path,
) -> None:  # fmt: skip
    if not distances:
        return
    _, _, score = pivot(rows, "linear", task.metric)
    mean_target = [_mean([score.get((str(i), t), math.nan) for t in targets])
                   for i in range(n_layers)]  # fmt: skip
    chosen = _scatter_layers({"target_score": mean_target}, n_layers)
    with_dist = [t for t in targets if all((t, k) in distances for k in kinds)]
    panels = []
    for layer, name in chosen:
        corr = {c.distance: c.correlation for c in correlations
                if c.layer == str(layer)}  # fmt: skip
        points = {k: [(distances[(t, k)], score.get((str(layer), t), math.nan), t)
                      for t in with_dist] for k in kinds}  # fmt: skip
        panels.append((f"{name} layer {layer}", points, corr))
    plot_transfer_vs_distance(
        panels,
        path,
        ylabel=f"target {task.metric}",
        title=f"{task.name}: zero-shot transfer vs URIEL distance",
    )

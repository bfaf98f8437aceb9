"""`probe layers`: a linear probe per layer, scalar mix and control tasks, zero-shot everywhere.

Trained on the source language's cached features, evaluated on every language's evaluation
split. Every probe is a job of `probe.experiments.pool` (one per layer, one per layer of the
control task, one for the scalar mix), run here one after another or on `--workers N`
processes or a `--cluster`; each job opens the cache itself and holds one layer of every
split it reads (the scalar mix needs all layers).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from probe.analysis.control import control_labels, selectivity
from probe.analysis.metrics import score
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.experiments.pool import Journal, PoolConfig, fingerprint, run_jobs
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.heads.linear import LinearProbe
from probe.heads.registry import HEADS
from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMixProbe
from probe.results.report import (
    Row,
    cache_settings,
    pivot,
    plot_layer_curves,
    provenance,
    run_directory,
    text_table,
    write_table,
)  # fmt: skip
from probe.train import TrainConfig, fit, predict_proba
from probe.train.splits import CachedSplit, as_data, as_view, opener, train_dev

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayersConfig:
    """One `probe layers` run; `spec` says which cache (and what is missing is extracted)."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None  # first N records of each split (part of the data)
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None  # default: the task's default source language
    results_dir: Path = Path("results")
    train: TrainConfig = field(default_factory=TrainConfig)
    control: bool = True
    scalar_mix: bool = True
    dev_fraction: float = 0.1  # held out of the training split when the task has no dev split
    max_train_words: int | None = None  # cap the training rows (whole sentences kept)
    workers: int | None = 1  # probes at once in local processes (None: one per core)
    cluster: str | None = None  # or on a Dask / Ray cluster (probe.experiments.pool)


@dataclass
class LayersResult:
    rows: list[Row]
    directory: Path
    table: str
    mix_weights: list[float]
    extract_seconds: float
    probe_seconds: float
    settings: dict[str, Any]
    cache: CacheHandle


def run_layers(
    config: LayersConfig, progress: bool = True, *, also: Sequence[ExtractRequest] = ()
) -> LayersResult:
    """Extract what is missing, then probe every layer; write tables and plots.

    `also`: more requests extracted in the same call, so under the same key (map's Tatoeba
    pairs); the result's `cache` names them too.
    """
    task = get_task(config.task)
    if task.level == "parallel":
        raise ProbeError(f"task {task.name!r} has no labels to probe; use `probe map` instead")
    source = config.source or task.default_source
    task.check_language(source)
    request = ExtractRequest(task.name, config.langs, None, source, config.max_sentences)
    t0 = time.perf_counter()
    cache = ensure_cached(config.spec, [request, *also], config.options, config.paths,
                          progress=progress)  # fmt: skip
    extract_seconds = time.perf_counter() - t0
    key, root = cache.key, cache.root
    langs = list(cache.languages(task.name, source))
    if source not in langs:
        raise ProbeError(f"source language {source!r} is not among the extracted languages {langs}")

    open_split = opener(root, key, task)
    n_layers = cache.n_layers
    scored = []
    for lang in langs:
        split = open_split(lang, task.eval_split)
        if np.any(split.labels < 0):
            log.warning("%s/%s/%s has unlabelled rows: not scored", task.name, lang,
                        task.eval_split)  # fmt: skip
        else:
            scored.append(lang)
        split.reader.close()
    if not scored:
        raise ProbeError(f"no language of {task.name!r} has a labelled {task.eval_split} split")

    with_control = config.control and task.level == "word" and source in scored
    # An absolute cache path: a job may run in another working directory (a cluster worker).
    job = _LayerJob(task.name, root.resolve(), key, source, tuple(scored), n_layers, "linear", 0,
                    config)  # fmt: skip
    jobs = [(f"linear-{i}", replace(job, layer=i)) for i in range(n_layers)]
    if with_control:
        jobs += [(f"control-{i}", replace(job, kind="control", layer=i)) for i in range(n_layers)]
    if config.scalar_mix:
        jobs.append(("scalar_mix", replace(job, kind="scalar_mix")))
    pool = PoolConfig(config.workers, config.cluster)
    settings = _settings(config, task, source, cache, langs, extract_seconds, 0.0)
    settings["workers"] = pool.local_workers(len(jobs)) if config.cluster is None else None
    settings["cluster"] = config.cluster
    directory = run_directory(
        config.results_dir / task.name / key, f"layers-{source}", settings,
        volatile=("extract_seconds", "probe_seconds", "provenance", "workers", "cluster"),
    )  # fmt: skip
    journal = Journal(directory / "jobs", fingerprint(
        cache.identity(), replace(config, workers=1, cluster=None)))  # fmt: skip

    t1 = time.perf_counter()
    parts = dict(zip([name for name, _ in jobs], run_jobs(
        run_layer_job, jobs, pool, journal, progress=progress, desc=f"probing {task.name}"),
        strict=True))  # fmt: skip
    rows: list[Row] = [r for i in range(n_layers) for r in parts[f"linear-{i}"]]
    if with_control:
        rows += [r for i in range(n_layers) for r in parts[f"control-{i}"]]
        rows += _selectivity(rows, source)
    mix_weights: list[float] = []
    if config.scalar_mix:
        rows += parts["scalar_mix"]
        mix_weights = [r.value for r in parts["scalar_mix"] if r.metric == "mix_weight"]
    probe_seconds = time.perf_counter() - t1
    settings["probe_seconds"] = round(probe_seconds, 3)

    write_table(rows, directory, settings)
    table = _summary(task, rows, source, langs)
    (directory / "summary.txt").write_text(table + "\n")
    _plots(task, rows, source, langs, n_layers, directory, key)
    journal.clear()  # every output is written: a rerun recomputes with the current code
    return LayersResult(rows, directory, table, mix_weights, extract_seconds, probe_seconds,
                        settings, cache)  # fmt: skip


# --- jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LayerJob:
    """One probe of a `layers` run; picklable, so it runs in any pool worker, which opens the
    cache itself (probe.experiments.pool)."""

    task: str
    root: Path
    key: str
    source: str
    langs: tuple[str, ...]  # languages scored (labelled evaluation split)
    n_layers: int
    kind: str  # linear | control | scalar_mix
    layer: int
    config: LayersConfig


def run_layer_job(job: _LayerJob) -> list[Row]:
    """Open the splits one probe needs, train and score it, close them."""
    task = get_task(job.task)
    cfg = job.config
    open_split = opener(job.root, job.key, task)
    train, dev = train_dev(task, open_split, job.source, cfg.max_train_words, cfg.dev_fraction,
                           cfg.train.seed)  # fmt: skip
    opened = [train, dev]
    try:
        if job.kind == "control":
            source_eval = open_split(job.source, task.eval_split)
            opened.append(source_eval)
            return _control_rows(task, [job.layer], train, dev, source_eval, job.source, cfg)
        evals = {lang: open_split(lang, task.eval_split) for lang in job.langs}
        opened += evals.values()
        if job.kind == "linear":
            return _probe_layer(task, job.layer, train, dev, evals, cfg.train, "linear")
        return _scalar_mix(task, job.n_layers, train, dev, evals, cfg.train)[0]
    finally:
        for split in opened:
            split.reader.close()


# --- probing ---------------------------------------------------------------------------------


def _scores(
    task: Task, head: Any, data: Any, view_layers: Any, split: CachedSplit
) -> dict[str, float]:
    probs = predict_proba(head, as_view(task, data, view_layers))
    return score(task.metric, probs, data.labels, offsets=split.offsets, label_names=task.labels)


def _probe_layer(
    task: Task,
    layer: int,
    train: CachedSplit,
    dev: CachedSplit,
    evals: dict[str, CachedSplit],
    train_config: TrainConfig,
    head_name: str,
) -> list[Row]:
    n_classes = len(task.labels)
    tr, dv = as_data(task, train, [layer]), as_data(task, dev, [layer])
    hidden = tr.hidden

    def factory() -> Any:
        return HEADS.get("linear").build(task.level, hidden, n_classes)

    result = fit(factory, as_view(task, tr, layer), as_view(task, dv, layer), train_config)
    rows = []
    for lang, split in evals.items():
        for metric, value in _scores(task, result.head, as_data(task, split, [layer]), layer,
                                     split).items():  # fmt: skip
            rows.append(Row(head_name, str(layer), lang, metric, value))
    return rows


def _control_rows(
    task: Task,
    layers: Sequence[int],
    train: CachedSplit,
    dev: CachedSplit,
    source_eval: CachedSplit,
    source: str,
    config: LayersConfig,
) -> list[Row]:
    """Hewitt & Liang control task on the source language, and selectivity per layer."""
    n_classes = len(task.labels)
    counts = np.bincount(train.labels, minlength=n_classes)
    seed = config.train.seed

    def ctrl(split: CachedSplit) -> np.ndarray:
        words = split.reader.strings("words")
        if split.rows is not None:
            words = [words[i] for i in split.rows]
        return control_labels(words, counts, seed)

    y_train, y_dev, y_eval = ctrl(train), ctrl(dev), ctrl(source_eval)
    rows = []
    for layer in layers:
        tr = as_data(task, train, [layer], y_train)
        dv = as_data(task, dev, [layer], y_dev)
        result = fit(functools.partial(LinearProbe, tr.hidden, n_classes), tr.words(layer),
                     dv.words(layer), config.train)  # fmt: skip
        ev = as_data(task, source_eval, [layer], y_eval)
        probs = predict_proba(result.head, ev.words(layer))
        control_acc = float((probs.argmax(1) == y_eval).mean())
        rows.append(Row("control", str(layer), source, "accuracy", control_acc))
    return rows


def _selectivity(rows: list[Row], source: str) -> list[Row]:
    """Task accuracy minus control accuracy on the source's evaluation split, per layer."""
    task_acc = {r.layer: r.value for r in rows
                if r.head == "linear" and r.lang == source and r.metric == "accuracy"}  # fmt: skip
    return [
        Row("linear", r.layer, source, "selectivity", selectivity(task_acc[r.layer], r.value))
        for r in rows
        if r.head == "control"
    ]


def _scalar_mix(
    task: Task,
    n_layers: int,
    train: CachedSplit,
    dev: CachedSplit,
    evals: dict[str, CachedSplit],
    train_config: TrainConfig,
) -> tuple[list[Row], list[float]]:
    layers = list(range(n_layers))
    n_classes = len(task.labels)
    tr, dv = as_data(task, train, layers), as_data(task, dev, layers)
    hidden = tr.hidden

    def factory() -> Any:
        return HEADS.get("scalar_mix").build(task.level, hidden, n_classes, n_layers=n_layers)

    result = fit(factory, as_view(task, tr, layers), as_view(task, dv, layers), train_config)
    head = cast(ScalarMixProbe | PairScalarMixProbe, result.head)
    weights = [float(w) for w in head.weights]
    rows = [Row("scalar_mix", str(i), "all", "mix_weight", w) for i, w in enumerate(weights)]
    rows.append(Row("scalar_mix", "mix", "all", "centre_of_gravity",
                    float(head.centre_of_gravity)))  # fmt: skip
    for lang, split in evals.items():
        data = as_data(task, split, layers)
        for metric, value in _scores(task, result.head, data, layers, split).items():
            rows.append(Row("scalar_mix", "mix", lang, metric, value))
    return rows, weights


# --- output ----------------------------------------------------------------------------------


def _settings(
    config: LayersConfig,
    task: Task,
    source: str,
    cache: CacheHandle,
    langs: list[str],
    extract_seconds: float,
    probe_seconds: float,
) -> dict[str, Any]:
    return {
        **cache_settings("layers", task.name, cache, source, langs, config.max_sentences),
        "train": asdict(config.train),
        "control": config.control,
        "scalar_mix": config.scalar_mix,
        "dev_fraction": config.dev_fraction,
        "max_train_words": config.max_train_words,
        "train_split": task.train_split,
        "dev_split": task.dev_split or f"{config.dev_fraction:.0%} of {task.train_split}",
        "eval_split": task.eval_split,
        "extract_seconds": round(extract_seconds, 3),
        "probe_seconds": round(probe_seconds, 3),
        "provenance": provenance(config.train.seed),
    }


def _summary(task: Task, rows: list[Row], source: str, langs: list[str]) -> str:
    metric = task.metric
    layer_names, _, cells = pivot(rows, "linear", metric)
    mix = {(("mix", lang)): v for (layer, lang), v in pivot(rows, "scalar_mix", metric)[2].items()}
    cells = {**cells, **mix}
    extra_cols: dict[tuple[str, str], float] = {}
    _, _, sel = pivot(rows, "linear", "selectivity")
    _, _, ece = pivot(rows, "linear", "ece")
    for layer in layer_names:
        if (layer, source) in sel:
            extra_cols[(layer, "select")] = sel[(layer, source)]
        if (layer, source) in ece:
            extra_cols[(layer, "ECE-src")] = ece[(layer, source)]
        targets = [
            cells[(layer, lang)] for lang in langs if lang != source and (layer, lang) in cells
        ]
        if targets:
            extra_cols[(layer, "tgt-avg")] = float(np.mean(targets))
    cols = [*langs, "tgt-avg", "select", "ECE-src"]
    title = f"{task.name}: {metric} x100 of a linear probe per layer (source {source})"
    return title + "\n" + text_table([*layer_names, "mix"], cols, {**cells, **extra_cols})


def _plots(
    task: Task, rows: list[Row], source: str, langs: list[str], n_layers: int, directory: Path,
    key: str,
) -> None:  # fmt: skip
    metric = task.metric
    _, _, cells = pivot(rows, "linear", metric)
    layers = list(range(n_layers))
    series = {lang: [cells.get((str(i), lang), float("nan")) for i in layers] for lang in langs}
    plot_layer_curves(layers, series, directory / "score_per_layer.png", highlight=source,
                      title=f"{task.name} ({key}): linear probe per layer",
                      ylabel=f"{metric} (x100)")  # fmt: skip
    targets = [lang for lang in langs if lang != source]
    if targets:
        mean_target = [float(np.nanmean([series[t][i] for t in targets])) for i in layers]
        plot_layer_curves(
            layers, {f"source ({source})": series[source], "mean of targets": mean_target},
            directory / "source_vs_target.png", highlight=f"source ({source})",
            title=f"{task.name}: source score vs mean zero-shot target score", ylabel=metric,
        )  # fmt: skip

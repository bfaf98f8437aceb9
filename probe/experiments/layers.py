"""`probe layers`: a linear probe per layer, scalar mix and control tasks, zero-shot everywhere.

Trained on the source language's cached features, evaluated on every language's evaluation
split. Only one layer of every split is in memory at a time (the scalar mix needs all
layers of the splits it reads).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.control import control_labels, selectivity
from probe.errors import ProbeError
from probe.experiments.splits import CachedSplit, as_data, as_view, opener, train_dev
from probe.extract import ExtractConfig, extract
from probe.heads.linear import LinearProbe, PairLinearProbe
from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMixProbe
from probe.metrics import score
from probe.report import (
    Row,
    pivot,
    plot_layer_curves,
    provenance,
    run_directory,
    text_table,
    write_table,
)  # fmt: skip
from probe.tasks import Task, get_task
from probe.train import TrainConfig, fit, predict_proba

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayersConfig:
    """One `probe layers` run; `extract` says which cache (and extracts what is missing)."""

    extract: ExtractConfig
    source: str | None = None  # default: the task's default source language
    results_dir: Path = Path("results")
    train: TrainConfig = field(default_factory=TrainConfig)
    control: bool = True
    scalar_mix: bool = True
    dev_fraction: float = 0.1  # held out of the training split when the task has no dev split
    max_train_words: int | None = None  # cap the training rows (whole sentences kept)


@dataclass
class LayersResult:
    rows: list[Row]
    directory: Path
    table: str
    mix_weights: list[float]
    extract_seconds: float
    probe_seconds: float
    settings: dict[str, Any]


def run_layers(config: LayersConfig, progress: bool = True) -> LayersResult:
    """Extract what is missing, then probe every layer; write tables and plots."""
    task = get_task(config.extract.task)
    if task.level == "parallel":
        raise ProbeError(f"task {task.name!r} has no labels to probe; use `probe map` instead")
    source = config.source or task.default_source
    task.check_language(source)
    ex_cfg = replace(config.extract, source=source, splits=None)
    t0 = time.perf_counter()
    ex_report = extract(ex_cfg, progress=progress)
    extract_seconds = time.perf_counter() - t0
    key, root = ex_report.key, ex_cfg.cache_root
    langs = sorted({s.path.parent.name for s in ex_report.shards}, key=lambda x: (x != source, x))
    if source not in langs:
        raise ProbeError(f"source language {source!r} is not among the extracted languages {langs}")

    t1 = time.perf_counter()
    open_split = opener(root, key, task)
    train, dev = train_dev(
        task, open_split, source, config.max_train_words, config.dev_fraction, config.train.seed
    )
    evals = {lang: open_split(lang, task.eval_split) for lang in langs}
    unscored = [lang for lang, split in evals.items() if np.any(split.labels < 0)]
    for lang in unscored:
        log.warning("%s/%s/%s has unlabelled rows: not scored", task.name, lang, task.eval_split)
        evals.pop(lang).reader.close()
    if not evals:
        raise ProbeError(f"no language of {task.name!r} has a labelled {task.eval_split} split")
    n_layers = train.reader.n_layers
    rows: list[Row] = []
    from tqdm.auto import tqdm

    with_control = config.control and task.level == "word" and source in evals
    steps = n_layers * (2 if with_control else 1)
    steps += 1 if config.scalar_mix else 0
    with tqdm(total=steps, desc=f"probing {task.name}", unit="probe", disable=not progress) as bar:
        for layer in range(n_layers):
            rows += _probe_layer(task, layer, train, dev, evals, config.train, "linear")
            bar.update()
        if with_control:
            rows += _control_rows(task, n_layers, train, dev, evals[source], source, config, bar)
            rows += _selectivity(rows, source)
        mix_weights: list[float] = []
        if config.scalar_mix:
            mix_rows, mix_weights = _scalar_mix(task, n_layers, train, dev, evals, config.train)
            rows += mix_rows
            bar.update()
    for split in (train, dev, *evals.values()):
        split.reader.close()
    probe_seconds = time.perf_counter() - t1

    settings = _settings(config, task, source, key, langs, extract_seconds, probe_seconds)
    directory = run_directory(
        config.results_dir / task.name / key, f"layers-{source}", settings,
        volatile=("extract_seconds", "probe_seconds", "provenance"),
    )  # fmt: skip
    write_table(rows, directory, settings)
    table = _summary(task, rows, source, langs)
    (directory / "summary.txt").write_text(table + "\n")
    _plots(task, rows, source, langs, n_layers, directory, key)
    return LayersResult(rows, directory, table, mix_weights, extract_seconds, probe_seconds,
                        settings)  # fmt: skip


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
        return (
            LinearProbe(hidden, n_classes)
            if task.level == "word"
            else PairLinearProbe(hidden, n_classes)
        )

    result = fit(factory, as_view(task, tr, layer), as_view(task, dv, layer), train_config)
    rows = []
    for lang, split in evals.items():
        for metric, value in _scores(task, result.head, as_data(task, split, [layer]), layer,
                                     split).items():  # fmt: skip
            rows.append(Row(head_name, str(layer), lang, metric, value))
    return rows


def _control_rows(
    task: Task,
    n_layers: int,
    train: CachedSplit,
    dev: CachedSplit,
    source_eval: CachedSplit,
    source: str,
    config: LayersConfig,
    bar: Any,
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
    for layer in range(n_layers):
        tr = as_data(task, train, [layer], y_train)
        dv = as_data(task, dev, [layer], y_dev)
        hidden = tr.hidden
        result = fit(lambda h=hidden: LinearProbe(h, n_classes), tr.words(layer), dv.words(layer),
                     config.train)  # fmt: skip
        ev = as_data(task, source_eval, [layer], y_eval)
        probs = predict_proba(result.head, ev.words(layer))
        control_acc = float((probs.argmax(1) == y_eval).mean())
        rows.append(Row("control", str(layer), source, "accuracy", control_acc))
        bar.update()
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
        if task.level == "word":
            return ScalarMixProbe(n_layers, hidden, n_classes)
        return PairScalarMixProbe(n_layers, hidden, n_classes)

    result = fit(factory, as_view(task, tr, layers), as_view(task, dv, layers), train_config)
    weights = [float(w) for w in result.head.weights]
    rows = [Row("scalar_mix", str(i), "all", "mix_weight", w) for i, w in enumerate(weights)]
    rows.append(Row("scalar_mix", "mix", "all", "centre_of_gravity",
                    float(result.head.centre_of_gravity)))  # fmt: skip
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
    key: str,
    langs: list[str],
    extract_seconds: float,
    probe_seconds: float,
) -> dict[str, Any]:
    ex = config.extract
    return {
        "command": "layers",
        "task": task.name,
        "model": ex.model,
        "source": source,
        "languages": langs,
        "cache_key": key,
        "cache_root": str(ex.cache_root),
        "data_dir": str(ex.data_dir) if ex.data_dir else None,
        "extract": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(ex).items()},
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

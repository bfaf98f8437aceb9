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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from probe.analysis.control import control_labels, selectivity
from probe.analysis.metrics import score
from probe.data.tasks import Task, run_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, RunOptions
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractSpec,
    ensure_cached,
)
from probe.heads.linear import LinearProbe
from probe.heads.registry import HEADS
from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMixProbe
from probe.results.render.layers import render_layers
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig, fit, predict_proba
from probe.train.splits import CachedSplit, as_data, as_view, opener, train_dev

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayersConfig:
    """What one `probe layers` run computes: which cache (`spec`, task, languages; what is
    missing is extracted) and how the probes train. Where results go and how many workers
    run them is `RunOptions`, not part of the run."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None  # first N records of each split (part of the data)
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None  # default: the task's default source language
    train: TrainConfig = field(default_factory=TrainConfig)
    control: bool = True
    scalar_mix: bool = True
    dev_fraction: float = 0.1  # held out of the training split when the task has no dev split
    max_train_words: int | None = None  # cap the training rows (whole sentences kept)
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank); () = the task's default rule
    train_split: str | None = None  # --train-split; None = the task's own


@dataclass
class LayersResult:
    rows: Table
    directory: Path
    table: str
    mix_weights: list[float]
    extract_seconds: float
    probe_seconds: float
    settings: dict[str, Any]
    cache: CacheHandle


class LayersExperiment(Experiment[LayersConfig, "_LayerJob"]):
    """A linear probe per layer (plus control task and scalar mix): one job per probe."""

    name = "layers"
    levels = ("word", "pair")
    other_levels_hint = " (parallel data has no labels to probe: use `probe map`)"

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        cfg = self.config
        request = self.zero_shot_request(task, source, cfg.train.seed)
        return ensure_cached(cfg.spec, request, cfg.options, cfg.paths, progress=progress)

    def jobs(self, ctx: Context) -> list[tuple[str, _LayerJob]]:
        task, source, cache = ctx.task, ctx.source, ctx.cache
        assert cache is not None
        scored = [lang for lang in ctx.langs if cache.labelled(task.name, lang, task.eval_split)]
        if not scored:
            raise ProbeError(f"no language of {task.name!r} has a labelled {task.eval_split} "
                             "split")  # fmt: skip
        with_control = self.config.control and task.level == "word" and source in scored
        # An absolute cache path: a job may run in another working directory (a cluster).
        job = _LayerJob(task.name, cache.root.resolve(), cache.key, source, tuple(scored),
                        ctx.n_layers, "linear", 0, self.config)  # fmt: skip
        jobs = [(f"linear-{i}", replace(job, layer=i)) for i in range(ctx.n_layers)]
        if with_control:
            jobs += [(f"control-{i}", replace(job, kind="control", layer=i))
                     for i in range(ctx.n_layers)]  # fmt: skip
        if self.config.scalar_mix:
            jobs.append(("scalar_mix", replace(job, kind="scalar_mix")))
        return jobs

    @staticmethod
    def job_function() -> Callable[[_LayerJob], list[Row]]:
        return run_layer_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        layers = range(ctx.n_layers)
        rows = [r for i in layers for r in parts[f"linear-{i}"]]
        if "control-0" in parts:
            control = [r for i in layers for r in parts[f"control-{i}"]]
            rows += control + _selectivity(rows, control, ctx.source)
        return rows + list(parts.get("scalar_mix", []))

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        return {
            "max_sentences": cfg.max_sentences,
            "train": asdict(cfg.train),
            "control": cfg.control,
            "scalar_mix": cfg.scalar_mix,
            "dev_fraction": cfg.dev_fraction,
            "max_train_words": cfg.max_train_words,
            "dev_split": ctx.task.dev_split or f"{cfg.dev_fraction:.0%} of {ctx.task.train_split}",
        }

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        return render_layers(ctx.task, rows, ctx.source, ctx.langs, ctx.n_layers, directory,
                             ctx.model_key)  # fmt: skip


def run_layers(config: LayersConfig, options: RunOptions | None = None) -> LayersResult:
    """Extract what is missing, then probe every layer; write tables and plots."""
    experiment = LayersExperiment(config, options)
    result = experiment.run()
    mix = result.rows.filter(head="scalar_mix", metric="mix_weight")
    assert result.cache is not None
    return LayersResult(result.rows, result.directory, result.summary, [r.value for r in mix],
                        result.seconds["extract"], result.seconds["jobs"], result.settings,
                        result.cache)  # fmt: skip


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
    task = run_task(job.task, job.config.train_split)
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
    return score(task.metric, probs, data.labels, offsets=split.offsets, label_names=task.labels,
                 extra=task.extra_metrics)  # fmt: skip


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
            rows.append(Row(head_name, str(layer), lang, metric, value, layers=(layer,)))
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
        """Labels per type as the model sees it (the stored input-id keys, not the strings)."""
        types = split.reader.word_types
        return control_labels(types if split.rows is None else types[split.rows], counts, seed)

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
        rows.append(Row("control", str(layer), source, "accuracy", control_acc,
                        layers=(layer,)))  # fmt: skip
    return rows


def _selectivity(rows: list[Row], control: list[Row], source: str) -> list[Row]:
    """Task accuracy minus control accuracy on the source's evaluation split, per layer."""
    task_acc = Table(rows).filter(head="linear", lang=source, metric="accuracy")
    by_layers = {r.layers: r.value for r in task_acc}
    return [
        Row(
            "linear",
            r.layer,
            source,
            "selectivity",
            selectivity(by_layers[r.layers], r.value),
            layers=r.layers,
        )  # fmt: skip
        for r in control
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
    every = tuple(layers)
    rows = [Row("scalar_mix", str(i), "all", "mix_weight", w, layers=(i,), group="all")
            for i, w in enumerate(weights)]  # fmt: skip
    rows.append(Row("scalar_mix", "mix", "all", "centre_of_gravity",
                    float(head.centre_of_gravity), layers=every, group="all"))  # fmt: skip
    for lang, split in evals.items():
        data = as_data(task, split, layers)
        for metric, value in _scores(task, result.head, data, layers, split).items():
            rows.append(Row("scalar_mix", "mix", lang, metric, value, layers=every))
    return rows, weights

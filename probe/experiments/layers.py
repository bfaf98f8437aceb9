"""`probe layers`: a linear probe per layer, scalar mix and control tasks, zero-shot everywhere.

Trained on the source language's cached features, evaluated on every language's evaluation
split. Every probe is a job of `probe.experiments.pool`, one per (layer, seed): the linear
probes (`linear-<i>-seed-<s>`), the control-task probes (`control-<i>-seed-<s>`, one control
map per seed), the scalar mix (`scalar_mix-seed-<s>`, first seed only: it reads every layer
and costs about as much as one seed's linear probes), and on request the online code
(`mdl-<i>`, first seed) and the same linear probes on the model's random-weights twin
(`random-<i>-seed-<s>`). They run here one after another or on `--workers N` processes or a
`--cluster`; each job opens the cache itself and holds one layer of every split it reads
(the scalar mix needs all layers).

Seeds vary only training (initialisation, order): the training sample and the dev hold-out
are drawn with the first seed. Every score row carries its seed, and each job returns the
per-sentence statistics of its scores (probe.results.items), so the aggregation can put a
paired bootstrap interval (probe.analysis.bootstrap) on the target average of every layer,
on the best layer's lead over the next best, on selectivity (task probe vs control probe on
the same source sentences) and on the trained-vs-random Δ (same sentences, two caches).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from probe.analysis.bootstrap import PairedBootstrap
from probe.analysis.control import control_labels, majority_share
from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import IGNORE_INDEX
from probe.data.tasks import Task, run_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, RunOptions, check_seeds
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractSpec,
    ensure_cached,
)
from probe.extract.spec import random_twin
from probe.heads.linear import LinearProbe
from probe.heads.registry import HEADS
from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMixProbe
from probe.results.gains import average_seeds
from probe.results.intervals import delta_rows
from probe.results.items import ItemScores, scored_items, scored_rows
from probe.results.render.layers import (
    NEXT_BEST,
    RANDOM,
    SELECTIVITY_MAJORITY_LIMIT,
    render_layers,
)
from probe.results.render.mdl import mdl_rows
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig, fit, predict_proba
from probe.train.mdl import online_code
from probe.train.splits import CachedSplit, as_data, as_view, opener, train_dev

log = logging.getLogger(__name__)

Output = list[Row | ItemScores]


@dataclass(frozen=True)
class LayersConfig:
    """What one `probe layers` run computes: which cache (`spec`, task, languages; what is
    missing is extracted) and how the probes train. Where results go and how many workers
    run them is `RunOptions`, not part of the run.

    seeds: the training seeds, each probe trains once per seed; () means the one seed
    `train.seed` (what `probe map` passes). With seeds, `train.seed` is set to the first,
    the seed the training sample and dev hold-out are drawn with.
    control_maps: how many control maps (Hewitt & Liang) selectivity averages over; None:
    one per seed (map seed = the probe's training seed), more continue with the next
    unused integers.
    beside_random: also probe the model's random-weights twin (this re-initialisation
    seed) and report the trained − random Δ per layer; None: not.
    """

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
    seeds: tuple[int, ...] = ()
    control_maps: int | None = None
    mdl: bool = False  # the online code length per layer (Voita & Titov 2020)
    beside_random: int | None = None

    def __post_init__(self) -> None:
        if self.seeds:
            check_seeds(self.seeds)
            # The first seed draws the data (train_dev, extraction's sample), as train.seed.
            object.__setattr__(self, "train", replace(self.train, seed=self.seeds[0]))
        if self.control_maps is not None and self.control_maps < 1:
            raise ProbeError(f"control_maps must be at least 1, not {self.control_maps}")
        if self.beside_random is not None and self.spec.random_weights is not None:
            raise ProbeError("the model is already a random-weights twin: drop "
                             "--random-weights or --beside-random")  # fmt: skip

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """The seeds every probe trains with (`seeds`, else `train.seed` alone)."""
        return self.seeds or (self.train.seed,)

    @property
    def control_seeds(self) -> tuple[int, ...]:
        """One seed per control map: the run's seeds, continued (or cut) to `control_maps`."""
        seeds = list(self.run_seeds)
        wanted = len(seeds) if self.control_maps is None else self.control_maps
        out, nxt = seeds[:wanted], max(seeds) + 1
        while len(out) < wanted:
            out.append(nxt)
            nxt += 1
        return tuple(out)


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
    twin: CacheHandle | None = None  # the random-weights twin's cache (--beside-random)


class LayersExperiment(Experiment[LayersConfig, "_LayerJob"]):
    """A linear probe per layer and seed (plus control task, scalar mix, MDL and random twin):
    one job per probe."""

    name = "layers"
    levels = ("word", "pair")
    other_levels_hint = " (parallel data has no labels to probe: use `probe map`)"
    takes_edges = True

    def __init__(self, config: LayersConfig, options: RunOptions | None = None) -> None:
        super().__init__(config, options)
        self.twin: CacheHandle | None = None
        self._majority: dict[str, Any] | None = None

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        cfg = self.config
        request = self.zero_shot_request(task, source, cfg.run_seeds[0])
        if cfg.beside_random is not None:  # the same splits, sample and languages
            self.twin = ensure_cached(random_twin(cfg.spec, cfg.beside_random), request,
                                      cfg.options, cfg.paths, progress=progress)  # fmt: skip
        return ensure_cached(cfg.spec, request, cfg.options, cfg.paths, progress=progress)

    def identity(self) -> Any:
        """The config, and the twin's cache (saved jobs are reused only on the same one)."""
        return (self.config, self.twin.identity() if self.twin is not None else None)

    def jobs(self, ctx: Context) -> list[tuple[str, _LayerJob]]:
        task, source, cache = ctx.task, ctx.source, ctx.cache
        cfg = self.config
        assert cache is not None
        scored = [lang for lang in ctx.langs if cache.labelled(task.name, lang, task.eval_split)]
        if not scored:
            raise ProbeError(f"no language of {task.name!r} has a labelled {task.eval_split} "
                             "split")  # fmt: skip
        # An absolute cache path: a job may run in another working directory (a cluster).
        job = _LayerJob(task.name, cache.root.resolve(), cache.key, source, tuple(scored),
                        ctx.n_layers, "linear", 0, cfg, cfg.run_seeds[0])  # fmt: skip
        layers = range(ctx.n_layers)
        jobs = [(f"linear-{i}-seed-{s}", replace(job, layer=i, seed=s))
                for i in layers for s in cfg.run_seeds]  # fmt: skip
        if self.with_control(ctx):
            jobs += [(f"control-{i}-seed-{s}", replace(job, kind="control", layer=i, seed=s))
                     for i in layers for s in cfg.control_seeds]  # fmt: skip
        if cfg.scalar_mix:  # first seed only: it reads every layer (~ a seed's linear probes)
            first = cfg.run_seeds[0]
            jobs.append((f"scalar_mix-seed-{first}", replace(job, kind="scalar_mix", seed=first)))
        if cfg.mdl:
            jobs += [(f"mdl-{i}", replace(job, kind="mdl", layer=i)) for i in layers]
        if self.twin is not None:
            twin = replace(job, root=self.twin.root.resolve(), key=self.twin.key, twin=True)
            jobs += [(f"random-{i}-seed-{s}", replace(twin, layer=i, seed=s))
                     for i in layers for s in cfg.run_seeds]  # fmt: skip
            if cfg.mdl:
                jobs += [(f"random-mdl-{i}", replace(twin, kind="mdl", layer=i)) for i in layers]
        return jobs

    def with_control(self, ctx: Context) -> bool:
        """Control tasks are word tasks' (a type -> label map); the source must be scored."""
        assert ctx.cache is not None
        return (self.config.control and ctx.task.probe_level == "word"
                and ctx.cache.labelled(ctx.task.name, ctx.source, ctx.task.eval_split))  # fmt: skip

    @staticmethod
    def job_function() -> Callable[[_LayerJob], Output]:
        return run_layer_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Per-seed rows, their mean and sd, and the intervals: target average per layer,
        best layer vs next best, selectivity, trained vs random twin."""
        cfg = self.config
        layers, seeds = range(ctx.n_layers), cfg.run_seeds
        boot = PairedBootstrap()
        boot.prepare(ctx.items.triples(), token=ctx.items)  # each language drawn once
        linear = [r for i in layers for s in seeds for r in parts[f"linear-{i}-seed-{s}"]]
        rows = [*linear, *_seed_means(linear, seeds)]
        rows += _target_scores(linear, ctx, boot)
        rows += _best_vs_next(rows, linear, ctx, boot)
        if f"control-0-seed-{cfg.control_seeds[0]}" in parts:
            control = [r for i in layers for s in cfg.control_seeds
                       for r in parts[f"control-{i}-seed-{s}"]]  # fmt: skip
            rows += [*control, *_seed_means(control, cfg.control_seeds)]
            rows += _selectivity(linear, control, ctx, boot)
            share = self.majority(ctx)
            rows.append(Row("control", "-", ctx.source, "majority_share", share["share"],
                            config=share["label"]))  # fmt: skip
        if cfg.scalar_mix:
            mix = parts[f"scalar_mix-seed-{seeds[0]}"]
            rows += [*mix, *_seed_means(mix, seeds[:1]), *_target_scores(mix, ctx, boot)]
        if cfg.mdl:
            rows += [r for i in layers for r in parts[f"mdl-{i}"]]
        if f"random-0-seed-{seeds[0]}" in parts:
            twin = [r for i in layers for s in seeds for r in parts[f"random-{i}-seed-{s}"]]
            rows += [*twin, *_seed_means(twin, seeds)]
            rows += _twin_deltas(linear, twin, ctx, boot)
            if cfg.mdl:
                rows += [r for i in layers for r in parts[f"random-mdl-{i}"]]
        return rows

    def majority(self, ctx: Context) -> dict[str, Any]:
        """The most frequent label of the source's training sample and its share of the
        labelled words: above SELECTIVITY_MAJORITY_LIMIT a control probe scores that much
        by predicting it, so selectivity says little (NER: O holds ~85%)."""
        if self._majority is None:
            assert ctx.cache is not None
            cfg = self.config
            open_split = opener(ctx.cache.root, ctx.cache.key, ctx.task)
            train, dev = train_dev(ctx.task, open_split, ctx.source, cfg.max_train_words,
                                   cfg.dev_fraction, cfg.run_seeds[0])  # fmt: skip
            try:
                labels = train.labels[train.labels != IGNORE_INDEX]
                label, share = majority_share(labels, len(ctx.task.labels))
            finally:
                train.reader.close()
                dev.reader.close()
            self._majority = {"label": ctx.task.labels[label], "share": share,
                              "informative": share <= SELECTIVITY_MAJORITY_LIMIT}  # fmt: skip
        return self._majority

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        out: dict[str, Any] = {
            "max_sentences": cfg.max_sentences,
            "train": asdict(cfg.train),
            "control": cfg.control,
            "scalar_mix": cfg.scalar_mix,
            "dev_fraction": cfg.dev_fraction,
            "max_train_words": cfg.max_train_words,
            "dev_split": ctx.task.dev_split or f"{cfg.dev_fraction:.0%} of {ctx.task.train_split}",
        }
        # Recorded only when they differ from a one-seed run without extras, so such a run's
        # settings (and results directory) are what they were before they existed.
        if len(cfg.run_seeds) > 1 or cfg.seeds:
            out["seeds"] = list(cfg.run_seeds)
        if self.with_control(ctx):
            out["control_seeds"] = list(cfg.control_seeds)
            out["majority_label"] = self.majority(ctx)
        out["intervals"] = ("95% paired bootstrap over evaluation sentences (pairs) and seeds, "
                            "1000 replicates (probe.analysis.bootstrap)")  # fmt: skip
        if cfg.mdl:
            out["mdl"] = ("online code (Voita & Titov 2020) of the source training sample, "
                          f"linear probe, seed {cfg.run_seeds[0]}")  # fmt: skip
        if self.twin is not None:
            out["random_twin"] = {"seed": cfg.beside_random, "cache_key": self.twin.key}
        return out

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        return render_layers(ctx.task, rows, ctx.source, ctx.langs, ctx.n_layers, directory,
                             ctx.model_key, seeds=self.config.run_seeds)  # fmt: skip


def run_layers(config: LayersConfig, options: RunOptions | None = None) -> LayersResult:
    """Extract what is missing, then probe every layer; write tables and plots."""
    experiment = LayersExperiment(config, options)
    result = experiment.run()
    mix = result.rows.filter(head="scalar_mix", metric="mix_weight", seed=None, stat="")
    assert result.cache is not None
    return LayersResult(result.rows, result.directory, result.summary, [r.value for r in mix],
                        result.seconds["extract"], result.seconds["jobs"], result.settings,
                        result.cache, experiment.twin)  # fmt: skip


# --- aggregation -----------------------------------------------------------------------------


def _seed_means(rows: Sequence[Row], seeds: Sequence[int]) -> list[Row]:
    """Mean (seed None) and, with several seeds, sd rows of per-seed rows."""
    return average_seeds([[r for r in rows if r.seed == s] for s in seeds])


def _item_metrics(rows: Sequence[Row]) -> list[str]:
    return [m for m in dict.fromkeys(r.metric for r in rows) if m in ITEM_COLUMNS]


def _target_scores(scored: Sequence[Row], ctx: Context, boot: PairedBootstrap) -> list[Row]:
    """Per probe (layer, or the scalar mix) and metric with item statistics: the mean over
    target languages of the seed-mean score, with its interval (lang and group "targets")."""
    targets = set(ctx.targets)
    out = []
    for metric in _item_metrics(scored):
        for layer in dict.fromkeys((r.head, r.layer, r.layers) for r in scored):
            chosen = [r for r in scored if (r.head, r.layer, r.layers) == layer
                      and r.metric == metric and r.lang in targets]  # fmt: skip
            if not chosen or not ctx.items.covers(chosen):
                continue
            langs = list(dict.fromkeys(r.lang for r in chosen))
            interval = boot.score(ctx.items.systems(chosen), metric, langs)
            out.append(Row(layer[0], layer[1], "targets", metric, interval.estimate,
                           layers=layer[2], group="targets", ci_low=interval.low,
                           ci_high=interval.high))  # fmt: skip
    return out


def _best_vs_next(
    rows: Sequence[Row], linear: Sequence[Row], ctx: Context, boot: PairedBootstrap
) -> list[Row]:
    """The best layer by target average of the task metric (the source's score without
    targets) against the next best: Δ rows with config "next-best <k>"."""
    metric = ctx.task.metric
    scope = "targets" if ctx.targets else ctx.source
    means = {r.layers: r.value for r in rows
             if r.head == "linear" and not r.config and r.metric == metric and r.lang == scope
             and r.seed is None and not r.stat}  # fmt: skip
    if len(means) < 2:
        return []
    best, runner_up = sorted(means, key=lambda k: -means[k])[:2]
    a = [r for r in linear if r.layers == best and r.metric == metric]
    b = [r for r in linear if r.layers == runner_up and r.metric == metric]
    like = Row("linear", str(best[0]), "", metric, 0.0, layers=best)
    return delta_rows(a, b, ctx.items, boot, ctx.source, like=like,
                      config=f"{NEXT_BEST} {runner_up[0]}")  # fmt: skip


def _selectivity(
    linear: Sequence[Row], control: Sequence[Row], ctx: Context, boot: PairedBootstrap
) -> list[Row]:
    """Task accuracy minus control accuracy on the source's evaluation sentences, per layer:
    the seed-mean task probe against the mean over control maps, a paired Δ (same sentences)
    with its interval; metric "selectivity" (and "selectivity_sd")."""
    out = []
    for layer in dict.fromkeys(r.layers for r in control):
        a = [r for r in linear if r.layers == layer and r.lang == ctx.source
             and r.metric == "accuracy"]  # fmt: skip
        b = [r for r in control if r.layers == layer and r.metric == "accuracy"]
        like = Row("linear", str(layer[0]), ctx.source, "selectivity", 0.0, layers=layer)
        for r in delta_rows(a, b, ctx.items, boot, ctx.source, like=like, config=""):
            if r.lang == ctx.source and not r.group:
                name = "selectivity_sd" if r.stat else "selectivity"
                out.append(replace(r, metric=name))
    return out


def _twin_deltas(
    linear: Sequence[Row], twin: Sequence[Row], ctx: Context, boot: PairedBootstrap
) -> list[Row]:
    """Trained − random twin per layer, language and language group, for every metric with
    item statistics: paired on the same evaluation sentences (config RANDOM)."""
    out = []
    for metric in _item_metrics(linear):
        for layer in dict.fromkeys(r.layers for r in linear):
            a = [r for r in linear if r.layers == layer and r.metric == metric]
            b = [r for r in twin if r.layers == layer and r.metric == metric]
            if a and b:
                like = Row("linear", str(layer[0]), "", metric, 0.0, layers=layer)
                out += delta_rows(a, b, ctx.items, boot, ctx.source, like=like, config=RANDOM)
    return out


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
    kind: str  # linear | control | scalar_mix | mdl
    layer: int
    config: LayersConfig
    seed: int = 0  # training seed (a control job's: also its map's)
    twin: bool = False  # the cache is the random-weights twin's (rows: config RANDOM)


def run_layer_job(job: _LayerJob) -> Output:
    """Open the splits one probe needs, train and score it, close them."""
    task = run_task(job.task, job.config.train_split)
    cfg = job.config
    training = replace(cfg.train, seed=job.seed)
    open_split = opener(job.root, job.key, task)
    train, dev = train_dev(task, open_split, job.source, cfg.max_train_words, cfg.dev_fraction,
                           cfg.run_seeds[0])  # fmt: skip
    opened = [train, dev]
    try:
        if job.kind == "control":
            source_eval = open_split(job.source, task.eval_split)
            opened.append(source_eval)
            return _control(task, job.layer, train, dev, source_eval, job.source, training)
        if job.kind == "mdl":
            return _mdl(task, job, train, dev)
        evals = {lang: open_split(lang, task.eval_split) for lang in job.langs}
        opened += evals.values()
        if job.kind == "linear":
            out = _probe_layer(task, job.layer, train, dev, evals, training, "linear")
            if job.twin:  # the twin's rows: its own model key, told apart by config
                out = [_as_twin(x, job.key) for x in out]
            return out
        return _scalar_mix(task, job.n_layers, train, dev, evals, training)
    finally:
        for split in opened:
            split.reader.close()


def _as_twin(x: Row | ItemScores, key: str) -> Row | ItemScores:
    if isinstance(x, ItemScores):
        return ItemScores(replace(x.row, config=RANDOM, model=key), x.stats)
    return replace(x, config=RANDOM, model=key)


# --- probing ---------------------------------------------------------------------------------


def _scored(
    task: Task, head: Any, data: Any, view_layers: Any, split: CachedSplit, like: Row
) -> Output:
    """Score rows of every metric (coordinates of `like`), and the item statistics of those
    an interval can be computed of."""
    probs = predict_proba(head, as_view(task, data, view_layers))
    return scored_rows(lambda metric, value: replace(like, metric=metric, value=value),
                       task.metric, probs, data.labels, offsets=split.offsets,
                       label_names=task.labels, extra=task.extra_metrics)  # fmt: skip


def _probe_layer(
    task: Task,
    layer: int,
    train: CachedSplit,
    dev: CachedSplit,
    evals: dict[str, CachedSplit],
    train_config: TrainConfig,
    head_name: str,
) -> Output:
    n_classes = len(task.labels)
    tr, dv = as_data(task, train, [layer]), as_data(task, dev, [layer])
    hidden = tr.hidden

    def factory() -> Any:
        return HEADS.get("linear").build(task.probe_level, hidden, n_classes)

    result = fit(factory, as_view(task, tr, layer), as_view(task, dv, layer), train_config)
    out: Output = []
    for lang, split in evals.items():
        like = Row(head_name, str(layer), lang, "", 0.0, layers=(layer,), seed=train_config.seed)
        out += _scored(task, result.head, as_data(task, split, [layer]), layer, split, like)
    return out


def _control(
    task: Task,
    layer: int,
    train: CachedSplit,
    dev: CachedSplit,
    source_eval: CachedSplit,
    source: str,
    training: TrainConfig,
) -> Output:
    """Hewitt & Liang control task on the source language: the map and the probe seeded by
    `training.seed`; its accuracy row and per-sentence statistics."""
    n_classes = len(task.labels)
    counts = np.bincount(train.labels[train.labels != IGNORE_INDEX], minlength=n_classes)
    seed = training.seed

    def ctrl(split: CachedSplit) -> np.ndarray:
        """Labels per type as the model sees it (the stored input-id keys, not the strings)."""
        types = split.reader.word_types
        return control_labels(types if split.rows is None else types[split.rows], counts, seed)

    y_train, y_dev, y_eval = ctrl(train), ctrl(dev), ctrl(source_eval)
    tr = as_data(task, train, [layer], y_train)
    dv = as_data(task, dev, [layer], y_dev)
    result = fit(lambda: LinearProbe(tr.hidden, n_classes), tr.words(layer), dv.words(layer),
                 training)  # fmt: skip
    ev = as_data(task, source_eval, [layer], y_eval)
    pred = predict_proba(result.head, ev.words(layer)).argmax(1)
    row = Row("control", str(layer), source, "accuracy", float((pred == y_eval).mean()),
              layers=(layer,), seed=seed)  # fmt: skip
    return [row, scored_items(row, pred, y_eval, offsets=source_eval.offsets)]


def _mdl(task: Task, job: _LayerJob, train: CachedSplit, dev: CachedSplit) -> Output:
    """The online code of the source training sample's labels given one layer (first seed:
    it orders the sentences and initialises the probes)."""
    n_classes, layer, seed = len(task.labels), job.layer, job.config.run_seeds[0]
    tr, dv = as_data(task, train, [layer]), as_data(task, dev, [layer])
    hidden = tr.hidden

    def factory() -> Any:
        return HEADS.get("linear").build(task.probe_level, hidden, n_classes)

    code = online_code(tr, dv, n_classes, factory, replace(job.config.train, seed=seed), seed,
                       layer=layer)  # fmt: skip
    rows = mdl_rows({layer: code}, lang=job.source)
    if job.twin:
        rows = [replace(r, config=RANDOM, model=job.key) for r in rows]
    return [replace(r, seed=seed) for r in rows]


def _scalar_mix(
    task: Task,
    n_layers: int,
    train: CachedSplit,
    dev: CachedSplit,
    evals: dict[str, CachedSplit],
    train_config: TrainConfig,
) -> Output:
    layers = list(range(n_layers))
    n_classes = len(task.labels)
    tr, dv = as_data(task, train, layers), as_data(task, dev, layers)
    hidden = tr.hidden
    seed = train_config.seed

    def factory() -> Any:
        return HEADS.get("scalar_mix").build(task.probe_level, hidden, n_classes, n_layers=n_layers)

    result = fit(factory, as_view(task, tr, layers), as_view(task, dv, layers), train_config)
    head = cast(ScalarMixProbe | PairScalarMixProbe, result.head)
    every = tuple(layers)
    out: Output = [Row("scalar_mix", str(i), "all", "mix_weight", float(w), layers=(i,),
                       group="all", seed=seed) for i, w in enumerate(head.weights)]  # fmt: skip
    out.append(Row("scalar_mix", "mix", "all", "centre_of_gravity",
                   float(head.centre_of_gravity), layers=every, group="all",
                   seed=seed))  # fmt: skip
    for lang, split in evals.items():
        like = Row("scalar_mix", "mix", lang, "", 0.0, layers=every, seed=seed)
        out += _scored(task, result.head, as_data(task, split, layers), layers, split, like)
    return out

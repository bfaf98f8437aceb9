"""`probe structural`: Hewitt & Manning's distance and depth probes per layer, zero-shot.

Each probe (probe.heads.structural) is trained on the source language's cached word vectors
of one layer against its UD trees (the heads every UD word shard stores), early-stopped on
the source's dev trees, and scored on every language's evaluation trees (Chi et al. 2020's
cross-lingual setting): UUAS and distance Spearman (`dspr`) for the distance probe, root
accuracy and depth Spearman (`nspr`) for the depth probe (probe.analysis.structural). One
job per (probe kind, layer, seed), on the experiment base like `probe layers`: the same
training sample (`--max-train-words`), dev hold-out, seeds, results files, journal and
workers; the ratios (`uuas`, `root_acc`) carry their per-sentence counts, so the target
average of each layer gets a paired bootstrap interval over sentences and seeds.

Rows: head `distance` or `depth`, metric `uuas`, `dspr`, `root_acc`, `nspr`, layer and seed
as in `layers` (seed None: the mean over seeds; stat "sd": their sd), lang "targets" the
target average.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.bootstrap import PairedBootstrap
from probe.analysis.structural import SPEARMAN_LENGTHS, depth_scores, distance_scores
from probe.data.tasks import Task, get_task, run_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, RunOptions, RunResult, check_seeds
from probe.experiments.layers import _seed_means, _target_scores
from probe.extract import CacheHandle, CachePaths, ExtractOptions, ExtractSpec, ensure_cached
from probe.heads.registry import STRUCTURAL_PROBES
from probe.heads.structural import StructuralProbe
from probe.results.items import ItemScores
from probe.results.render.structural import METRICS, render_structural
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig
from probe.train.splits import CachedSplit, layer_array, opener, train_dev
from probe.train.structural import TreeData, fit_structural, predict_structural

log = logging.getLogger(__name__)

Output = list[Row | ItemScores]
# H&M's relation-free stand-in for their PTB punctuation tags: UD attaches punctuation by
# `punct` (its subtypes too), and UUAS leaves those words out.
PUNCT = "punct"
# H&M train with Adam at 1e-3; whole sentences, so the batch counts padded words.
STRUCTURAL_TRAINING = TrainConfig(lr=1e-3, batch_size=1024, max_epochs=40, patience=4)


@dataclass(frozen=True)
class StructuralConfig:
    """What one `probe structural` run computes: the cache (`spec`, a UD task, languages)
    and how the probes train. rank: the probe's rank (None: the hidden size, H&M's full
    rank); kinds: which probes (distance, depth). seeds as in `LayersConfig`."""

    spec: ExtractSpec
    task: str = "pos"
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None
    train: TrainConfig = STRUCTURAL_TRAINING
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    max_eval_sentences: int | None = None  # a seeded sample of each evaluation split
    treebanks: tuple[str, ...] = ()
    train_split: str | None = None
    seeds: tuple[int, ...] = ()
    rank: int | None = None
    kinds: tuple[str, ...] = STRUCTURAL_PROBES

    def __post_init__(self) -> None:
        if self.seeds:
            check_seeds(self.seeds)
            object.__setattr__(self, "train", replace(self.train, seed=self.seeds[0]))
        if self.rank is not None and self.rank < 1:
            raise ProbeError(f"--rank must be at least 1, not {self.rank}")
        unknown = [k for k in self.kinds if k not in STRUCTURAL_PROBES]
        if unknown or not self.kinds:
            raise ProbeError(f"structural probe kinds are {', '.join(STRUCTURAL_PROBES)}; got "
                             f"{', '.join(self.kinds) or 'none'}")  # fmt: skip

    @property
    def run_seeds(self) -> tuple[int, ...]:
        return self.seeds or (self.train.seed,)


class StructuralExperiment(Experiment[StructuralConfig, "_TreeJob"]):
    """A distance and a depth probe per layer and seed, one job each."""

    name = "structural"
    levels = ("word",)
    other_levels_hint = " (structural probes read a UD task's trees: use --task pos)"

    def resolve(self) -> tuple[Task, str]:
        name = self.task_name()
        if get_task(name).treebanks is None:  # before its files are looked for
            raise ProbeError(f"`probe structural` reads UD dependency trees; task {name!r} "
                             "reads no UD treebank (use pos, or another UD task)")  # fmt: skip
        return super().resolve()

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        cfg = self.config
        request = self.zero_shot_request(task, source, cfg.run_seeds[0])
        return ensure_cached(cfg.spec, request, cfg.options, cfg.paths, progress=progress)

    def jobs(self, ctx: Context) -> list[tuple[str, _TreeJob]]:
        cfg = self.config
        assert ctx.cache is not None
        job = _TreeJob(ctx.task.name, ctx.cache.root.resolve(), ctx.cache.key, ctx.source,
                       ctx.langs, "distance", 0, cfg, cfg.run_seeds[0])  # fmt: skip
        return [(f"{kind}-{i}-seed-{s}", replace(job, kind=kind, layer=i, seed=s))
                for kind in cfg.kinds for i in range(ctx.n_layers)
                for s in cfg.run_seeds]  # fmt: skip

    @staticmethod
    def job_function() -> Callable[[_TreeJob], Output]:
        return run_tree_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Per-seed rows, their mean and sd, and the target average of each layer: with its
        interval for uuas and root_acc, the plain mean for the Spearman averages."""
        boot = PairedBootstrap()
        boot.prepare(ctx.items.triples(), token=ctx.items)
        rows: list[Row] = []
        seeds = self.config.run_seeds
        for kind in self.config.kinds:
            scored = [r for i in range(ctx.n_layers) for s in seeds
                      for r in parts[f"{kind}-{i}-seed-{s}"]]  # fmt: skip
            means = _seed_means(scored, seeds)
            rows += [*scored, *means, *_target_scores(scored, ctx, boot)]
            rows += _target_means(means, ctx)
        return rows

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg = self.config
        assert ctx.cache is not None
        return {
            "max_sentences": cfg.max_sentences,
            "train": asdict(cfg.train),
            "dev_fraction": cfg.dev_fraction,
            "max_train_words": cfg.max_train_words,
            "dev_split": ctx.task.dev_split or f"{cfg.dev_fraction:.0%} of {ctx.task.train_split}",
            "seeds": list(cfg.run_seeds),
            "rank": cfg.rank or _hidden(ctx),
            "kinds": list(cfg.kinds),
            "punctuation": f"words attached by UD relation {PUNCT!r} (its subtypes too) are "
            "left out of UUAS and root accuracy, not of the Spearman averages (as H&M)",
            "spearman_lengths": list(SPEARMAN_LENGTHS),
            "intervals": "95% paired bootstrap over evaluation sentences and seeds, 1000 "
            "replicates, for uuas and root_acc (the Spearman averages are not sums over "
            "sentences: no interval)",
        }

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        return render_structural(ctx.task, rows, ctx.source, ctx.langs, ctx.n_layers,
                                 directory, ctx.model_key, seeds=self.config.run_seeds)  # fmt: skip


def _hidden(ctx: Context) -> int:
    """The cached vectors' size: the default rank."""
    assert ctx.cache is not None
    with ctx.cache.open(ctx.task.name, ctx.source, ctx.task.eval_split) as reader:
        return reader.shards[0].hidden


def _target_means(means: list[Row], ctx: Context) -> list[Row]:
    """The plain mean over target languages of the seed-mean Spearman averages per layer
    (lang and group "targets", no interval)."""
    targets = set(ctx.targets)
    out = []
    for metric in ("dspr", "nspr"):
        chosen = [r for r in means if r.metric == metric and r.lang in targets and not r.stat]
        for layers in dict.fromkeys(r.layers for r in chosen):
            values = [r.value for r in chosen if r.layers == layers]
            like = next(r for r in chosen if r.layers == layers)
            out.append(replace(like, lang="targets", group="targets",
                               value=float(np.nanmean(values))))  # fmt: skip
    return out


def run_structural(config: StructuralConfig, options: RunOptions | None = None) -> RunResult:
    """Extract what is missing, then train and score every probe (`RunResult`)."""
    return StructuralExperiment(config, options).run()


# --- jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TreeJob:
    """One probe (kind, layer, seed) of a `structural` run; picklable."""

    task: str
    root: Path
    key: str
    source: str
    langs: tuple[str, ...]
    kind: str
    layer: int
    config: StructuralConfig
    seed: int = 0


def tree_data(split: CachedSplit, layer: int) -> tuple[TreeData, list[np.ndarray]]:
    """One layer of a split as `TreeData`, and per sentence the words UUAS keeps (not
    punctuation); a split without trees is a one-line CacheError (probe.cache.reader)."""
    assert split.offsets is not None
    reader = split.reader
    heads, relations = reader.heads, reader.relations
    if split.rows is not None:
        heads, relations = heads[split.rows], relations[split.rows]
    offsets = split.offsets
    roots = np.add.reduceat((heads < 0).astype(np.int64), offsets[:-1]) if len(heads) else (
        np.zeros(0, dtype=np.int64))  # fmt: skip
    bad = np.flatnonzero(roots != 1)
    if len(bad):
        ids = split.reader.strings("sentence_ids")
        first = int(bad[0]) if split.items is None else int(split.items[bad[0]])
        raise ProbeError(
            f"{reader.attrs.get('task')}/{reader.attrs.get('lang')}/{reader.attrs.get('split')}: "
            f"sentence {ids[first]!r} has {int(roots[bad[0]])} roots; structural probes need one "
            f"tree per sentence, one root each ({len(bad)} sentences are not)"
        )
    names = reader.relation_names
    punct = np.asarray([n.partition(":")[0] == PUNCT for n in names], dtype=bool)
    keep = ~punct[relations] if len(names) else np.ones(len(heads), dtype=bool)
    data = TreeData(layer_array(split, layer), offsets, heads)
    return data, [keep[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def run_tree_job(job: _TreeJob) -> Output:
    """Train one probe on the source's trees of one layer; score it on every language."""
    task = run_task(job.task, job.config.train_split)
    cfg = job.config
    open_split = opener(job.root, job.key, task)
    train, dev = train_dev(task, open_split, job.source, cfg.max_train_words, cfg.dev_fraction,
                           cfg.run_seeds[0])  # fmt: skip
    opened = [train, dev]
    try:
        tr, _ = tree_data(train, job.layer)
        dv, _ = tree_data(dev, job.layer)
        rank = cfg.rank or tr.hidden
        result = fit_structural(job.kind, tr, dv, rank, replace(cfg.train, seed=job.seed))
        assert isinstance(result.head, StructuralProbe)
        out: Output = []
        for lang in job.langs:
            split = open_split(lang, task.eval_split)
            opened.append(split)
            data, keep = tree_data(split, job.layer)
            predicted = predict_structural(result.head, data)
            scorer = distance_scores if job.kind == "distance" else depth_scores
            scores = scorer(predicted, data.sentence_heads(), keep)
            for metric in METRICS[job.kind]:
                row = Row(job.kind, str(job.layer), lang, metric, scores.scores[metric],
                          layers=(job.layer,), seed=job.seed)  # fmt: skip
                out.append(row)
                if metric in scores.counts:
                    out.append(ItemScores(row, scores.counts[metric]))
        out.append(Row(job.kind, str(job.layer), job.source, "best_epoch",
                       float(result.best_epoch), layers=(job.layer,), seed=job.seed,
                       subset="dev"))  # fmt: skip
        return out
    finally:
        for split in opened:
            split.reader.close()


# --- structural curves of `probe map` ----------------------------------------------------------

UUAS_CURVE = "uuas"


@dataclass(frozen=True)
class CurveJob:
    """One layer of one of the map's extra structural curves: `uuas` (a distance probe on
    the map task's trees) or a word task's source-trained linear probe (`morph-Number`);
    its rows come back as head "structural", config the curve, eval_task its task."""

    curve: str
    inner: Any  # _TreeJob or probe.experiments.layers._LayerJob


def curve_jobs(
    curves: tuple[str, ...], ctx: Context, layers_config: Any, seed: int
) -> list[tuple[str, CurveJob]]:
    """The map's curve jobs, one per curve and layer, first seed only (a curve is a peak to
    locate beside the task's probes, not a score to put an interval on)."""
    from probe.experiments.layers import LayersConfig, _LayerJob

    assert ctx.cache is not None
    root, key = ctx.cache.root.resolve(), ctx.cache.key
    cfg: LayersConfig = layers_config
    out = []
    for curve in curves:
        for i in range(ctx.n_layers):
            inner: Any
            if curve == UUAS_CURVE:
                tree = StructuralConfig(spec=cfg.spec, task=ctx.task.name, langs=cfg.langs,
                                        max_sentences=cfg.max_sentences, options=cfg.options,
                                        paths=cfg.paths, source=ctx.source,
                                        train=replace(STRUCTURAL_TRAINING, seed=seed),
                                        max_train_words=cfg.max_train_words,
                                        treebanks=cfg.treebanks, train_split=cfg.train_split,
                                        kinds=("distance",))  # fmt: skip
                inner = _TreeJob(ctx.task.name, root, key, ctx.source, ctx.langs, "distance", i,
                                 tree, seed)  # fmt: skip
            else:
                langs = ctx.cache.languages(curve, ctx.source)
                probe = replace(cfg, task=curve, control=False, scalar_mix=False, seeds=(seed,))
                inner = _LayerJob(curve, root, key, ctx.source, langs, ctx.n_layers, "linear", i,
                                  probe, seed)  # fmt: skip
            out.append((f"curve-{curve}-{i}", CurveJob(curve, inner)))
    return out


def run_curve_job(job: CurveJob) -> Output:
    """Run the inner job; its rows and item statistics relabelled as the curve's."""
    from probe.experiments.layers import run_layer_job

    inner = job.inner
    out = run_tree_job(inner) if isinstance(inner, _TreeJob) else run_layer_job(inner)

    def relabel(row: Row) -> Row:
        return replace(row, head="structural", config=job.curve, eval_task=inner.task)

    return [ItemScores(relabel(x.row), x.stats) if isinstance(x, ItemScores) else relabel(x)
            for x in out]  # fmt: skip


def check_curves(curves: tuple[str, ...]) -> None:
    """The map's `--structural` curves: `uuas`, or word tasks (morph-*, deprel, deprel-arc)."""
    for curve in curves:
        if curve == UUAS_CURVE:
            continue
        task = get_task(curve)  # an unknown name fails with the close matches
        if task.level != "word":
            raise ProbeError(f"--structural {curve}: a curve is uuas or a word task (morph-"
                             f"Number, deprel, deprel-arc), not a {task.level} task")  # fmt: skip

"""`probe calibration`: how well zero-shot confidences match accuracy, per language and layer.

Two training regimes are compared: an English-only head (the source language's training
split) and a multilingual head (the training splits of several languages pooled; with
`match_size` capped to the English head's word count, split evenly, so diversity rather
than data size is what differs). For each regime: a linear probe per layer and DLFA
(last, k). Every head is scored on every language's evaluation split: accuracy (or the task
metric), ECE, NLL and a reliability diagram. Temperature scaling: one T per head fitted by
NLL on that head's own dev data (the source dev split(s), never a target), then ECE/NLL
again on every language. Languages in neither regime's training set are the held-out
targets the two regimes are compared on. One job per (regime, head, seed):
`en-linear-3-seed-0`, `en+de+fr-dlfa-seed-1`, each fitting its own temperature on its own dev
data; seeds vary only training (the hold-outs and size-matched samples use the first seed).

One recipe per comparison: every head trains with `train` (default DLFA's recipe) unless
`dlfa_train` gives DLFA its own; the summary's recipe line and settings.json
`recipe_differences` say which. The differences the summary prints, each the seed mean with a
95% paired bootstrap interval over sentences and seeds (ECE through its per-bin sentence
sums, probe.analysis.calibration.ece_item_stats): DLFA minus the last layer and minus layer k
(its matched single-layer baselines) per regime, and the pooled regime minus the source-only
one per head (last layer, DLFA), in the task metric and ECE, on the held-out targets (every
scored language other than the source when there are none).

Result rows (results.csv): `config` is the regime (`en`, `en+de+fr`), `layers` (i,) or
DLFA's (k, last), lang the language scored, metric in {task metric, accuracy, ece, nll,
ece_ts, nll_ts}; subset `dev` (lang `dev`): `temperature`, `nll`/`nll_ts` (the fit) and
`train_words`; group `held-out` (lang `held-out`): the mean over held-out languages. Rows
come per seed (`seed`), as the seed mean (seed None) and sd (stat "sd", metric + "_sd"). The
differences are `gain_<metric>` rows (probe.results.intervals.delta_rows: per language and
group, ci_low/ci_high) whose head names the comparison (`dlfa-last`, `dlfa-k`,
`pooled-source:last`, `pooled-source:dlfa`) and whose config is the regime (or `<pooled>-<source>`).
The legacy head column is `<kind>@<regime>` (`linear@en`). reliability.json holds every
diagram's bins (carried from the jobs as bin rows, which results.csv leaves out).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.bootstrap import N_BOOT, PairedBootstrap
from probe.analysis.calibration import (
    apply_temperature,
    ece_item_stats,
    fit_temperature,
    log_probs,
    nll,
    reliability,
)
from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import score
from probe.data.discovery import check_language, expand_languages
from probe.data.tasks import Task, run_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, check_seeds
from probe.experiments.domain_shift import seed_means
from probe.experiments.leakage import SplitUse
from probe.experiments.subset_record import training_subsets
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.results.intervals import delta_rows
from probe.results.items import ItemScores, ItemSet, JobOutput, scored_items
from probe.results.render.calibration import bin_rows, design_line, is_bin, render_calibration
from probe.results.rows import Row
from probe.results.table import Table
from probe.train import TrainConfig
from probe.train.select import (
    DLFA_TRAINING,
    FuseLayer,
    HeadSpec,
    fit_dlfa,
    n_words,
    predict,
    recipe_differences,
    recipe_line,
    resolve_fuse_layer,
    train_head,
)
from probe.train.splits import CachedSplit, opener, train_caps, train_dev

# Config fields recorded elsewhere: the cache handle's settings, or the base (the source, the
# resolved train split).
_NOT_SETTINGS = ("spec", "options", "paths", "task", "langs", "source", "train_split")


@dataclass(frozen=True)
class CalibrationConfig:
    """What one `probe calibration` run computes; `langs` are the evaluation languages."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    source: str | None = None  # the English-only regime's language (default: the task's)
    pooled: tuple[str, ...] = ("en", "de", "fr")  # the multilingual regime's languages
    match_size: bool = True
    fuse_layer: FuseLayer = "best"
    reduction: int = 4
    n_bins: int = 15
    # One recipe per comparison: every head trains with `train` (default DLFA's) unless
    # `dlfa_train` gives DLFA its own (the summary then says which fields differ).
    train: TrainConfig = DLFA_TRAINING
    dlfa_train: TrainConfig | None = None
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds: every head trains once per seed
    n_boot: int = N_BOOT  # bootstrap replicates of every interval
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    # --train-split; None = the task's own. `dev` is the small-data setting the shared data
    # needs for GSD (de/fr have no train split there); the dev set is then a hold-out.
    train_split: str | None = None
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank)

    def __post_init__(self) -> None:
        check_seeds(self.seeds)

    @property
    def dlfa_recipe(self) -> TrainConfig:
        """How DLFA trains: `dlfa_train` when given, else the one recipe of every head."""
        return self.dlfa_train if self.dlfa_train is not None else self.train


@dataclass(frozen=True)
class _Plan:
    """The run's languages: the source, the pooled regime's, and who is evaluated."""

    source: str
    pooled: tuple[str, ...]
    train_langs: tuple[str, ...]  # the source, then the pooled languages
    eval_langs: tuple[str, ...]  # the training languages first
    held_out: tuple[str, ...]  # in neither regime's training set

    @property
    def regimes(self) -> list[str]:
        return [self.source, "+".join(self.pooled)]

    @property
    def compared(self) -> tuple[str, ...]:
        """The languages the differences are over: the held-out targets, or (none held out)
        every scored language but the source."""
        return self.held_out or tuple(g for g in self.eval_langs if g != self.source)


class CalibrationExperiment(Experiment[CalibrationConfig, "_HeadJob"]):
    """Both regimes' heads, scored and temperature-scaled on every language."""

    name = "calibration"
    levels = ("word",)
    other_levels_hint = (" (calibration trains token-level heads, linear and DLFA: use a "
                         "word-level task such as pos, ner, panx, udpos)")  # fmt: skip
    bins = Table()  # the jobs' reliability bins, set aside by `aggregate` for `render`
    pooled_cap: int | None = None  # each pooled language's training words (set by `jobs`)

    @functools.cached_property
    def plan(self) -> _Plan:
        cfg = self.config
        task = run_task(cfg.task, cfg.train_split)
        source = cfg.source or task.default_source
        pooled = tuple(dict.fromkeys(cfg.pooled))
        data_dir = cfg.paths.data_dir  # None: the hub; a task file's root wins
        for lang in (source, *pooled):
            check_language(task, lang, data_dir, cfg.treebanks)
        if len(pooled) < 2:
            raise ProbeError(f"--pooled needs two or more languages, got {','.join(pooled)}")
        train_langs = tuple(dict.fromkeys((source, *pooled)))
        found = expand_languages(task, cfg.langs, data_dir, cfg.treebanks)
        langs = tuple(dict.fromkeys((*train_langs, *found)))
        held_out = tuple(lang for lang in langs if lang not in train_langs)
        return _Plan(source, pooled, train_langs, langs, held_out)

    def source_lang(self, task: Task) -> str:
        return self.plan.source

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        cfg, plan = self.config, self.plan
        splits = task.run_splits
        cap, seed = cfg.max_sentences, cfg.seeds[0]
        requests = [
            ExtractRequest(
                task.name,
                plan.train_langs,
                splits,
                max_sentences=cap,
                split_caps=train_caps(task, cfg.max_train_words),
                seed=seed,
                treebanks=cfg.treebanks,
            )
        ]
        if plan.held_out:
            requests.append(ExtractRequest(task.name, plan.held_out, (task.eval_split,),
                                           treebanks=cfg.treebanks,
                                           max_sentences=cap, seed=seed))  # fmt: skip
        return ensure_cached(cfg.spec, requests, cfg.options, cfg.paths, progress=progress)

    def context(self, task: Task, source: str, cache: CacheHandle | None) -> Context:
        assert cache is not None
        return Context(task, source, self.plan.eval_langs, cache, cache.n_layers)

    def split_use(self, ctx: Context) -> SplitUse:
        """Both regimes' training languages, against every scored language (the leakage
        guard)."""
        return SplitUse.zero_shot(ctx.task, self.plan.train_langs, ctx.langs)

    def jobs(self, ctx: Context) -> list[tuple[str, _HeadJob]]:
        """Per regime and seed, a job per layer's probe and one for DLFA; the regime's first
        job also reports its training words. Item statistics (for the intervals) come from
        the heads the differences compare: DLFA, the last layer and layer k (every layer
        when k is chosen per seed, "best")."""
        cfg, plan, cache = self.config, self.plan, ctx.cache
        assert cache is not None
        fuse = resolve_fuse_layer(cfg.fuse_layer, ctx.n_layers)
        root = cache.root.resolve()  # absolute: a job may run in another directory
        cap = cfg.max_train_words
        if cfg.match_size:  # the pooled head gets as many words as the source's, split evenly
            cap = max(1, _words(ctx.task, root, cache.key, plan.source, cfg) // len(plan.pooled))
        self.pooled_cap = cap
        regimes = (
            (plan.source, (plan.source,), cfg.max_train_words),
            (plan.regimes[1], plan.pooled, cap),
        )
        last = ctx.n_layers - 1
        jobs = []
        for regime, langs, words in regimes:
            for seed in cfg.seeds:
                job = _HeadJob(ctx.task.name, root, cache.key, regime, langs, words, ctx.langs,
                               "linear", 0, fuse, True, cfg, seed, plan.compared)  # fmt: skip
                first = seed == cfg.seeds[0]
                jobs += [(f"{regime}-linear-{i}-seed-{seed}",
                          replace(job, layer=i, first=first and i == 0,
                                  item_langs=plan.compared if i == last or (
                                      fuse is not None and fuse in ("best", i)) else ()))
                         for i in range(ctx.n_layers)]  # fmt: skip
                if fuse is not None:
                    jobs.append((f"{regime}-dlfa-seed-{seed}",
                                 replace(job, kind="dlfa", first=False)))  # fmt: skip
        return jobs

    @staticmethod
    def job_function() -> Callable[[_HeadJob], JobOutput]:
        return run_head_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """The jobs' rows in job order and the held-out means (per seed), their seed means
        and sds, and the differences with their intervals; the reliability bins (of the
        first seed) are kept aside for reliability.json (`render`), not in the results."""
        cfg, plan = self.config, self.plan
        every = Table(row for rows in parts.values() for row in rows)
        self.bins = every.filter(metric=is_bin, seed=cfg.seeds[0])
        rows = list(every.filter(metric=lambda m: not is_bin(m)))
        rows += _held_out_means(ctx.task, rows, plan.held_out)
        boot = PairedBootstrap(cfg.n_boot, seed=cfg.seeds[0])
        compared = differences(ctx.task, rows, ctx.items, boot, plan, ctx.n_layers)
        return rows + seed_means(rows) + compared

    def subsets(self, ctx: Context) -> dict[str, Any]:
        """The source regime's subsets (the base's) and each pooled language's size-matched
        sample."""
        assert ctx.cache is not None
        cfg, pooled = self.config, [(lang, self.pooled_cap) for lang in self.plan.pooled]
        return {**super().subsets(ctx),
                **training_subsets(ctx.task, ctx.cache, pooled, cfg.dev_fraction,
                                   cfg.seeds[0])}  # fmt: skip

    def training_sizes(self, ctx: Context) -> dict[str, int]:
        """What each regime's heads train on: the source alone, then every pooled language at
        the size-matched cap (the summary's "trained on" lines name the regime)."""
        assert ctx.cache is not None
        cfg, task, plan = self.config, ctx.task, self.plan
        sizes = {f"{where} ({plan.source} regime)": n
                 for where, n in super().training_sizes(ctx).items()}  # fmt: skip
        open_split = opener(ctx.cache.root, ctx.cache.key, task)
        for lang in plan.pooled:
            train, dev = train_dev(task, open_split, lang, self.pooled_cap, cfg.dev_fraction,
                                   cfg.seeds[0])  # fmt: skip
            sizes[f"{lang} {task.train_split} ({plan.regimes[1]} regime)"] = len(train.labels)
            train.reader.close()
            dev.reader.close()
        return sizes

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg, task = self.config, ctx.task
        return {
            **{k: v for k, v in asdict(cfg).items() if k not in _NOT_SETTINGS},
            "dlfa_recipe": asdict(cfg.dlfa_recipe),  # what DLFA trained with
            # {field: [probes, DLFA]}; {} = one recipe for every head of the run
            "recipe_differences": {
                k: list(v) for k, v in recipe_differences(cfg.train, cfg.dlfa_recipe).items()
            },
            "compared_on": list(self.plan.compared),  # the differences' languages
            "pooled": list(self.plan.pooled),
            "held_out": list(self.plan.held_out),
            "dev_split": task.dev_split or f"{cfg.dev_fraction:.0%} of {task.train_split}",
            "temperature_fit": "one T per head, NLL on that head's own dev split(s), LBFGS on "
            "log T",
            "subsets": "seeded random samples of whole sentences, stratified by genre where ids "
            "carry it (probe.data.subsets); ids in subsets.json",
        }

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        cfg, plan = self.config, self.plan
        design = design_line(ctx.task, plan.source, plan.pooled, self.pooled_cap,
                             cfg.match_size, cfg.max_train_words)  # fmt: skip
        return render_calibration(ctx.task, rows, self.bins, plan.regimes, ctx.langs,
                                  plan.held_out, ctx.n_layers, directory, ctx.model_key,
                                  design=design, recipe=recipe_line(cfg.train, cfg.dlfa_recipe),
                                  seeds=cfg.seeds, compared=plan.compared)  # fmt: skip


def _words(task: Task, root: Path, key: str, source: str, cfg: CalibrationConfig) -> int:
    """Words (train + dev) the source-only regime trains on."""
    train, dev = train_dev(task, opener(root, key, task), source, cfg.max_train_words,
                           cfg.dev_fraction, cfg.seeds[0])  # fmt: skip
    words = n_words([train, dev])
    train.reader.close()
    dev.reader.close()
    return words


# --- one head of one regime --------------------------------------------------------------------


@dataclass(frozen=True)
class _HeadJob:
    """One head of one regime: picklable names and paths; the worker opens the cache."""

    task: str
    root: Path
    key: str
    regime: str  # `en`, `en+de+fr`
    train_langs: tuple[str, ...]
    max_train_words: int | None  # per training language
    eval_langs: tuple[str, ...]
    kind: str  # linear | dlfa
    layer: int  # the probed layer (linear)
    fuse: FuseLayer  # DLFA's k, or "best"
    first: bool  # the regime's first job: reports the regime's training words
    config: CalibrationConfig
    seed: int = 0  # the training seed (data are drawn with config.seeds[0])
    item_langs: tuple[str, ...] = ()  # languages whose item statistics the job returns


def run_head_job(job: _HeadJob) -> JobOutput:
    """Train one head on its regime's data with one seed; fit its T on the regime's dev
    data; score it on every language before and after scaling."""
    cfg = job.config
    task = run_task(job.task, cfg.train_split)
    open_split = opener(job.root, job.key, task)
    pairs = [train_dev(task, open_split, lang, job.max_train_words, cfg.dev_fraction,
                       cfg.seeds[0]) for lang in job.train_langs]  # fmt: skip
    train, dev = [t for t, _ in pairs], [d for _, d in pairs]
    evals = {lang: open_split(lang, task.eval_split) for lang in job.eval_langs}
    n_classes = len(task.labels)
    rows: list[Row | ItemScores] = []
    if job.first:
        rows.append(Row(f"linear@{job.regime}", "-", "dev", "train_words", float(n_words(train)),
                        config=job.regime, subset="dev"))  # fmt: skip
    try:
        if job.kind == "linear":
            spec = HeadSpec.linear(job.layer)
            recipe = dataclasses.replace(cfg.train, seed=job.seed)
            head = train_head(spec, train, dev, n_classes, recipe).head
        else:
            assert job.fuse is not None
            n_layers = train[0].reader.n_layers
            recipe = dataclasses.replace(cfg.dlfa_recipe, seed=job.seed)
            spec, result, _ = fit_dlfa(job.fuse, n_layers, train, dev, n_classes, recipe,
                                       cfg.reduction)  # fmt: skip
            head = result.head
        rows += _evaluate(task, spec, head, job.regime, dev, evals, cfg.n_bins, job.seed,
                          job.item_langs)  # fmt: skip
    finally:
        for split in (*train, *dev, *evals.values()):
            split.reader.close()
    return rows


def _evaluate(
    task: Task, spec: HeadSpec, head: Any, regime: str, dev: Sequence[CachedSplit],
    evals: dict[str, CachedSplit], n_bins: int, seed: int | None = None,
    item_langs: Sequence[str] = (),
) -> list[Row | ItemScores]:  # fmt: skip
    """Fit T on the regime's dev data, then score every language before and after scaling;
    on `item_langs`, the item statistics of the task metric and of ECE (for intervals)."""
    name = f"{spec.kind}@{regime}"
    typed: dict[str, Any] = {"layers": tuple(spec.layers), "config": regime,
                             "seed": seed}  # (k, last): k < last  # fmt: skip
    dev_probs = predict(spec, head, dev)
    dev_gold = np.concatenate([d.labels for d in dev])
    temperature = fit_temperature(log_probs(dev_probs), dev_gold)
    dev_scaled = apply_temperature(log_probs(dev_probs), temperature)
    rows: list[Row | ItemScores] = [
        Row(name, spec.name, "dev", "temperature", temperature, subset="dev", **typed),
        Row(name, spec.name, "dev", "nll", nll(dev_probs, dev_gold), subset="dev", **typed),
        Row(name, spec.name, "dev", "nll_ts", nll(dev_scaled, dev_gold), subset="dev", **typed),
    ]
    for lang, split in evals.items():
        probs = predict(spec, head, [split])
        scaled = apply_temperature(log_probs(probs), temperature)
        before = reliability(probs, split.labels, n_bins)
        after = reliability(scaled, split.labels, n_bins)
        scored = score(task.metric, probs, split.labels, offsets=split.offsets,
                       label_names=task.labels, extra=task.extra_metrics)  # fmt: skip
        scored["ece"] = before.ece  # at --bins, as the diagrams and the ECE intervals bin
        for metric, value in scored.items():
            row = Row(name, spec.name, lang, metric, value, **typed)
            rows.append(row)
            if lang not in item_langs:
                continue
            if metric == task.metric and metric in ITEM_COLUMNS:
                pred = probs.argmax(axis=1)
                rows.append(scored_items(row, pred, split.labels, offsets=split.offsets,
                                         label_names=task.labels))  # fmt: skip
            elif metric == "ece" and split.offsets is not None:
                stats = ece_item_stats(probs, split.labels, split.offsets, n_bins)
                rows.append(ItemScores(row, stats))
        rows += [
            Row(name, spec.name, lang, "ece_ts", after.ece, **typed),
            Row(name, spec.name, lang, "nll", nll(probs, split.labels), **typed),
            Row(name, spec.name, lang, "nll_ts", nll(scaled, split.labels), **typed),
        ]
        rows += bin_rows(Row(name, spec.name, lang, "", 0.0, **typed), before, after)
    return rows


def _held_out_means(task: Task, rows: Sequence[Row], held_out: Sequence[str]) -> list[Row]:
    """The mean of each head's metrics over the held-out languages (all of them scored)."""
    if not held_out:
        return []
    metrics = {task.metric, *task.extra_metrics, "accuracy", "ece", "ece_ts", "nll", "nll_ts"}
    scored = Table(rows).filter(lang=lambda lang: lang in held_out, metric=lambda m: m in metrics,
                                subset="", group="")  # fmt: skip
    groups: dict[tuple[str, tuple[int, ...], str, int | None], list[Row]] = {}
    for r in scored:
        groups.setdefault((r.config, r.layers, r.metric, r.seed), []).append(r)
    return [
        replace(
            found[0],
            lang="held-out",
            value=float(np.mean([r.value for r in found])),
            group="held-out",
        )  # fmt: skip
        for found in groups.values()
        if len(found) == len(held_out)
    ]


# --- differences with intervals ----------------------------------------------------------------


def _is_dlfa(row: Row) -> bool:
    return len(row.layers) == 2


def _head_rows(rows: Table, regime: str, metric: str, langs: Sequence[str], pick: str,
               last: int) -> list[Row]:  # fmt: skip
    """Per-seed score rows of one head of a regime on `langs`: `pick` is "dlfa", "last" or
    "k" (the layer that seed's DLFA fused, its matched single-layer baseline)."""
    scored = rows.filter(config=regime, metric=metric, lang=lambda g: g in langs, subset="",
                         group="", stat="", seed=lambda s: s is not None)  # fmt: skip
    dlfa = [r for r in scored if _is_dlfa(r)]
    if pick == "dlfa":
        return dlfa
    if pick == "last":
        return [r for r in scored if r.layers == (last,)]
    k = {r.seed: r.layers[0] for r in dlfa}
    return [r for r in scored if not _is_dlfa(r) and r.seed in k and r.layers == (k[r.seed],)]


def differences(
    task: Task, rows: Sequence[Row], items: ItemSet, boot: PairedBootstrap, plan: _Plan,
    n_layers: int,
) -> list[Row]:  # fmt: skip
    """Task-metric and ECE differences with intervals (see the module note): per regime DLFA
    − last layer and DLFA − layer k; per head (last layer, DLFA) pooled − source-only."""
    table, last, langs = Table(rows), n_layers - 1, plan.compared
    source, pooled = plan.regimes
    out: list[Row] = []
    for metric in dict.fromkeys((task.metric, "ece")):
        comparisons = []
        for regime in plan.regimes:
            dlfa = _head_rows(table, regime, metric, langs, "dlfa", last)
            for pick in ("last", "k"):
                probe = _head_rows(table, regime, metric, langs, pick, last)
                comparisons.append((f"dlfa-{pick}", regime, dlfa, probe))
        for pick in ("last", "dlfa"):
            comparisons.append((f"pooled-source:{pick}", f"{pooled}-{source}",
                                _head_rows(table, pooled, metric, langs, pick, last),
                                _head_rows(table, source, metric, langs, pick, last)))  # fmt: skip
        for head, config, a, b in comparisons:
            if not a or not b or len(a) != len(b):
                continue
            like = Row(head, a[0].layer, "", metric, 0.0, layers=a[0].layers)
            out += delta_rows(a, b, items, boot, plan.source, like=like, config=config)
    return out

"""`probe calibration`: how well zero-shot confidences match accuracy, per language and layer.

Two training regimes are compared: an English-only head (the source language's training
split) and a multilingual head (the training splits of several languages pooled; with
`match_size` capped to the English head's word count, split evenly, so diversity rather
than data size is what differs). For each regime: a linear probe per layer and DLFA
(last, k). Every head is scored on every language's evaluation split: accuracy (or the task
metric), ECE, NLL and a reliability diagram. Temperature scaling: one T per head fitted by
NLL on that head's own dev data (the source dev split(s), never a target), then ECE/NLL
again on every language. Languages in neither regime's training set are the held-out
targets the two regimes are compared on. One job per (regime, head): `en-linear-3`,
`en+de+fr-dlfa`, each fitting its own temperature on its own dev data.

Result rows (results.csv): `config` is the regime (`en`, `en+de+fr`), `layers` (i,) or
DLFA's (k, last), lang the language scored, metric in {task metric, accuracy, ece, nll,
ece_ts, nll_ts}; subset `dev` (lang `dev`): `temperature`, `nll`/`nll_ts` (the fit) and
`train_words`; group `held-out` (lang `held-out`): the mean over held-out languages. The
legacy head column is `<kind>@<regime>` (`linear@en`). reliability.json holds every
diagram's bins (carried from the jobs as bin rows, which results.csv leaves out).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.calibration import (
    apply_temperature,
    fit_temperature,
    log_probs,
    nll,
    reliability,
)
from probe.analysis.metrics import score
from probe.data.discovery import check_language, expand_languages
from probe.data.tasks import Task, run_task
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment
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
    train: TrainConfig = field(default_factory=TrainConfig)
    dlfa_train: TrainConfig = DLFA_TRAINING
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    # --train-split; None = the task's own. `dev` is the small-data setting the shared data
    # needs for GSD (de/fr have no train split there); the dev set is then a hold-out.
    train_split: str | None = None
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank)


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
        cap, seed = cfg.max_sentences, cfg.train.seed
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
        """Per regime, a job per layer's probe and one for DLFA; the regime's first job also
        reports its training words."""
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
        jobs = []
        for regime, langs, words in regimes:
            job = _HeadJob(ctx.task.name, root, cache.key, regime, langs, words, ctx.langs,
                           "linear", 0, fuse, True, cfg)  # fmt: skip
            jobs += [(f"{regime}-linear-{i}", replace(job, layer=i, first=i == 0))
                     for i in range(ctx.n_layers)]  # fmt: skip
            if fuse is not None:
                jobs.append((f"{regime}-dlfa", replace(job, kind="dlfa", first=False)))
        return jobs

    @staticmethod
    def job_function() -> Callable[[_HeadJob], list[Row]]:
        return run_head_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """The jobs' rows in job order and the held-out means; the reliability bins are kept
        aside for reliability.json (`render`), not in the results table."""
        every = Table(row for rows in parts.values() for row in rows)
        self.bins = every.filter(metric=is_bin)
        rows = list(every.filter(metric=lambda m: not is_bin(m)))
        return rows + _held_out_means(ctx.task, rows, self.plan.held_out)

    def subsets(self, ctx: Context) -> dict[str, Any]:
        """The source regime's subsets (the base's) and each pooled language's size-matched
        sample."""
        assert ctx.cache is not None
        cfg, pooled = self.config, [(lang, self.pooled_cap) for lang in self.plan.pooled]
        return {**super().subsets(ctx),
                **training_subsets(ctx.task, ctx.cache, pooled, cfg.dev_fraction,
                                   cfg.train.seed)}  # fmt: skip

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
                                   cfg.train.seed)  # fmt: skip
            sizes[f"{lang} {task.train_split} ({plan.regimes[1]} regime)"] = len(train.labels)
            train.reader.close()
            dev.reader.close()
        return sizes

    def settings(self, ctx: Context) -> dict[str, Any]:
        cfg, task = self.config, ctx.task
        return {
            **{k: v for k, v in asdict(cfg).items() if k not in _NOT_SETTINGS},
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
                                  design=design)  # fmt: skip


def _words(task: Task, root: Path, key: str, source: str, cfg: CalibrationConfig) -> int:
    """Words (train + dev) the source-only regime trains on."""
    train, dev = train_dev(task, opener(root, key, task), source, cfg.max_train_words,
                           cfg.dev_fraction, cfg.train.seed)  # fmt: skip
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


def run_head_job(job: _HeadJob) -> list[Row]:
    """Train one head on its regime's data; fit its T on the regime's dev data; score it on
    every language before and after scaling."""
    cfg = job.config
    task = run_task(job.task, cfg.train_split)
    open_split = opener(job.root, job.key, task)
    pairs = [train_dev(task, open_split, lang, job.max_train_words, cfg.dev_fraction,
                       cfg.train.seed) for lang in job.train_langs]  # fmt: skip
    train, dev = [t for t, _ in pairs], [d for _, d in pairs]
    evals = {lang: open_split(lang, task.eval_split) for lang in job.eval_langs}
    n_classes = len(task.labels)
    rows = []
    if job.first:
        rows.append(Row(f"linear@{job.regime}", "-", "dev", "train_words", float(n_words(train)),
                        config=job.regime, subset="dev"))  # fmt: skip
    try:
        if job.kind == "linear":
            spec = HeadSpec.linear(job.layer)
            head = train_head(spec, train, dev, n_classes, cfg.train).head
        else:
            assert job.fuse is not None
            n_layers = train[0].reader.n_layers
            spec, result, _ = fit_dlfa(job.fuse, n_layers, train, dev, n_classes,
                                       cfg.dlfa_train, cfg.reduction)  # fmt: skip
            head = result.head
        rows += _evaluate(task, spec, head, job.regime, dev, evals, cfg.n_bins)
    finally:
        for split in (*train, *dev, *evals.values()):
            split.reader.close()
    return rows


def _evaluate(
    task: Task, spec: HeadSpec, head: Any, regime: str, dev: Sequence[CachedSplit],
    evals: dict[str, CachedSplit], n_bins: int,
) -> list[Row]:  # fmt: skip
    """Fit T on the regime's dev data, then score every language before and after scaling."""
    name = f"{spec.kind}@{regime}"
    typed: dict[str, Any] = {"layers": tuple(spec.layers), "config": regime}  # (k, last): k < last
    dev_probs = predict(spec, head, dev)
    dev_gold = np.concatenate([d.labels for d in dev])
    temperature = fit_temperature(log_probs(dev_probs), dev_gold)
    dev_scaled = apply_temperature(log_probs(dev_probs), temperature)
    rows = [
        Row(name, spec.name, "dev", "temperature", temperature, subset="dev", **typed),
        Row(name, spec.name, "dev", "nll", nll(dev_probs, dev_gold), subset="dev", **typed),
        Row(name, spec.name, "dev", "nll_ts", nll(dev_scaled, dev_gold), subset="dev", **typed),
    ]
    for lang, split in evals.items():
        probs = predict(spec, head, [split])
        scaled = apply_temperature(log_probs(probs), temperature)
        for metric, value in score(task.metric, probs, split.labels, offsets=split.offsets,
                                   label_names=task.labels,
                                   extra=task.extra_metrics).items():  # fmt: skip
            rows.append(Row(name, spec.name, lang, metric, value, **typed))
        before = reliability(probs, split.labels, n_bins)
        after = reliability(scaled, split.labels, n_bins)
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
    groups: dict[tuple[str, tuple[int, ...], str], list[Row]] = {}
    for r in scored:
        groups.setdefault((r.config, r.layers, r.metric), []).append(r)
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

"""`probe domain-shift`: train on one corpus of a language, score in-domain and out-of-domain.

For every language, heads are trained on the in-domain task's training split (for `pos`: EWT
dev for en, GSD dev for de/fr/es, IMST dev for tr; `dev_fraction` of it held out for early
stopping) and scored on that task's evaluation split (in-domain) and on the evaluation split
of every out-of-domain task that has the language (`pos-gum`: English GUM; `pos-pud`: the
PUD treebanks). Heads: a linear probe per layer, and DLFA fusing the last layer with layer k.
The drop is the in-domain score minus the out-of-domain score of the same head; comparing
DLFA's drop with the last-layer probe's asks whether fusion makes a head more robust to
domain shift. One recipe per comparison: every head of a run trains with the same
TrainConfig (`train`, default DLFA's: epochs, schedule, precision), unless `dlfa_train` gives
DLFA its own, and then the summary's `recipes differ` line and settings.json
`recipe_differences` say which fields differ. Beside DLFA (k, last) the table always has its
matched single-layer baselines, the last layer alone and layer k alone, trained alike: `last-D`
and `k-D` (a probe's drop minus DLFA's) tell "fusion" from "layer k" in one table. A language
whose training data (train plus dev) has fewer than
`small_train_words` words is flagged `small_train`: the flag is about the training-set size
here, not about how well-resourced the language is (`--max-train-words` simulates a small
training set anywhere: a seeded, genre-stratified random sample of whole sentences,
`probe.data.subsets`, whose ids subsets.json records).
Where sentence ids encode a genre (EWT, GUM, PUD) every evaluation set is also scored per
genre, a finer-grained shift read from the same predictions. One job per (language, seed):
`en-seed-0`; seeds vary only training (init, order, dropout): the hold-out and any
--max-train-words sample are drawn with the first seed.

Uncertainty (probe.analysis.bootstrap, docs/guide.md "Seeds and intervals"): a drop compares
one head's scores on two different test sets, so its interval is the difference of two
independent item bootstraps (`unpaired_delta`; the head's seeds redrawn once for both); a
difference of two heads' drops is paired within each test set (`drop_delta`).

Result rows (results.csv): `config` is the language whose heads a row is about, `eval_task`
the out-of-domain task scored ("" in-domain), `subset` a genre, `layers` (i,) or DLFA's
(k, last); the legacy `lang` column spells the set `<lang>:<task>` (`en:pos-gum`) or
`<lang>:<task>#<genre>`.
`drop_<metric>` rows sit on the out-of-domain set and hold in-domain minus out-of-domain; per
language, `train_words` and `small_train` (1/0) rows have layer "-", and DLFA's `dev_loss`
rows give the loss of every k tried. Score, drop and dev-loss rows come per seed (`seed`), as
a mean (seed None; a drop's mean carries its 95% interval in ci_low/ci_high) and, with several
seeds, an sd row (stat "sd", metric + "_sd"). `dropdiff_<metric>` rows (head `last-D` or `k-D`,
layers DLFA's) hold a probe's drop minus DLFA's, per set and over all sets (lang "all", group
"sets"), with their interval.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.analysis.bootstrap import N_BOOT, PairedBootstrap, drop_delta, unpaired_delta
from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import score
from probe.data.discovery import expand_languages, languages_for
from probe.data.reading import has_split
from probe.data.sources.conllu import genre_of
from probe.data.tasks import (
    Task,
    get_task,
    run_task,
)
from probe.errors import ProbeError
from probe.experiments.base import Context, Experiment, check_seeds
from probe.experiments.leakage import SplitRef, SplitUse
from probe.experiments.subset_record import extracted_subsets, training_subsets
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from probe.results.gains import SD
from probe.results.items import ItemScores, ItemSet, JobOutput, scored_items
from probe.results.render.domain_shift import render_domain_shift
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
from probe.train.splits import CachedSplit, opener, subset, train_caps, train_dev

log = logging.getLogger(__name__)

# Config fields recorded elsewhere: by the cache handle's settings, or by the base (the
# resolved train split).
_CACHE_PART = ("spec", "options", "paths", "task", "langs", "train_split")


@dataclass(frozen=True)
class DomainShiftConfig:
    """What one `probe domain-shift` run computes. `task` is the in-domain task, `langs` the
    languages to run (those without an out-of-domain corpus or one of the task's splits are
    skipped: settings.json `skipped` and the summary say which and why)."""

    spec: ExtractSpec
    task: str
    langs: tuple[str, ...] = ("all",)
    max_sentences: int | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    paths: CachePaths = field(default_factory=CachePaths)
    out_tasks: tuple[str, ...] = ("pos-gum", "pos-pud")
    fuse_layer: FuseLayer = "best"  # DLFA (last, k): k, "best" by dev loss, or None (no DLFA)
    reduction: int = 4
    genres: bool = True
    # One recipe per comparison: every head trains with `train` (default DLFA's) unless
    # `dlfa_train` gives DLFA its own (the summary then says which fields differ).
    train: TrainConfig = DLFA_TRAINING
    dlfa_train: TrainConfig | None = None
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds: every head trains once per seed
    n_boot: int = N_BOOT  # bootstrap replicates of every interval
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank) of the in-domain task
    small_train_words: int = 15_000
    # --train-split; None = the task's own. `dev` is the small-data setting the shared data
    # needs for GSD (de/fr/es have no train split there); the dev set is then a hold-out.
    train_split: str | None = None

    def __post_init__(self) -> None:
        check_seeds(self.seeds)

    @property
    def dlfa_recipe(self) -> TrainConfig:
        """How DLFA trains: `dlfa_train` when given, else the one recipe of every head."""
        return self.dlfa_train if self.dlfa_train is not None else self.train


class DomainShiftExperiment(Experiment[DomainShiftConfig, "_LanguageJob"]):
    """Per language, every layer's probe and DLFA trained in-domain, scored in and out."""

    name = "domain-shift"
    levels = ("word",)
    other_levels_hint = " (the heads compared tag words: pos, pos-gum, pos-gsd, ner, ...)"

    @functools.cached_property
    def planned(self) -> Planned:
        """Language -> the out-of-domain tasks with data for it, and the languages skipped
        with the reason; a bad setup is refused here, before anything is extracted."""
        task = run_task(self.config.task, self.config.train_split)
        data_dir = self.config.paths.data_dir  # None: the hub; a task file's root wins
        outs = _out_tasks(task, self.config.out_tasks)
        picks = self.config.treebanks
        langs = expand_languages(task, self.config.langs, data_dir, picks)
        return _plan(task, outs, langs, data_dir, picks)

    @property
    def plan(self) -> dict[str, tuple[str, ...]]:
        """Language -> the out-of-domain tasks it is scored on (the languages that run)."""
        return self.planned.langs

    @property
    def skipped(self) -> dict[str, str]:
        """Language -> why it does not run (settings.json `skipped`, the summary's `skipped:`)."""
        return self.planned.skipped

    def training_languages(self, ctx: Context) -> tuple[str, ...]:
        """Every planned language trains its own heads (size-matched by --max-train-words)."""
        return ctx.langs

    def source_lang(self, task: Task) -> str:
        """No language is the source here (each trains its own heads): the first one planned
        stands in where the base asks for one."""
        return next(iter(self.plan))

    def extract(self, task: Task, source: str, progress: bool) -> CacheHandle:
        """In-domain train/dev/eval splits of every planned language, and each out-of-domain
        task's eval split: one extraction call, so one key and one encoder load."""
        cfg, plan = self.config, self.plan
        splits = task.run_splits
        cap, seed = cfg.max_sentences, cfg.seeds[0]
        requests = [
            ExtractRequest(
                task.name,
                tuple(plan),
                splits,
                max_sentences=cap,
                split_caps=train_caps(task, cfg.max_train_words),
                seed=seed,
                treebanks=cfg.treebanks,
            )
        ]
        for name in dict.fromkeys(o for outs in plan.values() for o in outs):
            langs = tuple(lang for lang, outs in plan.items() if name in outs)
            requests.append(ExtractRequest(name, langs, (get_task(name).eval_split,),
                                           max_sentences=cap, seed=seed))  # fmt: skip
        return ensure_cached(cfg.spec, requests, cfg.options, cfg.paths, progress=progress)

    def context(self, task: Task, source: str, cache: CacheHandle | None) -> Context:
        assert cache is not None
        return Context(task, source, tuple(self.plan), cache, cache.n_layers)

    def split_use(self, ctx: Context) -> SplitUse:
        """Every planned language's in-domain train/dev, against its in-domain and each
        out-of-domain evaluation split (the leakage guard)."""
        use = SplitUse.zero_shot(ctx.task, tuple(self.plan), tuple(self.plan))
        outs = tuple(SplitRef(name, lang, get_task(name).eval_split)
                     for lang, names in self.plan.items() for name in names)  # fmt: skip
        return use + SplitUse((), outs)

    def jobs(self, ctx: Context) -> list[tuple[str, _LanguageJob]]:
        assert ctx.cache is not None
        root = ctx.cache.root.resolve()  # absolute: a job may run in another directory
        return [(_job_name(lang, seed),
                 _LanguageJob(ctx.task.name, outs, lang, root, ctx.cache.key, self.config, seed))
                for lang, outs in self.plan.items() for seed in self.config.seeds]  # fmt: skip

    @staticmethod
    def job_function() -> Callable[[_LanguageJob], JobOutput]:
        return run_language_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        """Per-seed rows and drops, their seed means and sds, the drops' intervals and the
        matched comparisons (last-D, k-D) with theirs."""
        cfg = self.config
        rows = [row for lang in self.plan for seed in cfg.seeds
                for row in parts[_job_name(lang, seed)]]  # fmt: skip
        per_seed = rows + drops(rows, ctx.task, self.plan)
        boot = PairedBootstrap(cfg.n_boot, seed=cfg.seeds[0])
        means = seed_means(per_seed)
        means = drop_intervals(means, per_seed, ctx.items, boot, ctx.task, self.plan)
        compared = compare_drops(per_seed, ctx.items, boot, ctx.task, self.plan, ctx.n_layers)
        return per_seed + means + compared

    def subsets(self, ctx: Context) -> dict[str, Any]:
        """What extraction sampled and every language's training subset (cap, hold-out)."""
        assert ctx.cache is not None
        cfg = self.config
        trains = [(lang, cfg.max_train_words) for lang in self.plan]
        return {**extracted_subsets(ctx.cache),
                **training_subsets(ctx.task, ctx.cache, trains, cfg.dev_fraction,
                                   cfg.seeds[0])}  # fmt: skip

    def settings(self, ctx: Context) -> dict[str, Any]:
        own = {k: v for k, v in asdict(self.config).items() if k not in _CACHE_PART}
        outs = dict.fromkeys(self.config.out_tasks)
        cfg = self.config
        return {
            **own,
            "dlfa_recipe": asdict(cfg.dlfa_recipe),  # what DLFA trained with
            # {field: [probes, DLFA]}; {} = one recipe for every head of the run
            "recipe_differences": {
                k: list(v) for k, v in recipe_differences(cfg.train, cfg.dlfa_recipe).items()
            },
            "source": None,  # every language trains its own heads
            "languages": {lang: list(names) for lang, names in self.plan.items()},
            "skipped": dict(self.skipped),  # asked for (or found) but not run, with the reason
            "in_domain_split": ctx.task.eval_split,
            "out_domain_splits": {name: get_task(name).eval_split for name in outs},
            "subsets": "seeded random samples of whole sentences, stratified by genre where ids "
            "carry it (probe.data.subsets); ids in subsets.json",
        }

    def directory_name(self, ctx: Context) -> str:
        return self.name  # no source language names a domain-shift run

    def render(self, ctx: Context, rows: Table, directory: Path) -> str:
        return render_domain_shift(ctx.task, rows, self.plan, ctx.n_layers, directory,
                                   ctx.model_key, dev_fraction=self.config.dev_fraction,
                                   small_train_words=self.config.small_train_words,
                                   max_train_words=self.config.max_train_words,
                                   skipped=self.skipped,
                                   recipe=recipe_line(self.config.train,
                                                      self.config.dlfa_recipe),
                                   seeds=self.config.seeds)  # fmt: skip


# --- planning ----------------------------------------------------------------------------------


def _out_tasks(task: Task, names: tuple[str, ...]) -> list[Task]:
    """The out-of-domain tasks, each word-level with the in-domain task's labels and metric."""
    if not names:
        raise ProbeError("name at least one out-of-domain task (--out-tasks pos-gum,pos-pud)")
    outs = []
    for name in dict.fromkeys(names):
        out = get_task(name)
        if out.name == task.name:
            raise ProbeError(
                f"out-of-domain task {name!r} is the in-domain task itself; name another corpus"
            )
        if out.level != "word" or out.labels != task.labels or out.metric != task.metric:
            raise ProbeError(
                f"out-of-domain task {name!r} does not share {task.name!r}'s label set and "
                f"metric ({task.metric}); pick a task with the same tags (e.g. pos-gum, pos-pud "
                "for pos)"
            )
        outs.append(out)
    return outs


@dataclass(frozen=True)
class Planned:
    """The languages that run (-> their out-of-domain tasks) and those skipped (-> why)."""

    langs: dict[str, tuple[str, ...]]
    skipped: dict[str, str]


def _plan(
    task: Task,
    outs: list[Task],
    langs: tuple[str, ...],
    data_dir: Path | None,
    treebanks: tuple[str, ...] = (),
) -> Planned:
    plan: dict[str, tuple[str, ...]] = {}
    skipped: dict[str, str] = {}
    on_disk = {o.name: languages_for(o, data_dir) for o in outs}  # found locally (or hub)
    for lang in langs:
        found = tuple(o.name for o in outs if lang in on_disk[o.name])
        if not found:
            skipped[lang] = f"no out-of-domain corpus among {', '.join(o.name for o in outs)}"
            log.warning("%s: %s; skipped", lang, skipped[lang])
            continue
        missing = [s for s in task.run_splits
                   if not has_split(task, data_dir, lang, s, treebanks)]  # fmt: skip
        if missing:
            skipped[lang] = _missing_reason(task, missing)
            log.warning("%s: %s; skipped", lang, skipped[lang])
            continue
        plan[lang] = found
    if not plan:
        why = "; ".join(f"{lang}: {reason}" for lang, reason in skipped.items())
        raise ProbeError(
            f"no language of {', '.join(langs)} has both {task.name!r} training data and an "
            f"out-of-domain corpus among {', '.join(o.name for o in outs)} ({why})"
        )
    return Planned(plan, skipped)


def _missing_reason(task: Task, missing: Sequence[str]) -> str:
    """Why a language without one of the task's splits is skipped, and the way round it
    when the missing split is the training split and the dev split is there to train on."""
    reason = f"{task.name} has no {missing[0]} split here"
    if missing[0] == task.train_split and task.dev_split and task.dev_split not in missing:
        reason += f" (--train-split {task.dev_split} trains on its {task.dev_split} split)"
    return reason


# --- one language: training and scoring --------------------------------------------------------


@dataclass(frozen=True)
class _LanguageJob:
    """One language's heads: picklable names and paths; the worker opens the cache itself."""

    task: str
    outs: tuple[str, ...]  # the out-of-domain tasks scored in this language
    lang: str
    root: Path
    key: str
    config: DomainShiftConfig
    seed: int = 0  # the training seed (data are drawn with config.seeds[0])


def _job_name(lang: str, seed: int) -> str:
    return f"{lang}-seed-{seed}"


def run_language_job(job: _LanguageJob) -> JobOutput:
    """Train every layer's probe and DLFA on the language's in-domain data with one seed;
    score each on the in-domain and every out-of-domain evaluation set (and their genres),
    with the item statistics of every whole set's score (for the intervals)."""
    cfg, lang, seed = job.config, job.lang, job.seed
    task = run_task(job.task, cfg.train_split)
    open_in = opener(job.root, job.key, task)
    train, dev = train_dev(task, open_in, lang, cfg.max_train_words, cfg.dev_fraction,
                           cfg.seeds[0])  # fmt: skip
    evals = {task.name: open_in(lang, task.eval_split)}
    for name in job.outs:
        out = get_task(name)
        evals[name] = opener(job.root, job.key, out)(lang, out.eval_split)
    words = n_words([train, dev])
    rows: list[Row | ItemScores] = []
    if seed == cfg.seeds[0]:  # the data are the same for every seed: said once
        rows += [
            Row("data", "-", lang, "train_words", float(words), config=lang),
            Row("data", "-", lang, "small_train", float(words < cfg.small_train_words),
                config=lang),
        ]  # fmt: skip
    n_layers = train.reader.n_layers
    n_classes = len(task.labels)
    fuse = resolve_fuse_layer(cfg.fuse_layer, n_layers)
    probes = dataclasses.replace(cfg.train, seed=seed)
    try:
        for layer in range(n_layers):
            spec = HeadSpec.linear(layer)
            result = train_head(spec, [train], [dev], n_classes, probes)
            rows += score_sets(task, spec, result.head, lang, evals, cfg.genres, seed)
        if fuse is not None:
            dlfa = dataclasses.replace(cfg.dlfa_recipe, seed=seed)
            spec, result, dev_loss = fit_dlfa(fuse, n_layers, [train], [dev], n_classes, dlfa,
                                              cfg.reduction)  # fmt: skip
            last = n_layers - 1
            rows += [Row("dlfa", f"{k},{last}", lang, "dev_loss", v, layers=(k, last),
                         config=lang, seed=seed)
                     for k, v in dev_loss.items()]  # fmt: skip
            rows += score_sets(task, spec, result.head, lang, evals, cfg.genres, seed)
    finally:
        for split in (train, dev, *evals.values()):
            split.reader.close()
    return rows


def genre_groups(split: CachedSplit) -> dict[str, np.ndarray]:
    """Sentence indices per genre read off the cached sentence ids; {} unless two or more."""
    if split.rows is not None:
        return {}
    groups: dict[str, list[int]] = {}
    for i, sent_id in enumerate(split.reader.strings("sentence_ids")):
        genre = genre_of({"sent_id": sent_id})
        if genre is not None:
            groups.setdefault(genre, []).append(i)
    if len(groups) < 2:
        return {}
    return {g: np.asarray(items, dtype=np.int64) for g, items in sorted(groups.items())}


def score_sets(
    task: Task, spec: HeadSpec, head: Any, lang: str, evals: dict[str, CachedSplit], genres: bool,
    seed: int | None = None,
) -> list[Row | ItemScores]:  # fmt: skip
    """Score one trained head on every evaluation set (and, optionally, each set's genres);
    every whole set's score that has item statistics (ITEM_COLUMNS) also gets them."""
    layers = tuple(spec.layers)  # (i,) for a probe, (k, last) for DLFA (k < last)
    rows: list[Row | ItemScores] = []
    for name, split in evals.items():
        where: dict[str, Any] = {
            "layers": layers,
            "config": lang,
            "eval_task": "" if name == task.name else name,
            "seed": seed,
        }
        probs = predict(spec, head, [split])
        for metric, value in score(task.metric, probs, split.labels, offsets=split.offsets,
                                   label_names=task.labels,
                                   extra=task.extra_metrics).items():  # fmt: skip
            row = Row(spec.kind, spec.name, f"{lang}:{name}", metric, value, **where)
            rows.append(row)
            if metric in ITEM_COLUMNS:
                pred = probs.argmax(axis=1)
                rows.append(scored_items(row, pred, split.labels, offsets=split.offsets,
                                         label_names=task.labels))  # fmt: skip
        for genre, items in (genre_groups(split) if genres else {}).items():
            part = subset(split, items)
            assert part.rows is not None
            value = score(task.metric, probs[part.rows], part.labels, offsets=part.offsets,
                          label_names=task.labels)[task.metric]  # fmt: skip
            rows.append(Row(spec.kind, spec.name, f"{lang}:{name}#{genre}", task.metric, value,
                            subset=genre, **where))  # fmt: skip
    return rows


def drops(rows: Sequence[Row], task: Task, plan: Mapping[str, Sequence[str]]) -> list[Row]:
    """In-domain minus out-of-domain score of the same head (and seed), per out-of-domain set
    (whole sets only: genre rows are no domain)."""
    metric = task.metric
    scored = Table(rows).filter(metric=metric, subset="", stat="")
    value = {(r.head, r.layers, r.config, r.eval_task, r.seed): r for r in scored}
    heads = dict.fromkeys((r.head, r.layers, r.seed) for r in scored)
    out = []
    for lang, outs in plan.items():
        for head, layers, seed in heads:
            inside = value.get((head, layers, lang, "", seed))
            for name in outs:
                outside = value.get((head, layers, lang, name, seed))
                if inside is not None and outside is not None:
                    out.append(Row(head, inside.layer, outside.lang, f"drop_{metric}",
                                   inside.value - outside.value, layers=layers, config=lang,
                                   eval_task=name, seed=seed))  # fmt: skip
    return out


# --- seeds and intervals -----------------------------------------------------------------------


def _mean_key(row: Row) -> tuple[Any, ...]:
    """What one number is of, across seeds: DLFA's score and drop rows of a language are one
    head whatever k each seed chose ("best"); its dev_loss rows stay per k."""
    dlfa = row.head.split("@")[0] == "dlfa"  # `dlfa`, or calibration's `dlfa@<regime>`
    layers = None if dlfa and row.metric != "dev_loss" else row.layers
    return (row.head, layers, row.lang, row.metric, row.config, row.eval_task, row.subset,
            row.group)  # fmt: skip


def seed_means(rows: Sequence[Row]) -> list[Row]:
    """The mean over seeds (seed None) of every per-seed row, and with two or more seeds its
    sd (stat "sd", metric + "_sd", ddof 1). A DLFA mean takes the layers most seeds chose."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        if r.seed is not None and r.stat == "":
            groups.setdefault(_mean_key(r), []).append(r)
    out = []
    for found in groups.values():
        layers = max(dict.fromkeys(r.layers for r in found),
                     key=lambda ls: sum(r.layers == ls for r in found))  # fmt: skip
        like = next(r for r in found if r.layers == layers)
        values = [r.value for r in found]
        mean = dataclasses.replace(like, value=float(np.mean(values)), seed=None)
        out.append(mean)
        if len(values) > 1:
            out.append(dataclasses.replace(mean, metric=f"{mean.metric}_sd", stat=SD,
                                           value=float(np.std(values, ddof=1))))  # fmt: skip
    return out


def _system(rows: Sequence[Row], items: ItemSet) -> dict[str, list[np.ndarray]] | None:
    """{set: [item statistics per seed]} of per-seed score rows; None if any lacks them."""
    if not rows or not items.covers(rows):
        return None
    return items.systems(rows)


def _scores(per_seed: Table, metric: str, lang: str, eval_task: str) -> dict[Any, list[Row]]:
    """Per head (("linear", layer) or ("dlfa", None)), its per-seed whole-set score rows."""
    out: dict[Any, list[Row]] = {}
    for r in per_seed.filter(metric=metric, config=lang, eval_task=eval_task, subset="",
                             seed=lambda s: s is not None):  # fmt: skip
        out.setdefault((r.head, None if r.head == "dlfa" else r.layers), []).append(r)
    return out


def drop_intervals(
    means: list[Row], per_seed: Sequence[Row], items: ItemSet, boot: PairedBootstrap, task: Task,
    plan: Mapping[str, Sequence[str]],
) -> list[Row]:  # fmt: skip
    """The mean drop rows with their 95% interval (`unpaired_delta`: the in-domain and the
    out-of-domain set are different test sets); rows without item statistics keep none."""
    metric, table = task.metric, Table(per_seed)
    intervals: dict[tuple[Any, ...], tuple[float, float]] = {}
    for lang, outs in plan.items():
        inside = _scores(table, metric, lang, "")
        for name in outs:
            outside = _scores(table, metric, lang, name)
            for head, rows_in in inside.items():
                sys_in, sys_out = _system(rows_in, items), _system(outside.get(head, []), items)
                if sys_in is None or sys_out is None:
                    continue
                got = unpaired_delta(boot, sys_in, sys_out, metric, list(sys_in), list(sys_out))
                intervals[(*head, lang, name)] = (got.low, got.high)
    out = []
    for r in means:
        key = (r.head, None if r.head == "dlfa" else r.layers, r.config, r.eval_task)
        if r.metric == f"drop_{metric}" and r.stat == "" and key in intervals:
            low, high = intervals[key]
            r = dataclasses.replace(r, ci_low=low, ci_high=high)
        out.append(r)
    return out


def compare_drops(
    per_seed: Sequence[Row], items: ItemSet, boot: PairedBootstrap, task: Task,
    plan: Mapping[str, Sequence[str]], n_layers: int,
) -> list[Row]:  # fmt: skip
    """DLFA's matched baselines: per out-of-domain set and over all of them, the last layer's
    drop minus DLFA's (`last-D`) and layer k's minus DLFA's (`k-D`, k the layer DLFA fused
    in that seed), each the seed mean with its paired interval (`drop_delta`) and sd.

    > 0: DLFA drops less than that probe. last-D > 0 with k-D near 0 says the robustness is
    layer k's, not fusion's."""
    metric, table = task.metric, Table(per_seed)
    last = n_layers - 1
    pairs = [(lang, name) for lang, outs in plan.items() for name in outs]
    per_pair: dict[str, dict[tuple[str, str], tuple[list[Row], list[Row], list[Row], list[Row]]]]
    per_pair = {"last-D": {}, "k-D": {}}
    for lang, name in pairs:
        inside, outside = _scores(table, metric, lang, ""), _scores(table, metric, lang, name)
        dlfa_in, dlfa_out = inside.get(("dlfa", None), []), outside.get(("dlfa", None), [])
        if not dlfa_in or len(dlfa_in) != len(dlfa_out):
            continue
        by_seed_in = {r.seed: r for r in dlfa_in}
        for which in ("last-D", "k-D"):
            probe_in, probe_out = [], []
            for seed, d in sorted(by_seed_in.items(), key=lambda x: x[0] or 0):
                layer = last if which == "last-D" else d.layers[0]
                found_in = [r for r in inside.get(("linear", (layer,)), []) if r.seed == seed]
                found_out = [r for r in outside.get(("linear", (layer,)), []) if r.seed == seed]
                probe_in += found_in
                probe_out += found_out
            if len(probe_in) == len(dlfa_in) and len(probe_out) == len(dlfa_out):
                per_pair[which][(lang, name)] = (probe_in, probe_out, dlfa_in, dlfa_out)
    out = []
    for which, found in per_pair.items():
        scopes = [((lang, name), [(lang, name)]) for lang, name in found]
        if len(found) > 1:
            scopes.append((("all", ""), list(found)))
        for (lang, name), members in scopes:
            out += _dropdiff_rows(which, lang, name, [found[m] for m in members], items, boot,
                                  metric)  # fmt: skip
    return out


def _dropdiff_rows(
    which: str, lang: str, name: str,
    members: Sequence[tuple[list[Row], list[Row], list[Row], list[Row]]],
    items: ItemSet, boot: PairedBootstrap, metric: str,
) -> list[Row]:  # fmt: skip
    """One comparison's row (and sd row) over one or more (in, out) set pairs: the mean over
    pairs of (probe drop − DLFA drop), seeds averaged; its interval when items are there."""

    def by_seed(rows: list[Row]) -> dict[int, float]:
        return {r.seed or 0: r.value for r in rows}

    per_seed: dict[int, list[float]] = {}
    for p_in, p_out, d_in, d_out in members:
        pi, po, di, do = by_seed(p_in), by_seed(p_out), by_seed(d_in), by_seed(d_out)
        for seed in pi:
            per_seed.setdefault(seed, []).append((pi[seed] - po[seed]) - (di[seed] - do[seed]))
    values = [float(np.mean(v)) for v in per_seed.values()]
    d_like = members[0][2][0]
    scope = {"lang": f"{lang}:{name}" if name else lang, "config": lang, "eval_task": name,
             "group": "" if name else "sets"}  # fmt: skip
    row = Row(which, d_like.layer if name else "-", scope["lang"], f"dropdiff_{metric}",
              float(np.mean(values)), layers=d_like.layers if name else (),
              config=scope["config"], eval_task=name, group=scope["group"])  # fmt: skip
    probe_sys = [_system(p_in, items) for p_in, *_ in members]
    probe_out = [_system(p_out, items) for _, p_out, _, _ in members]
    dlfa_sys = [_system(d_in, items) for _, _, d_in, _ in members]
    dlfa_out = [_system(d_out, items) for *_, d_out in members]
    if all(x is not None for x in (*probe_sys, *probe_out, *dlfa_sys, *dlfa_out)):
        a: dict[str, list[np.ndarray]] = {}
        b: dict[str, list[np.ndarray]] = {}
        inside, outside = [], []
        for sp, so, sdi, sdo in zip(probe_sys, probe_out, dlfa_sys, dlfa_out, strict=True):
            assert sp is not None and so is not None and sdi is not None and sdo is not None
            a.update(sp)
            a.update(so)
            b.update(sdi)
            b.update(sdo)
            inside += list(sp)
            outside += list(so)
        got = drop_delta(boot, a, b, metric, inside, outside)
        row = dataclasses.replace(row, ci_low=got.low, ci_high=got.high)
    out = [row]
    if len(values) > 1:
        sd = float(np.std(values, ddof=1))
        out.append(dataclasses.replace(row, metric=f"{row.metric}_sd", stat=SD, value=sd,
                                       ci_low=None, ci_high=None))  # fmt: skip
    return out

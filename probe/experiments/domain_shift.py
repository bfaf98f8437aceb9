"""`probe domain-shift`: train on one corpus of a language, score in-domain and out-of-domain.

For every language, heads are trained on the in-domain task's training split (for `pos`: EWT
dev for en, GSD dev for de/fr/es, IMST dev for tr; `dev_fraction` of it held out for early
stopping) and scored on that task's evaluation split (in-domain) and on the evaluation split
of every out-of-domain task that has the language (`pos-gum`: English GUM; `pos-pud`: the
PUD treebanks). Heads: a linear probe per layer, and DLFA fusing the last layer with layer k.
The drop is the in-domain score minus the out-of-domain score of the same head; comparing
DLFA's drop with the last-layer probe's asks whether fusion makes a head more robust to
domain shift. A language whose training data (train plus dev) has fewer than
`small_train_words` words is flagged `small_train`: the flag is about the training-set size
here, not about how well-resourced the language is (`--max-train-words` simulates a small
training set anywhere: a seeded, genre-stratified random sample of whole sentences,
`probe.data.subsets`, whose ids subsets.json records).
Where sentence ids encode a genre (EWT, GUM, PUD) every evaluation set is also scored per
genre, a finer-grained shift read from the same predictions. One job per language.

Result rows (results.csv): `config` is the language whose heads a row is about, `eval_task`
the out-of-domain task scored ("" in-domain), `subset` a genre, `layers` (i,) or DLFA's
(k, last); the legacy `lang` column spells the set `<lang>:<task>` (`en:pos-gum`) or
`<lang>:<task>#<genre>`.
`drop_<metric>` rows sit on the out-of-domain set and hold in-domain minus out-of-domain; per
language, `train_words` and `small_train` (1/0) rows have layer "-", and DLFA's `dev_loss`
rows give the loss of every k tried.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
from probe.experiments.base import Context, Experiment
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
    train: TrainConfig = field(default_factory=TrainConfig)
    dlfa_train: TrainConfig = DLFA_TRAINING
    dev_fraction: float = 0.1
    max_train_words: int | None = None
    treebanks: tuple[str, ...] = ()  # UD picks (--treebank) of the in-domain task
    small_train_words: int = 15_000
    # --train-split; None = the task's own. `dev` is the small-data setting the shared data
    # needs for GSD (de/fr/es have no train split there); the dev set is then a hold-out.
    train_split: str | None = None


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
        cap, seed = cfg.max_sentences, cfg.train.seed
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
        return [(lang, _LanguageJob(ctx.task.name, outs, lang, root, ctx.cache.key, self.config))
                for lang, outs in self.plan.items()]  # fmt: skip

    @staticmethod
    def job_function() -> Callable[[_LanguageJob], list[Row]]:
        return run_language_job

    def aggregate(self, ctx: Context, parts: Mapping[str, list[Row]]) -> list[Row]:
        rows = [row for lang in self.plan for row in parts[lang]]
        return rows + drops(rows, ctx.task, self.plan)

    def subsets(self, ctx: Context) -> dict[str, Any]:
        """What extraction sampled and every language's training subset (cap, hold-out)."""
        assert ctx.cache is not None
        cfg = self.config
        trains = [(lang, cfg.max_train_words) for lang in self.plan]
        return {**extracted_subsets(ctx.cache),
                **training_subsets(ctx.task, ctx.cache, trains, cfg.dev_fraction,
                                   cfg.train.seed)}  # fmt: skip

    def settings(self, ctx: Context) -> dict[str, Any]:
        own = {k: v for k, v in asdict(self.config).items() if k not in _CACHE_PART}
        outs = dict.fromkeys(self.config.out_tasks)
        return {
            **own,
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
                                   skipped=self.skipped)  # fmt: skip


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


def run_language_job(job: _LanguageJob) -> list[Row]:
    """Train every layer's probe and DLFA on the language's in-domain data; score each on the
    in-domain and every out-of-domain evaluation set (and their genres)."""
    cfg, lang = job.config, job.lang
    task = run_task(job.task, cfg.train_split)
    open_in = opener(job.root, job.key, task)
    train, dev = train_dev(task, open_in, lang, cfg.max_train_words, cfg.dev_fraction,
                           cfg.train.seed)  # fmt: skip
    evals = {task.name: open_in(lang, task.eval_split)}
    for name in job.outs:
        out = get_task(name)
        evals[name] = opener(job.root, job.key, out)(lang, out.eval_split)
    words = n_words([train, dev])
    rows = [
        Row("data", "-", lang, "train_words", float(words), config=lang),
        Row("data", "-", lang, "small_train", float(words < cfg.small_train_words), config=lang),
    ]
    n_layers = train.reader.n_layers
    n_classes = len(task.labels)
    fuse = resolve_fuse_layer(cfg.fuse_layer, n_layers)
    try:
        for layer in range(n_layers):
            spec = HeadSpec.linear(layer)
            result = train_head(spec, [train], [dev], n_classes, cfg.train)
            rows += score_sets(task, spec, result.head, lang, evals, cfg.genres)
        if fuse is not None:
            spec, result, dev_loss = fit_dlfa(fuse, n_layers, [train], [dev], n_classes,
                                              cfg.dlfa_train, cfg.reduction)  # fmt: skip
            last = n_layers - 1
            rows += [Row("dlfa", f"{k},{last}", lang, "dev_loss", v, layers=(k, last), config=lang)
                     for k, v in dev_loss.items()]  # fmt: skip
            rows += score_sets(task, spec, result.head, lang, evals, cfg.genres)
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
    task: Task, spec: HeadSpec, head: Any, lang: str, evals: dict[str, CachedSplit], genres: bool
) -> list[Row]:
    """Score one trained head on every evaluation set (and, optionally, each set's genres)."""
    layers = tuple(spec.layers)  # (i,) for a probe, (k, last) for DLFA (k < last)
    rows = []
    for name, split in evals.items():
        where: dict[str, Any] = {
            "layers": layers,
            "config": lang,
            "eval_task": "" if name == task.name else name,
        }
        probs = predict(spec, head, [split])
        for metric, value in score(task.metric, probs, split.labels, offsets=split.offsets,
                                   label_names=task.labels,
                                   extra=task.extra_metrics).items():  # fmt: skip
            rows.append(Row(spec.kind, spec.name, f"{lang}:{name}", metric, value, **where))
        for genre, items in (genre_groups(split) if genres else {}).items():
            part = subset(split, items)
            assert part.rows is not None
            value = score(task.metric, probs[part.rows], part.labels, offsets=part.offsets,
                          label_names=task.labels)[task.metric]  # fmt: skip
            rows.append(Row(spec.kind, spec.name, f"{lang}:{name}#{genre}", task.metric, value,
                            subset=genre, **where))  # fmt: skip
    return rows


def drops(rows: Sequence[Row], task: Task, plan: Mapping[str, Sequence[str]]) -> list[Row]:
    """In-domain minus out-of-domain score of the same head, per out-of-domain set (whole
    sets only: genre rows are no domain)."""
    metric = task.metric
    scored = Table(rows).filter(metric=metric, subset="")
    value = {(r.head, r.layers, r.config, r.eval_task): r for r in scored}
    heads = dict.fromkeys((r.head, r.layers) for r in Table(rows).filter(metric=metric))
    out = []
    for lang, outs in plan.items():
        for head, layers in heads:
            inside = value.get((head, layers, lang, ""))
            for name in outs:
                outside = value.get((head, layers, lang, name))
                if inside is not None and outside is not None:
                    out.append(Row(head, inside.layer, outside.lang, f"drop_{metric}",
                                   inside.value - outside.value, layers=layers, config=lang,
                                   eval_task=name))  # fmt: skip
    return out

"""One seed of `probe intermediate` on cached features: every configuration, trained and scored.

A job of `probe.experiments.pool`: picklable (names, paths, frozen configs), so it runs in any
pool worker, which opens the cache itself and holds the target's and the intermediate
tasks' splits in memory for all the configurations of its seed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.experiments.intermediate_calibration import (
    SourceDev,
    calibration_rows,
    fit_source_temperature,
)
from probe.experiments.intermediate_domains import DomainPlan, domain_scores, open_domains
from probe.experiments.intermediate_parallel import disjoint_items, distinct_items, is_parallel
from probe.experiments.intermediate_plan import (
    Configuration,
    Stage,
    language_budgets,
    parse_stage,
)
from probe.experiments.intermediate_stages import DISTINCT, STAGE_SIZES
from probe.heads.registry import BODIES
from probe.results.items import ItemScores, JobOutput, scored_rows
from probe.results.rows import Row
from probe.train import Feed, PairData, WordData, predict_proba
from probe.train.schedules import StageData, StageResult, dev_accuracy, run_schedule
from probe.train.splits import (
    CachedSplit,
    as_data,
    item_strings,
    n_items,
    opener,
    subset,
    train_dev,
)

if TYPE_CHECKING:
    from probe.experiments.intermediate import IntermediateConfig

# Job rows with this head say how training went (seconds, unconverged stages, the target
# head's size): they go to the settings, never to the results.
TRAINING = "_training"
# The TRAINING metric that counts the trained parameters of a configuration's target head:
# every configuration's must equal "none"'s (one recipe per comparison).
TARGET_PARAMETERS = "target_parameters"


@dataclass(frozen=True)
class SeedJob:
    """Every configuration for one training seed; picklable, so it runs in any pool worker,
    which opens the cache itself."""

    task: str
    root: Path
    key: str
    source: str
    langs: tuple[str, ...]  # languages scored (labelled evaluation split)
    via: tuple[str, ...]
    plan: tuple[Configuration, ...]
    layers: tuple[int, ...]  # the body's
    seed: int
    config: IntermediateConfig
    domains: DomainPlan = ()  # --eval-domains: {lang: other-domain tasks} (intermediate_domains)


def run_seed(job: SeedJob) -> JobOutput:
    """Train every configuration of the plan with one seed and score the target everywhere;
    beside the rows, the item statistics of every target score (for the gains' intervals).

    Every job draws the dev hold-outs with the run's first seed (as one process running all
    seeds did), so only training depends on the job's seed. Every configuration's target
    stage trains with the same `TrainConfig` and the same body architecture as "none"'s;
    they differ only in the body weights it starts from."""
    cfg, layers = job.config, job.layers
    target = get_task(job.task).training_on(cfg.train_split)
    holdout_seed = cfg.seeds[0]
    open_target = opener(job.root, job.key, target)
    train, dev = train_dev(target, open_target, job.source, cfg.max_train_words,
                           cfg.dev_fraction, holdout_seed)  # fmt: skip
    evals = {lang: open_target(lang, target.eval_split) for lang in job.langs}
    try:
        train_data = as_data(target, train, list(layers))
        dev_data = as_data(target, dev, list(layers))
        target_stage = _stage(target, train_data, dev_data, layers)
        eval_data = {lang: as_data(target, split, list(layers)) for lang, split in evals.items()}
    finally:
        for split in (train, dev, *evals.values()):
            split.reader.close()
    via: dict[str, StageData] = {}
    sizes: list[Row] = []  # what each stage trains on (TRAINING rows)
    for name in job.via:
        via[name], measured = _via_stage(parse_stage(name), job, holdout_seed)
        sizes += measured
    assert target_stage.dev is not None
    source_dev = SourceDev(target_stage.dev, dev_data.labels)  # what T is fitted on
    domains = open_domains(job.root, job.key, job.domains, layers)
    hidden = int(train_data.hidden)

    def new_body() -> Any:
        return BODIES.get(cfg.body).build(hidden, layers, cfg.width, cfg.reduction)

    train_cfg = replace(cfg.train, seed=job.seed)
    memo: dict[tuple[tuple[str, ...], ...], StageResult] = {}
    rows: list[Row | ItemScores] = list(sizes)
    for conf in job.plan:
        began = time.perf_counter()  # shared stages (memo) count once, where trained
        stages = run_schedule(new_body, [via[t] for t in conf.via], target_stage, conf.schedule,
                              train_cfg, memo)  # fmt: skip
        note = functools.partial(Row, TRAINING, lang="", config=conf.name, seed=job.seed)
        rows.append(note(layer="", metric="seconds", value=time.perf_counter() - began))
        rows += [note(layer=">".join(s.tasks), metric="unconverged", value=float(s.best_epoch))
                 for s in stages if s.best_epoch == train_cfg.max_epochs]  # fmt: skip
        target_head = stages[-1].task_head(target.name)
        size = sum(p.numel() for p in target_head.parameters() if p.requires_grad)
        rows.append(note(layer="", metric=TARGET_PARAMETERS, value=float(size)))
        rows += _score_configuration(cfg.body, conf, stages, target, job, eval_data, via,
                                     source_dev, domains)  # fmt: skip
    return rows


def _view(task: Task, data: Any, layers: Sequence[int]) -> Feed:
    """Word tasks: padded sentences of the body's layers; pair tasks (and edge tasks, whose
    items are head/dependent word pairs): both sides, stacked."""
    if task.probe_level == "word":
        return data.sentences(tuple(layers))
    return data.pairs(tuple(layers))


def _stage(
    task: Task, train: Any, dev: Any, layers: Sequence[int], name: str | None = None
) -> StageData:
    """A task's training material; `name` (default the task's) keys its classifier, so one
    task in two stages of a configuration (panx:de>panx:ja) gets a head for each."""
    return StageData(name or task.name, task.probe_level, len(task.labels),  # type: ignore[arg-type]
                     _view(task, train, layers), _view(task, dev, layers))  # fmt: skip


def _via_stage(stage: Stage, job: SeedJob, holdout_seed: int) -> tuple[StageData, list[Row]]:
    """An intermediate stage's data, read into memory for the whole job: the train/dev of
    each of its languages, pooled, each language's training split a seeded sample of its
    share of --max-train-words (`language_budgets`; on parallel pair data, disjoint slices
    of the shared items: `intermediate_parallel`); and TRAINING rows of their sizes."""
    cfg, task = job.config, get_task(stage.task)
    open_split = opener(job.root, job.key, task)
    budgets = language_budgets(stage, cfg.max_train_words)
    open_split, parallel = _disjoint_opener(stage, task, open_split, budgets, holdout_seed)
    trains, devs, sizes, trained_ids = [], [], [], {}
    for lang, budget in budgets.items():
        train, dev = train_dev(task, open_split, lang, budget, cfg.dev_fraction, holdout_seed)
        try:
            if any(np.any(split.labels < 0) for split in (train, dev)):
                raise ProbeError(
                    f"{task.name}/{lang}: the training data has unlabelled items; it cannot "
                    "serve as an intermediate task"
                )
            trains.append(as_data(task, train, list(job.layers)))
            devs.append(as_data(task, dev, list(job.layers)))
            trained_ids[lang] = item_strings(train, "sentence_ids")
            # TRAINING rows (layer: the stage, lang: one of its languages): what it trains
            # on there (settings.json "stages", `intermediate_stages`).
            note = functools.partial(Row, TRAINING, stage.name, lang, seed=job.seed)
            sizes += [note(STAGE_SIZES[0], float(_items(train))),
                      note(STAGE_SIZES[1], float(n_items(train))),
                      note(STAGE_SIZES[2], float(_items(dev)))]  # fmt: skip
        finally:
            train.reader.close()
            dev.reader.close()
    distinct = float(distinct_items(trained_ids, parallel))
    sizes.append(Row(TRAINING, stage.name, "+".join(stage.langs), DISTINCT, distinct,
                     seed=job.seed))  # fmt: skip
    data = _stage(task, _pooled(trains), _pooled(devs), job.layers, stage.name)
    return data, sizes


def _disjoint_opener(
    stage: Stage, task: Task, open_split: Any, budgets: dict[str, int | None], seed: int
) -> tuple[Any, bool]:
    """(the split opener, whether the stage's languages hold parallel data). A multilingual
    pair stage with a budget on parallel data gets an opener whose training split of each
    language is that language's disjoint slice (`disjoint_items`): train_dev's own sample
    of it then keeps it whole, and its hold-out stays inside the slice."""
    if not stage.multilingual or task.level != "pair":
        return open_split, False
    split_name = task.training_split()
    ids = {}
    for lang in stage.langs:
        whole = open_split(lang, split_name)
        try:
            ids[lang] = item_strings(whole, "sentence_ids")
        finally:
            whole.reader.close()
    if not is_parallel(ids):
        return open_split, False
    if any(b is None for b in budgets.values()):
        return open_split, True  # whole splits: every translation (require_budget refuses)
    slices = disjoint_items(ids, {k: int(v) for k, v in budgets.items() if v}, seed)

    def open_slice(lang: str, split: str) -> CachedSplit:
        opened = open_split(lang, split)
        return subset(opened, slices[lang]) if split == split_name else opened

    return open_slice, True


def _items(split: CachedSplit) -> int:
    """Words of a word split (an edge split's: of its sentences), pairs of a pair split:
    the unit --max-train-words counts."""
    if split.pairs:
        return n_items(split)
    if split.arcs is not None:
        words = np.diff(split.reader.offsets)
        return int(words.sum() if split.items is None else words[split.items].sum())
    assert split.offsets is not None
    return int(split.offsets[-1])


def _pooled(parts: Sequence[Any]) -> Any:
    """One language's data, or several languages' concatenated (one multilingual stage)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, WordData):
        shifts = np.cumsum([0, *(p.n_words for p in parts[:-1])])
        offsets = np.concatenate(
            [[0], *(p.offsets[1:] + shift for p, shift in zip(parts, shifts, strict=True))]
        )
        return WordData({k: np.concatenate([p.layers[k] for p in parts]) for k in first.layers},
                        np.concatenate([p.labels for p in parts]), offsets)  # fmt: skip
    if isinstance(first, PairData):
        side_a = {k: np.concatenate([p.layers_a[k] for p in parts]) for k in first.layers_a}
        side_b = {k: np.concatenate([p.layers_b[k] for p in parts]) for k in first.layers_b}
        return PairData(side_a, side_b, np.concatenate([p.labels for p in parts]))
    raise ProbeError(f"a multilingual stage cannot pool {type(first).__name__} data")


def _score_configuration(
    body: str, conf: Configuration, stages: list[StageResult], target: Task, job: SeedJob,
    evals: dict[str, Any], via: dict[str, StageData], source_dev: SourceDev,
    domains: dict[tuple[str, str], Any],
) -> list[Row | ItemScores]:  # fmt: skip
    """The target head's scores on every language (with the item statistics of those a
    bootstrap can resample), its ECE after temperature scaling fitted on the source dev
    split, its scores on the other-domain sets, plus how each stage trained."""
    final, name = stages[-1], conf.name
    row = functools.partial(Row, body, name, layers=job.layers, config=name, seed=job.seed)
    rows: list[Row | ItemScores] = [row(job.source, "best_epoch", float(final.best_epoch))]
    head = final.task_head(target.name)
    temperature = fit_source_temperature(head, source_dev)
    rows.append(row(job.source, "temperature", temperature, subset="dev"))
    for lang, data in evals.items():
        probs = predict_proba(head, _view(target, data, job.layers))
        offsets = data.offsets if target.level == "word" else None
        rows += scored_rows(functools.partial(row, lang), target.metric, probs, data.labels,
                            offsets=offsets, label_names=target.labels,
                            extra=target.extra_metrics)  # fmt: skip
        rows += calibration_rows(row, lang, probs, data.labels, temperature)
    rows += domain_scores(row, head, target, domains, job.layers)
    for stage in stages[:-1]:
        for stage_name in stage.tasks:  # Stage names; lang: the stage's language(s), "en+de"
            acc = dev_accuracy(stage, via[stage_name])
            if acc is not None:
                spec = parse_stage(stage_name)
                rows.append(row("+".join(spec.langs), f"{spec.task}_dev_accuracy", acc,
                                eval_task=spec.task, subset="dev"))  # fmt: skip
    return rows

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

from probe.analysis.item_scores import ITEM_COLUMNS
from probe.analysis.metrics import score
from probe.data.tasks import Task, get_task
from probe.errors import ProbeError
from probe.experiments.intermediate_plan import Configuration
from probe.heads.registry import BODIES
from probe.results.items import ItemScores, JobOutput, scored_items
from probe.results.rows import Row
from probe.train import Feed, predict_proba
from probe.train.schedules import StageData, StageResult, dev_accuracy, run_schedule
from probe.train.splits import as_data, opener, train_dev

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
        target_stage = _stage(target, train_data, as_data(target, dev, list(layers)), layers)
        eval_data = {lang: as_data(target, split, list(layers)) for lang, split in evals.items()}
    finally:
        for split in (train, dev, *evals.values()):
            split.reader.close()
    via = {name: _via_stage(get_task(name), job, holdout_seed) for name in job.via}
    hidden = int(train_data.hidden)

    def new_body() -> Any:
        return BODIES.get(cfg.body).build(hidden, layers, cfg.width, cfg.reduction)

    train_cfg = replace(cfg.train, seed=job.seed)
    memo: dict[tuple[tuple[str, ...], ...], StageResult] = {}
    rows: list[Row | ItemScores] = []
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
        rows += _score_configuration(cfg.body, conf, stages, target, job, eval_data, via)
    return rows


def _view(task: Task, data: Any, layers: Sequence[int]) -> Feed:
    """Word tasks: padded sentences of the body's layers; pair tasks: both sides, stacked."""
    return data.sentences(tuple(layers)) if task.level == "word" else data.pairs(tuple(layers))


def _stage(task: Task, train: Any, dev: Any, layers: Sequence[int]) -> StageData:
    return StageData(task.name, task.level, len(task.labels),  # type: ignore[arg-type]
                     _view(task, train, layers), _view(task, dev, layers))  # fmt: skip


def _via_stage(task: Task, job: SeedJob, holdout_seed: int) -> StageData:
    """An intermediate task's source train/dev data, read into memory for the whole job."""
    cfg = job.config
    train, dev = train_dev(task, opener(job.root, job.key, task), task.default_source,
                           cfg.max_train_words, cfg.dev_fraction, holdout_seed)  # fmt: skip
    try:
        if any(np.any(split.labels < 0) for split in (train, dev)):
            raise ProbeError(
                f"{task.name}/{task.default_source}: the training data has unlabelled items; "
                "it cannot serve as an intermediate task"
            )
        layers = list(job.layers)
        return _stage(task, as_data(task, train, layers), as_data(task, dev, layers), job.layers)
    finally:
        train.reader.close()
        dev.reader.close()


def _score_configuration(
    body: str, conf: Configuration, stages: list[StageResult], target: Task, job: SeedJob,
    evals: dict[str, Any], via: dict[str, StageData],
) -> list[Row | ItemScores]:  # fmt: skip
    """The target head's scores on every language (with the item statistics of those a
    bootstrap can resample), plus how each stage trained."""
    final, name = stages[-1], conf.name
    row = functools.partial(Row, body, name, layers=job.layers, config=name, seed=job.seed)
    rows: list[Row | ItemScores] = [row(job.source, "best_epoch", float(final.best_epoch))]
    head = final.task_head(target.name)
    for lang, data in evals.items():
        probs = predict_proba(head, _view(target, data, job.layers))
        offsets = data.offsets if target.level == "word" else None
        pred = probs.argmax(axis=1)
        for metric, value in score(target.metric, probs, data.labels, offsets=offsets,
                                   label_names=target.labels,
                                   extra=target.extra_metrics).items():  # fmt: skip
            scored = row(lang, metric, value)
            rows.append(scored)
            if metric in ITEM_COLUMNS:
                rows.append(scored_items(scored, pred, data.labels, offsets=offsets,
                                         label_names=target.labels))  # fmt: skip
    for stage in stages[:-1]:
        for task_name in stage.tasks:
            acc = dev_accuracy(stage, via[task_name])
            if acc is not None:
                src = get_task(task_name).default_source
                rows.append(row(src, f"{task_name}_dev_accuracy", acc, eval_task=task_name,
                                subset="dev"))  # fmt: skip
    return rows
